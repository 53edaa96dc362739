"""GPU trainings on Ray, on a machine that has no GPU: a node started with `--num-gpus=1` declares a logical one.
Trainings that ask for half a GPU each go only to that node, see the GPU Ray gives them in
`CUDA_VISIBLE_DEVICES` (as the process the stage forks from the worker's warm server does too:
`test_executors_forked`), and record the device Keras ran on: the CPU, since no CUDA is found here."""

from __future__ import annotations

from pathlib import Path

from optuna.trial import TrialState

from hqsearch.study.points import Origin, origin
from hqsearch.study.storage import load_existing

ROOT = Path(__file__).parents[1]


def test_the_gpu_extra_has_one_set_of_cuda_libraries_for_both_backends():
    """The base has the one TensorFlow that can run on a GPU (`tensorflow`: on Linux x86_64 the CUDA build, which
    runs on a CPU too; `tensorflow-cpu` cannot sit beside it), and `gpu` adds TensorFlow's CUDA libraries and
    JAX's plugin for the same CUDA major, so the two backends share one set of nvidia wheels."""
    import tomllib
    from importlib.metadata import PackageNotFoundError, requires

    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = {Requirement(r).name for r in project["dependencies"]}
    assert "tensorflow" in base and "tensorflow-cpu" not in base
    gpu = [Requirement(r) for r in project["optional-dependencies"]["gpu"]]
    assert any(r.name == "tensorflow" and r.extras == {"and-cuda"} for r in gpu)
    (jax_cuda,) = next(r.extras for r in gpu if r.name == "jax")  # cuda12
    for dist in ("tensorflow", "tensorflow-cpu"):  # whichever this machine has: the same requirements
        try:
            needs = [Requirement(r) for r in requires(dist) or []]
            break
        except PackageNotFoundError:
            continue
    cuda_libs = [r.name for r in needs if r.marker and "and-cuda" in str(r.marker)]
    assert cuda_libs and all(name.endswith("-" + jax_cuda.replace("cuda", "cu")) for name in cuda_libs), cuda_libs


def test_the_device_recorded_here_is_the_cpu():
    from hqsearch.keras_backend import active, device

    assert active() == "tensorflow"  # this process's (conftest); the Ray test below records JAX's
    assert device() == "cpu"


def test_trainings_that_ask_for_half_a_gpu_run_on_the_gpu_node_and_record_their_device(isolated_study, ray_cluster):
    """`isolated_study`, on the session's cluster: a head with one CPU and no GPU, and a node with two CPUs
    and one logical GPU, whose trainings ask for half of it each."""
    _, cfg = isolated_study
    study = load_existing(cfg.study.storage_url, cfg.study.name)
    trainings = [t for t in study.trials if origin(t) is Origin.TRAINING]
    assert [t.state for t in trainings] == [TrialState.COMPLETE] * 2, [t.user_attrs.get("error") for t in trainings]
    infos = [t.user_attrs["info"] for t in trainings]
    assert {info["train_node"] for info in infos} == {ray_cluster.node}
    assert {info["train_cuda_visible_devices"] for info in infos} == {"0"}  # the node's one GPU, set by Ray
    assert {info["device"] for info in infos} == {"cpu"}  # no CUDA here: Keras ran on the CPU
    # synthesis asks for no GPU and sees none (Ray itself would leave CUDA_VISIBLE_DEVICES unset there)
    assert {info["synth_cuda_visible_devices"] for info in infos} == {""}
