"""Shared fixtures: a tiny real study config, and one finished tiny study reused by the report tests."""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

# Keras in this process (in-process training, export, import) runs on TensorFlow; the studies' workers run
# their config's backend, JAX unless a test says otherwise, so models cross backends here all the time
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # as hqsearch sets it for a user who has not: no C++ log lines
TESTS = Path(__file__).parent
# worker processes import `helpers` (data callables that fail on purpose) by name
os.environ["PYTHONPATH"] = os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
sys.path.insert(0, str(TESTS))
os.environ["HQ_TEST_DRIVER_PID"] = str(os.getpid())  # helpers that fail in trial workers, not in preflight
# each pytest-xdist worker's Ray (its instance, the nodes its tests start, the `auto` address they record)
# in a folder of its own, so the workers' clusters never find each other
if worker := os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("RAY_TMPDIR", f"/tmp/ray-{worker}")
# XLA's compiled programs, shared by every test's studies as by a user's studies on one machine: made by the
# first process that loads this file (pytest-xdist's controller, before it starts its workers), found by the
# workers in their environment, and removed by its maker when it exits, after them
if "HQSEARCH_TEST_COMPILE_CACHE" not in os.environ:
    os.environ["HQSEARCH_TEST_COMPILE_CACHE"] = tempfile.mkdtemp(prefix="hqsearch-test-xla-")
    atexit.register(shutil.rmtree, os.environ["HQSEARCH_TEST_COMPILE_CACHE"], ignore_errors=True)
COMPILE_CACHE = Path(os.environ["HQSEARCH_TEST_COMPILE_CACHE"])
# The Ctrl-C tests signal commands this process starts, which inherit an ignored SIGINT (bash ignores it in a
# background job of a script, `(pytest ... &)`): Python then installs no KeyboardInterrupt for them
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

from hqsearch.config.schema import ExecutionSection, StudyConfig, parse_config  # noqa: E402


def pytest_configure(config):
    """Keras fixes its backend at its first import: TensorFlow in the processes that run tests, whichever
    backend a test then sets for a study. pytest-xdist's controller runs none, and spares its seconds."""
    if hasattr(config, "workerinput") or not config.getoption("numprocesses", None):
        import keras  # noqa: F401


def share_compile_cache(cwd: Path) -> None:
    """The session's compiled programs (`COMPILE_CACHE`) where a config that leaves
    `execution.compile_cache_dir` at its default looks for them under its working directory: as a user's
    studies in one working directory share theirs."""
    link = cwd / ExecutionSection().compile_cache
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(COMPILE_CACHE, target_is_directory=True)


def tiny_raw(out: Path, name: str = "tiny", **sections) -> dict:
    """A real study that trains 8-unit MLPs on digits for a few epochs: seconds per trial."""
    raw = {
        "study": {
            "name": name,
            "output_dir": str(out),
            "n_trials": 2,
            "objectives": {"accuracy": "max", "luts": "min", "latency_cycles": "min"},
        },
        "model": {"widths": [8]},
        # harvest, continuation and stopping off: these tests are about other things; their own tests turn them on
        "training": {
            "epochs": 3,
            "batch_size": 128,
            "harvest": {"max_candidates": 0},
            "continuation": {"share": 0.0},
            "stopping": {"behind_front": False},
        },
        "search_space": {
            "beta": {"low": 1e-6, "high": 1e-4, "log": True},
            "heterogeneity": {"weights": ["intra", "per_channel"], "activations": ["intra"]},
        },
        "synthesis": {"cache_dir": str(out / "design_cache")},
        "execution": {"max_concurrent": 2, "compile_cache_dir": str(COMPILE_CACHE)},
    }
    for key, value in sections.items():
        raw.setdefault(key, {}).update(value)
    # trainings of the length the test gives, beta ramped over the whole range (the defaults search both)
    raw["search_space"].setdefault("epochs", raw["training"]["epochs"])
    raw["search_space"].setdefault("ramp", {"start": 0.0, "hold": 0.0})
    raw["search_space"]["ramp"].setdefault("opening", 0)  # the first trainings as sampled, not the opening ramp
    return raw


@pytest.fixture
def hq_here(capsys, monkeypatch):
    """`hqsearch ARGS` run by `main` in this process, which has the libraries imported already: for a test
    about what a command says and writes, not about its process. `env` replaces the environment for the
    call. Returns what `subprocess.run` would (exit code, stdout, stderr)."""
    from hqsearch.cli import main

    def run(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        with monkeypatch.context() as m:
            m.chdir(cwd)
            for key in set(os.environ) - set(env or os.environ):
                m.delenv(key)
            for key, value in (env or dict(os.environ)).items():
                m.setenv(key, value)  # and restored after: `check` and `run` set the study's Keras backend
            capsys.readouterr()
            code = main(list(args))
            said = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, said.out, said.err)

    return run


@pytest.fixture
def tiny_config(tmp_path: Path):
    def make(name: str = "tiny", **sections) -> StudyConfig:
        return parse_config(tiny_raw(tmp_path / name, name, **sections))

    return make


def run_tiny(tmp_path_factory, name: str, **sections):
    """A tiny study (`tiny_raw` with these sections) run to its end once, in a fresh folder: (cfg, summary)."""
    from hqsearch.driver import run_study

    cfg = parse_config(tiny_raw(tmp_path_factory.mktemp(name), name, **sections))
    return cfg, run_study(cfg)


@pytest.fixture(scope="session")
def finished_study(tmp_path_factory):
    """A 3-trial study run once for the whole session."""
    cfg, summary = run_tiny(tmp_path_factory, "finished", study={"n_trials": 3, "constraints": ["luts <= 1000000"]})
    assert summary.complete == 3
    return cfg


@pytest.fixture(scope="session")
def yosys_study(tmp_path_factory):
    """One training measured by Yosys, with its harvested candidates (each measured too), run once. Its beta
    ramps hard, so accuracy peaks before the last epoch and there are earlier epochs to harvest; its
    bitwidths start at 3, so each design is a few hundred LUTs and Yosys takes seconds."""
    cfg, summary = run_tiny(
        tmp_path_factory,
        "yosys",
        study={"n_trials": 1},
        synthesis={"backend": "yosys"},
        training={"epochs": 10, "harvest": {"max_candidates": 2}},
        search_space={"beta": {"low": 3e-4, "high": 1e-3, "log": True}, "init_weight_bits": 3, "init_act_bits": 3},
    )
    assert summary.complete == 1
    return cfg


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A trained, calibrated 64-4-10 HGQ2 model on digits, saved as .keras: (model, path, ebops). Its
    bitwidths start at 4, so its design is under a thousand LUTs: Yosys measures it in about 5 s, not the
    10 s it takes from the default 8 bits."""
    import keras

    from hqsearch.config.schema import DataSection, ModelSection, TrainingSection
    from hqsearch.pipeline.data import load_dataset
    from hqsearch.pipeline.model import build_model
    from hqsearch.pipeline.train import calibrate, train
    from hqsearch.search.space import TrialParams

    keras.utils.set_random_seed(0)
    data = load_dataset(DataSection())
    p = TrialParams(
        beta=1e-5,
        l1=0,
        l2=0,
        weights="intra",
        activations="intra",
        learning_rate=5e-3,
        widths=(4,),
        init_weight_bits=4,
        init_act_bits=4,
    )
    model = build_model(ModelSection(), p, data.input_shape, data.n_classes)
    train(model, data, TrainingSection(epochs=3), p)
    ebops = calibrate(model, data.x_train)
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    model.save(path)
    return model, path, ebops


_ray_env: str | None = None  # the runtime environment the Ray instance this process joined was started with


def join_local_ray(runtime_env: dict | None = None) -> str:
    """The GCS address of a local Ray instance (2 CPUs) this process has joined, as a driver joins a cluster:
    the one already joined when it was started with `runtime_env`, else a new one. Starting Ray and warming
    its workers costs seconds, so the tests that ask for the same instance share it."""
    global _ray_env
    import ray

    env = {"worker_process_setup_hook": "hqsearch.executors.ray.warm_up", **(runtime_env or {})}
    wanted = json.dumps(env, sort_keys=True)  # as given: ray.init adds to the dict it is passed
    if ray.is_initialized() and _ray_env != wanted:
        ray.shutdown()
    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env=env)
        _ray_env = wanted
    return ray.get_runtime_context().gcs_address


@pytest.fixture(scope="session")
def yosys_standin(tmp_path_factory):
    """The `yosys` first on the PATH of the shared Ray instance's workers (`synth_standins.YosysStandIn`): the
    real native Yosys until a test tells it to hang on a design; None without a native Yosys."""
    from synth_standins import YosysStandIn

    real = shutil.which("yosys")
    return YosysStandIn(tmp_path_factory.mktemp("standin_bin"), real) if real else None


@pytest.fixture
def ray_instance(yosys_standin):
    """The address of the local Ray instance the session shares (`join_local_ray`), its workers finding
    `yosys_standin` first on PATH; an executor uses it as it finds it and does not shut it down."""
    path = os.environ["PATH"]
    if yosys_standin is not None:
        path = os.pathsep.join([str(yosys_standin.bin_dir), path])
    return join_local_ray({"env_vars": {"PATH": path}})


@pytest.fixture(autouse=True)
def _ray_only_where_asked(request):
    """A test that asks for no shared Ray instance finds this process joined to none, so an executor it runs
    starts its own, or joins the cluster its config names, as a driver of its own would."""
    if "ray" in sys.modules and not any(name.startswith("ray_instance") for name in request.fixturenames):
        import ray

        ray.shutdown()
    yield


class _SharedCluster:
    """The two-node Ray cluster the cluster tests share (`ray_cluster.shared_cluster`) and the study run on it
    (`isolated_study`). Starting one costs about 10 s of CPU and 20 s; idle, its nodes use about 3 s of CPU a
    minute. So the first test that asks starts it, and it stops after the last of the tests that ask, which
    run one after another (`SHARED`), not at the session's end; a later one would start it again."""

    stack: contextlib.ExitStack | None = None
    cluster = None
    study: tuple[Path, StudyConfig] | None = None

    @classmethod
    def get(cls, tmp_path_factory):
        if cls.stack is None:
            from ray_cluster import shared_cluster

            cls.stack = contextlib.ExitStack()
            cls.cluster = cls.stack.enter_context(shared_cluster(tmp_path_factory.mktemp("ray_cluster")))
        return cls.cluster

    @classmethod
    def stop(cls) -> None:
        stack, cls.stack, cls.cluster, cls.study = cls.stack, None, None, None
        if stack is not None:
            stack.close()


@pytest.fixture
def ray_cluster(tmp_path_factory):
    """The two-node Ray cluster the cluster tests share (`_SharedCluster`); their drivers join it in processes
    of their own."""
    return _SharedCluster.get(tmp_path_factory)


@pytest.fixture
def isolated_study(ray_cluster, tmp_path_factory):
    """One study run by `hqsearch run` in its own process with every stage on the cluster's second node, which
    shares no folder with the driver (its output folder is hidden from the node) and lends each training half
    of its logical GPU: two trainings of 5 epochs, the second continuing the first's point, one harvested
    candidate each, every design measured by Yosys there. Run once per cluster; returns its config file and
    config."""
    from ray_cluster import ISOLATED, run_driver

    if _SharedCluster.study is not None:
        return _SharedCluster.study
    on_node = {"num_cpus": 1, "resources": {ISOLATED: 1}}
    raw = tiny_raw(
        ray_cluster.hidden / "no_shared_fs",
        "no_shared_fs",
        study={"n_trials": None, "budget": 10, "objectives": {"accuracy": "max", "luts": "min"}},
        model={"widths": [16]},
        training={
            "epochs": 5,
            "batch_size": 64,
            "harvest": {"max_candidates": 1},
            "continuation": {"share": 1.0, "startup": 1},
        },
        search_space={"beta": {"low": 3e-4, "high": 1e-3, "log": True}, "init_weight_bits": 3, "init_act_bits": 3},
        synthesis={"backend": "yosys"},
        execution={
            "executor": "ray",
            "max_concurrent": 1,  # so the second training continues the first's point
            "ray": {
                "address": ray_cluster.address,
                "train": {**on_node, "num_gpus": 0.5},
                "synth": on_node,
                "transfer": "object_store",
            },
        },
    )
    _SharedCluster.study = run_driver(tmp_path_factory.mktemp("isolated_study"), raw)
    return _SharedCluster.study


def _group(item: pytest.Item | None) -> str | None:
    mark = item.get_closest_marker("xdist_group") if item is not None else None
    return mark.args[0] if mark else None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    yield
    if _group(item) == "ray_cluster" != _group(nextitem):
        _SharedCluster.stop()


def pytest_sessionfinish():
    _SharedCluster.stop()


# What the session or a module sets up once (the shared Ray instance and cluster, the trained studies and
# models): under pytest-xdist (`-n`) every worker process that runs one of its tests would set up its own, so
# the tests that use one run on one worker, one after another (with `--dist loadgroup`, pyproject.toml's
# default). Not `tiny_model`: its tests are many, and one worker would run them all while the others idle
SHARED = (
    "ray_instance",
    "ray_cluster",
    "yosys_study",
    "finished_study",
    "chain",  # test_continuation
    "harvest_study",  # test_points
    "projects",  # test_firmware_pragmas
    "tiny_hgq_model",  # test_backends_hls_report_parsing
    "tiny_comb",  # test_backends_vivado_rtl_report_parsing
)


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's own, which reads the groups from the marks
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Each group's tests also run one after another without pytest-xdist: all where the first one was."""
    groups: dict[str, list[pytest.Item]] = {}
    for item in items:
        if shared := next((name for name in SHARED if name in getattr(item, "fixturenames", ())), None):
            item.add_marker(pytest.mark.xdist_group(shared))
            groups.setdefault(shared, []).append(item)
    ordered = []
    for item in items:
        group = groups.get(_group(item))
        if group is None:
            ordered.append(item)
        elif item is group[0]:
            ordered.extend(group)
    items[:] = ordered


@pytest.fixture(scope="session")
def postgres_url():
    """A real PostgreSQL server on loopback for this test session, in a temporary directory.

    `HQSEARCH_TEST_POSTGRES` (a SQLAlchemy URL) points the tests at a server that is already running.
    """
    import postgres_server

    if url := os.environ.get("HQSEARCH_TEST_POSTGRES"):
        yield url
        return
    if not postgres_server.installed():
        pytest.skip(
            "needs PostgreSQL's server binaries (initdb, pg_ctl), which pip does not install "
            "(apt-get install postgresql; .ci/run does)"
        )
    with postgres_server.temporary_server() as url:
        yield url


# Tools the README's setup (pip) does not install: a test that needs one skips where it is missing, and
# fails under CI (below), whose .ci/run installs them from Debian.
needs_native_yosys = pytest.mark.skipif(
    shutil.which("yosys") is None,
    reason="needs a native yosys on PATH, which pip does not install (apt-get install yosys; .ci/run does)",
)


# Skips CI may take: tools that cannot be installed on its machine. Any other skip fails a run where CI
# (or HQSEARCH_STRICT_SKIPS) is set, so a test CI is meant to run can never quietly not run there.
CI_MAY_SKIP = ("verilator",)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.skipped and (os.environ.get("CI") or os.environ.get("HQSEARCH_STRICT_SKIPS")):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        if not any(tool in reason.lower() for tool in CI_MAY_SKIP):
            report.outcome = "failed"
            report.longrepr = f"skipped, but CI must run this test: {reason}"
    return report
