"""Running external EDA tools: argument lists only (no shell), their own process group, a hard timeout."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path


class SynthError(Exception):
    """A synthesis tool failed, ran over its time, or left no usable report; the message says which."""


def tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def run_tool(argv: list[str], cwd: Path, log: Path, timeout: float | None = None, env: dict | None = None) -> int:
    """Run `argv` in `cwd` with output to `log`; on timeout kill its whole process tree and raise."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise SynthError(f"{Path(argv[0]).name} ran over its timeout of {timeout:g} s; killed") from None
        except BaseException:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
