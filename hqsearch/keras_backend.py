"""The Keras backend the stages run on: JAX (the default) or TensorFlow.

Keras fixes its backend when it is first imported, from `KERAS_BACKEND`, so the choice lives in the
environment: `use` sets it before Keras is imported, and the executors start their fork servers (and
Ray their workers) with it. A `.keras` file holds no backend: a model saved on one loads on the other.

JAX is the default because it trains HGQ2 several times faster on a CPU (`benchmarks/training_speed.py`):
XLA compiles the whole training step once, where TensorFlow without XLA runs it op by op. What XLA
compiles is kept in a persistent cache (`execution.compile_cache_dir`), so a trial whose architecture an
earlier trial had loads its programs instead of compiling them again. JAX places arrays on its default
device: a GPU where jaxlib has CUDA (extra `gpu`) and the process sees one, else the CPU; TensorFlow's CUDA
build (`tensorflow`, not `tensorflow-cpu`) likewise, where it finds the CUDA libraries. A trial records the
one it trained on (`device`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Literal

KerasBackend = Literal["jax", "tensorflow"]
BACKENDS: tuple[KerasBackend, ...] = ("jax", "tensorflow")
DEFAULT: KerasBackend = "jax"
# What a fork server imports for each, beside Keras: the backend's own start-up, paid once per server.
# Not TensorFlow for JAX (1.7 core-s of a 5 core-s server start): `seed` and `save` keep a JAX trial from importing it
MODULES: dict[str, tuple[str, ...]] = {"jax": ("jax",), "tensorflow": ("tensorflow",)}
# The distributions whose versions a trial records for each
PACKAGES: dict[str, tuple[str, ...]] = {"jax": ("jax", "jaxlib"), "tensorflow": ("tensorflow-cpu", "tensorflow")}
# XLA on the CPU: Eigen's kernels on the calling thread (a worker given one core); two trainings at once
# on two cores ran 25 % faster with it on the HTRU2 32-16 model, and as fast on the digits 64-32 one
_ONE_THREAD_XLA = ("--xla_cpu_multi_thread_eigen=false",)

# rows: a split up to this size is scored (validation) or calibrated in one batch, so in one compiled shape
ONE_BATCH = 65536


def one_batch(rows: int) -> int | None:
    """The batch size that takes a split of `rows` in one batch (None, Keras's default, for an empty one)."""
    return min(rows, ONE_BATCH) or None


def use(backend: KerasBackend) -> None:
    """Make `backend` the one Keras loads in this process and the processes it starts. Where Keras is already
    imported its backend stays (Keras cannot change it): the work here runs on that one, and what it records
    says so (`active`)."""
    os.environ["KERAS_BACKEND"] = backend


def active() -> str:
    """The backend Keras runs here; Keras is imported if it was not."""
    import keras

    return keras.config.backend()


def prepare(backend: KerasBackend, threads: int, compile_cache: Path | None) -> None:
    """In a fresh worker process, before its first op: the backend's thread pools sized to `threads`, and
    JAX's compilation cache. A worker whose Keras runs another backend is refused: its results would be
    recorded under the wrong name."""
    use(backend)  # for Keras if it is not loaded yet, and for the processes this one starts
    if (running := active()) != backend:
        raise RuntimeError(f"this worker's Keras runs on {running!r}, the study asks for {backend!r}")
    threads = max(1, threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    # On a GPU each process takes memory as it needs it, so trainings can share one (`ray.train.num_gpus`
    # below 1, or a local executor's workers): JAX would take 75 % of it at its first op, TensorFlow all of
    # it. Read when the backend starts on the GPU, after this; a value the user set stays.
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
    if backend == "tensorflow":
        import tensorflow as tf

        # TensorFlow's own pools ignore OMP_NUM_THREADS
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(min(2, threads))
        return
    if threads == 1:  # XLA reads its flags when JAX first makes its CPU client: nothing has run yet
        flags = os.environ.get("XLA_FLAGS", "").split()
        os.environ["XLA_FLAGS"] = " ".join([*flags, *(f for f in _ONE_THREAD_XLA if f not in flags)])
    if compile_cache is not None:
        import jax

        compile_cache.mkdir(parents=True, exist_ok=True)
        jax.config.update("jax_compilation_cache_dir", str(compile_cache.resolve()))
        # every program: a trial's many small ones add up to seconds, and all of them recur
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


@contextmanager
def _without_tensorflow() -> Iterator[None]:
    """On JAX, where TensorFlow is not loaded: Keras finds no TensorFlow while this lasts, and remembers that
    for the process. Keras asks for it where it would seed it (`seed`) or serialize its types (`save`), and
    asking imports it: seconds of a JAX trial's process, for a TensorFlow no stage uses."""
    if active() != "jax" or "tensorflow" in sys.modules:
        yield
        return
    sys.modules["tensorflow"] = None  # Python's own "not importable" mark: Keras then finds no TensorFlow
    try:
        yield
    finally:
        del sys.modules["tensorflow"]


def seed(value: int) -> None:
    """`keras.utils.set_random_seed` (Python's, NumPy's and Keras's seeds): on JAX without importing
    TensorFlow, which it seeds too wherever it is installed (for `tf.data` pipelines, which no stage uses).
    Where TensorFlow is loaded already it is seeded as ever."""
    import keras

    with _without_tensorflow():
        keras.utils.set_random_seed(value)


def save(model, path: Path) -> None:
    """`model.save(path)`: on JAX without importing TensorFlow (3.5 core-s of a trial's process that was
    not seeded), the same `.keras` file either way."""
    with _without_tensorflow():
        model.save(path)


def device() -> str:
    """The device this process's Keras computes on: `cpu`, or `cuda:0` for the first GPU it sees (under Ray,
    the first of those in `CUDA_VISIBLE_DEVICES`). Asked after the work started: asking initialises the
    backend's runtime, which must not happen in a fork server."""
    backend = active()
    if backend == "jax":
        import jax

        d = jax.devices()[0]  # JAX's default device: a GPU where jaxlib has CUDA and sees one
        return "cpu" if d.platform == "cpu" else f"{'cuda' if d.platform == 'gpu' else d.platform}:{d.id}"
    if backend == "tensorflow":
        import tensorflow as tf

        # TensorFlow places an op on its first GPU where it sees one, else on the CPU
        return "cuda:0" if tf.config.list_logical_devices("GPU") else "cpu"
    return backend


def versions() -> dict[str, str]:
    """The backend Keras runs here and its packages' versions, for a trial's `info.versions`; where Keras is
    not loaded (a benchmark's record of its machine), every backend's packages and no choice."""
    loaded = "keras" in sys.modules
    out = {"keras_backend": active()} if loaded else {}
    for pkg in PACKAGES[out["keras_backend"]] if loaded else [p for pkgs in PACKAGES.values() for p in pkgs]:
        with suppress(PackageNotFoundError):
            out[pkg] = version(pkg)
    return out
