"""A content-addressed design cache: identical designs are synthesised once.

The key is a hash of the generated design's source files (names and bytes) plus everything else that
changes the result: backend, part, clock and tool version. At high beta many trials collapse to the
same network, and re-runs and workers sharing the cache directory reuse each other's results.
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


def design_key(root: Path, files: Iterable[Path], **meta: object) -> str:
    h = hashlib.sha256()
    for f in sorted(Path(f) for f in files):
        h.update(str(f.relative_to(root)).encode() + b"\0")
        h.update(f.read_bytes() + b"\0")
    h.update(json.dumps(meta, sort_keys=True, default=str).encode())
    return h.hexdigest()


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
