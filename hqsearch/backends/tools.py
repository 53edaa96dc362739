"""Running external EDA tools: argument lists only (no shell), their own process group, a hard timeout,
and never past the life of the process that started them (see `toolguard`)."""

from __future__ import annotations

import contextlib
import functools
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from hqsearch.exceptions import SynthError


def tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


GUARD = Path(__file__).with_name("toolguard.py")
_RELEASE = re.compile(r"\bv?(20\d\d\.\d+(?:\.\d+)?)\b")


@functools.cache
def xilinx_version(exe: str) -> str:
    """A Xilinx tool's release (`2020.1`): from its install path, else from `exe -version`.

    The design cache keys on this string, not on the path, so a moved install still hits and an
    upgraded one does not.
    """
    resolved = str(Path(exe).resolve())
    if m := re.search(r"/(20\d\d\.\d+)(?:/|$)", resolved):
        return m[1]
    try:
        out = subprocess.run([exe, "-version"], capture_output=True, text=True, timeout=300).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    m = _RELEASE.search(out)
    return m[1] if m else "unknown"


def run_tool(argv: list[str], cwd: Path, log: Path, timeout: float | None = None, env: dict | None = None) -> int:
    """Run `argv` in `cwd` with output to `log`; on timeout kill its whole process tree and raise.

    The tool runs under `toolguard`, in a process group of its own that is killed here on timeout or on
    any exception, and by the guard itself when this process dies without a chance to clean up.
    """
    if timeout is not None and timeout <= 0:
        raise SynthError(f"{Path(argv[0]).name} was not started: the stage's time was already used up")
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", str(GUARD), str(os.getpid()), *argv],
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            raise SynthError(f"{Path(argv[0]).name} ran over its timeout of {timeout:.4g} s; killed") from None
        except BaseException:
            _kill_group(proc)
            raise


def _kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
