"""A content-addressed design cache: identical designs are synthesised once.

The key is a hash of the generated design's files (names and bytes, memory tables included) plus
everything else that changes the result: backend and its settings, part, clock, the tool's version
string, hqsearch's version and the converter's (alkaid) name and version. At high beta many trials
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
from pathlib import Path

from .base import SynthResult


def design_files(root: Path) -> list[Path]:
    """Every file under `root`: sources, memory tables (`.mem`), constraints, scripts."""
    return sorted(f for f in root.rglob("*") if f.is_file())


def design_key(root: Path, files: Iterable[Path], **meta: object) -> str:
    """A hash of the files (names relative to `root`, and bytes) and of everything in `meta`, with the
    versions of hqsearch and of the converter: what changes a synthesis result must be in here, a path
    that does not must not."""
    h = hashlib.sha256()
    for f in sorted(Path(f) for f in files):
        h.update(str(f.relative_to(root)).encode() + b"\0")
        h.update(f.read_bytes() + b"\0")
    versions = {"hqsearch": _version("hqsearch"), "converter": f"alkaid {_version('alkaid')}"}
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

    def get(self, key: str) -> SynthResult | None:
        try:
            data = json.loads(self._path(key).read_text())
        except (OSError, json.JSONDecodeError):
            return None
        return SynthResult(
            metrics=data["metrics"],
            sources=data["sources"],
            tool=data["tool"],
            cache_key=key,
            cache_hit=True,
            details=data.get("details", {}),
        )

    def put(self, key: str, result: SynthResult) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {"metrics": result.metrics, "sources": result.sources, "tool": result.tool, "details": result.details}
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(data, f)
        os.replace(tmp, path)
