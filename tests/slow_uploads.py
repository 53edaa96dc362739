"""Uploads that take their time, for testing what happens while a finished trial is being recorded.

In a test process, `SlowStore` wraps the artifact store of a `Driver`. As a script it is `hqsearch` itself
with every upload slowed (`python tests/slow_uploads.py SECONDS MARKER run CONFIG ...`): a real CLI
process, for tests that send it signals. MARKER is created when the first upload begins, so the test
knows the driver is recording a trial.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO


class SlowStore:
    """An artifact store whose writes sleep `seconds` first (and call `on_write` before they do)."""

    def __init__(self, store: Any, seconds: float, on_write: Callable[[], None] = lambda: None) -> None:
        self.store, self.seconds, self.on_write = store, seconds, on_write

    def write(self, artifact_id: str, content_body: BinaryIO) -> None:
        self.on_write()
        time.sleep(self.seconds)
        self.store.write(artifact_id, content_body)

    def __getattr__(self, name: str) -> Any:  # reads and removals as the real store does them
        return getattr(self.store, name)


def main(argv: list[str]) -> int:
    import hqsearch.driver
    from hqsearch.cli import main as hqsearch_main

    seconds, marker, rest = float(argv[0]), Path(argv[1]), argv[2:]
    real = hqsearch.driver.artifact_store
    hqsearch.driver.artifact_store = lambda cfg: SlowStore(real(cfg), seconds, marker.touch)
    return hqsearch_main(rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
