"""A trial's files carried as bytes, for nodes that share no filesystem with the driver.

On a cluster without a shared filesystem (Kubernetes, most clouds) a Ray task writes its trial's files on
its own node's disk, where the driver cannot read them. The task packs what the driver uploads (the
outcome's files, its candidates' files, the trial's log) into a parcel that travels back with its result
through Ray's object store, and the driver writes them at the same paths in its own trial folder before
it uploads them; a training's files travel to the synthesis task the same way. On one machine, or on a
shared filesystem, the parcel rewrites the files with their own bytes.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from hqsearch.pipeline.trial import TrialOutcome

Parcel = dict[str, bytes]  # path relative to the trial folder -> the file's bytes


def trial_files(outcomes: Iterable[TrialOutcome], trial_dir: Path) -> list[Path]:
    """What the driver uploads of a trial: the outcomes' files, their candidates' files, the trial's log."""
    files = [trial_dir / "trial.log"]
    for out in outcomes:
        files += [Path(f) for o in (out, *out.candidates) for f in o.files]
    return files


def pack(files: Iterable[Path], trial_dir: Path) -> Parcel:
    """The files that exist, by their path in `trial_dir`; one that is missing is left for the driver,
    whose upload says so."""
    root = trial_dir.resolve()
    parcel = {}
    for f in files:
        if f.is_file():
            parcel[str(f.resolve().relative_to(root))] = f.read_bytes()
    return parcel


def unpack(parcel: Parcel, trial_dir: Path, keep_existing: bool = False) -> None:
    """Write the parcel's files into `trial_dir`; with `keep_existing` a file already there is kept (a
    training's files reaching the synthesis task on the node that wrote them)."""
    for name, data in parcel.items():
        path = trial_dir / name
        if keep_existing and path.exists():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
