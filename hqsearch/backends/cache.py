"""A content-addressed design cache: identical designs are synthesised once.

The key is a hash of the generated design's files (names and bytes, memory tables included) plus
everything else that changes the result: backend and its settings, part, clock, the tool's version
string, the converter's (alkaid) name and version, and a hash of hqsearch's own source files that shape
the number (`SHAPING_SOURCES`: tracing, the backends, report parsing). The package version is no part of
it: it stays the same across the fixes that change numbers. At high beta many trials
collapse to the same network, and re-runs and workers sharing the cache directory reuse each other's
results.
Entries are written atomically (temp file + rename), so concurrent writers never leave half a file.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hqsearch.backends.base import SynthResult


PACKAGE = Path(__file__).resolve().parents[1]  # hqsearch/
# hqsearch's sources that decide a cached number, relative to the package: the firmware (tracing, emulation)
# and every backend (project writing, tool scripts, report parsing, the estimate)
SHAPING_SOURCES = ("firmware", "backends")


def design_files(root: Path) -> list[Path]:
    """Every file under `root`: sources, memory tables (`.mem`), constraints, scripts."""
    return sorted(f for f in root.rglob("*") if f.is_file())


@lru_cache(maxsize=4)
def source_hash(package: Path = PACKAGE) -> str:
    """A hash of the `SHAPING_SOURCES` under `package` (names and bytes of their .py files): changes with any
    fix to tracing, a backend or a report parser, and with nothing else."""
    h = hashlib.sha256()
    for entry in SHAPING_SOURCES:
        path = package / entry
        for f in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            h.update(str(f.relative_to(package)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def design_key(root: Path, files: Iterable[Path], **meta: object) -> str:
    """A hash of the files (names relative to `root`, and bytes) and of everything in `meta` (the backend
    passes its settings and its tool's version), with the hash of hqsearch's shaping sources and the
    converter's version: what changes a synthesis result must be in here, a path that does not must not."""
    h = hashlib.sha256()
    for f in sorted(Path(f) for f in files):
        h.update(str(f.relative_to(root)).encode() + b"\0")
        h.update(f.read_bytes() + b"\0")
    versions = {"hqsearch_sources": source_hash(PACKAGE), "converter": f"alkaid {_version('alkaid')}"}
    h.update(json.dumps({**meta, **versions}, sort_keys=True, default=str).encode())
    return h.hexdigest()


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "unknown"


class DesignCache:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored part of a result (metrics, sources, tool, details), or None."""
        try:
            data = json.loads(self._path(key).read_text())
        except (OSError, json.JSONDecodeError):
            return None
        return {
            "metrics": data["metrics"],
            "sources": data["sources"],
            "tool": data["tool"],
            "details": data.get("details", {}),
        }

    def put(self, key: str, result: SynthResult) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {"metrics": result.metrics, "sources": result.sources, "tool": result.tool, "details": result.details}
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(data, f)
        os.replace(tmp, path)
