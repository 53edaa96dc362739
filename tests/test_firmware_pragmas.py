"""Pragma fix-ups on real hls4ml projects written from tiny HGQ2 models (write only, no compile).

What hls4ml 1.3 writes into the top function with io_parallel: `#pragma HLS PIPELINE` for a dense model
and for an HGQ2 convolution at its default (full) parallelization, `#pragma HLS DATAFLOW` for a
convolution with parallelization_factor below its output size and for the resource strategy.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import get_args

import numpy as np
import pytest

from hqsearch.backends import get_backend
from hqsearch.config.schema import PragmaFixup, SynthesisSection
from hqsearch.firmware.hls_project import hls_write
from hqsearch.firmware.pragmas import (
    FIXUPS,
    PragmaError,
    apply_fixups,
    dataflow_to_pipeline,
    inline_recursive,
    remove_dataflow,
)


def top_body(project: Path) -> str:
    src = (project / "firmware" / "myproject.cpp").read_text()
    start = src.index("{", src.index("void myproject("))
    return src[start:]


def pragmas(project: Path) -> list[str]:
    return re.findall(r"#pragma HLS (PIPELINE|DATAFLOW|INLINE RECURSIVE)\b", top_body(project))


@pytest.fixture(scope="module")
def projects(tmp_path_factory) -> dict[str, Path]:
    """Written hls4ml projects: dense latency, conv latency (full / partial parallelization), dense resource."""
    import keras
    from hgq.layers import QConv2D, QDense
    from hgq.utils import trace_minmax

    keras.utils.set_random_seed(3)
    rng = np.random.default_rng(3)
    root = tmp_path_factory.mktemp("pragma_projects")
    dense = keras.Sequential([keras.Input((16,)), QDense(8, activation="relu"), QDense(4)])
    trace_minmax(dense, rng.uniform(-1, 1, (128, 16)).astype("float32"))

    def conv(pf: int) -> keras.Model:
        m = keras.Sequential(
            [
                keras.Input((6, 6, 1)),
                QConv2D(2, 3, activation="relu", parallelization_factor=pf),
                keras.layers.Flatten(),
                QDense(4),
            ]
        )
        trace_minmax(m, rng.uniform(-1, 1, (128, 6, 6, 1)).astype("float32"))
        return m

    out = {}
    for name, model, strategy in (
        ("dense", dense, "latency"),
        ("conv", conv(-1), "latency"),
        ("conv_pf2", conv(2), "latency"),
        ("dense_resource", dense, "resource"),
    ):
        hls_write(model, SynthesisSection(backend="vitis", strategy=strategy), root / name, "Vitis")
        out[name] = root / name
    return out


@pytest.fixture
def copy_of(projects, tmp_path):
    def copy(name: str) -> Path:
        return Path(shutil.copytree(projects[name], tmp_path / name))

    return copy


def test_what_hls4ml_writes_into_the_top_function(projects):
    assert pragmas(projects["dense"]) == ["PIPELINE"]
    assert pragmas(projects["conv"]) == ["PIPELINE"]  # HGQ2 convolutions are fully parallel by default
    assert pragmas(projects["conv_pf2"]) == ["DATAFLOW"]
    assert pragmas(projects["dense_resource"]) == ["DATAFLOW"]


@pytest.mark.parametrize("name", ["conv_pf2", "dense_resource"])
def test_dataflow_to_pipeline(name, copy_of):
    prj = copy_of(name)
    before = (prj / "firmware" / "myproject.cpp").read_text()
    assert dataflow_to_pipeline(prj) is True
    assert pragmas(prj) == ["PIPELINE"]
    after = (prj / "firmware" / "myproject.cpp").read_text()
    assert after == before.replace("#pragma HLS DATAFLOW", "#pragma HLS PIPELINE")  # nothing else moved
    assert dataflow_to_pipeline(prj) is False  # idempotent
    assert (prj / "firmware" / "myproject.cpp").read_text() == after


def test_remove_dataflow(copy_of):
    prj = copy_of("conv_pf2")
    before = (prj / "firmware" / "myproject.cpp").read_text()
    assert remove_dataflow(prj) is True
    assert pragmas(prj) == []
    after = (prj / "firmware" / "myproject.cpp").read_text()
    assert len(after.splitlines()) == len(before.splitlines()) - 1
    assert remove_dataflow(prj) is False and (prj / "firmware" / "myproject.cpp").read_text() == after


@pytest.mark.parametrize("name", ["dense", "conv", "conv_pf2"])
def test_inline_recursive_goes_after_the_pipeline_pragma_once(name, copy_of):
    prj = copy_of(name)
    first = pragmas(prj)[0]
    assert inline_recursive(prj) is True
    assert pragmas(prj) == [first, "INLINE RECURSIVE"]
    lines = top_body(prj).splitlines()
    at = next(i for i, line in enumerate(lines) if "INLINE RECURSIVE" in line)
    assert lines[at - 1].strip().startswith(f"#pragma HLS {first}")
    assert lines[at].startswith("    #pragma")  # same indentation as hls4ml's pragmas
    assert inline_recursive(prj) is False
    assert pragmas(prj) == [first, "INLINE RECURSIVE"]


def test_fixups_on_a_project_without_dataflow_change_nothing(copy_of):
    prj = copy_of("dense")
    before = (prj / "firmware" / "myproject.cpp").read_text()
    assert apply_fixups(prj, ["dataflow_to_pipeline"]) == {"dataflow_to_pipeline": False}
    assert apply_fixups(prj, ["remove_dataflow"]) == {"remove_dataflow": False}
    assert (prj / "firmware" / "myproject.cpp").read_text() == before


def test_apply_fixups_in_order_and_twice(copy_of):
    prj = copy_of("conv_pf2")
    names = ["dataflow_to_pipeline", "inline_recursive"]
    assert apply_fixups(prj, names) == {"dataflow_to_pipeline": True, "inline_recursive": True}
    assert apply_fixups(prj, names) == {"dataflow_to_pipeline": False, "inline_recursive": False}
    assert pragmas(prj) == ["PIPELINE", "INLINE RECURSIVE"]


def test_hls_write_applies_the_configured_fixups(projects, tmp_path):
    """hls_write (and so hls_project) applies the config's fix-ups to the project it writes."""
    import keras

    model = keras.models.load_model(projects["conv_pf2"] / "keras_model.keras")
    cfg = SynthesisSection(backend="vivado", pragma_fixups=["dataflow_to_pipeline", "inline_recursive"])
    hls_write(model, cfg, tmp_path / "fixed", get_backend(cfg.backend).hls4ml_backend)
    assert pragmas(tmp_path / "fixed") == ["PIPELINE", "INLINE RECURSIVE"]


def test_fixup_names_match_the_config():
    assert set(FIXUPS) == set(get_args(PragmaFixup))


def test_fixups_say_what_is_wrong(tmp_path, copy_of):
    with pytest.raises(PragmaError, match="project.tcl"):
        inline_recursive(tmp_path)
    prj = copy_of("dense")
    with pytest.raises(PragmaError, match="unknown pragma fix-up"):
        apply_fixups(prj, ["pipeline_everything"])
    (prj / "firmware" / "myproject.cpp").write_text("// emptied\n")
    with pytest.raises(PragmaError, match="top function 'void myproject"):
        dataflow_to_pipeline(prj)
