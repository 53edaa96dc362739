"""HLS pragma fix-ups for a written hls4ml project, applied to the top function before the build.

HGQ's usage tips: with `io_parallel` a `#pragma HLS DATAFLOW` in the top function can blow up resources
and latency (replace it with PIPELINE or drop it), and `#pragma HLS INLINE RECURSIVE` in the top function
may cut resources by about 10% with the latency strategy. hls4ml 1.3 writes one pipeline pragma into the
top function of `firmware/<project>.cpp`, right after the interface pragmas: PIPELINE for `io_parallel`
designs whose layers are fully parallel (HGQ2 convolutions are, by default), DATAFLOW for `io_stream`,
the resource strategy, or a convolution with `parallelization_factor` below its output size.

Every fix-up is idempotent (applying it twice changes nothing the second time) and returns whether it
changed the file. `compile()` and `write()` of an hls4ml ModelGraph rewrite the project and drop the
fix-ups, so they are applied again right before a build.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from pathlib import Path

from hqsearch.exceptions import PragmaError

_DATAFLOW = re.compile(r"^([ \t]*)#pragma[ \t]+HLS[ \t]+DATAFLOW\b[^\n]*\n?", re.MULTILINE | re.IGNORECASE)
_PIPELINE_OR_DATAFLOW = re.compile(r"^([ \t]*)#pragma[ \t]+HLS[ \t]+(PIPELINE|DATAFLOW)\b[^\n]*\n", re.MULTILINE)
_INLINE_RECURSIVE = re.compile(r"#pragma[ \t]+HLS[ \t]+INLINE[ \t]+RECURSIVE\b", re.IGNORECASE)


def project_name(project_dir: Path) -> str:
    """The top function's name, as hls4ml wrote it into project.tcl."""
    tcl = Path(project_dir) / "project.tcl"
    try:
        m = re.search(r'set\s+project_name\s+"([^"]+)"', tcl.read_text())
    except OSError:
        m = None
    if not m:
        raise PragmaError(f"{tcl}: no 'set project_name' line; is {project_dir} a written hls4ml project?")
    return m[1]


def _top_source(project_dir: Path, name: str | None) -> tuple[Path, str, str]:
    name = name or project_name(project_dir)
    path = Path(project_dir) / "firmware" / f"{name}.cpp"
    try:
        return path, name, path.read_text()
    except OSError as err:
        raise PragmaError(f"{path}: cannot read the top function's source ({err.strerror})") from None


def _body_span(src: str, name: str, path: Path) -> tuple[int, int]:
    """Start (after the opening brace) and end (at the closing brace) of `void name(...) { ... }`."""
    m = re.search(rf"^\s*void\s+{re.escape(name)}\s*\(", src, re.MULTILINE)
    if not m:
        raise PragmaError(f"{path}: top function 'void {name}(...)' not found")
    open_brace = src.find("{", m.end())
    if open_brace < 0:
        raise PragmaError(f"{path}: top function '{name}' has no body")
    depth = 0
    for i in range(open_brace, len(src)):
        if src[i] == "{":
            depth += 1
        elif src[i] == "}":
            depth -= 1
            if depth == 0:
                return open_brace + 1, i
    raise PragmaError(f"{path}: unbalanced braces in top function '{name}'")


def _edit_body(project_dir: Path, name: str | None, edit: Callable[[str], str]) -> bool:
    path, name, src = _top_source(project_dir, name)
    start, end = _body_span(src, name, path)
    body = edit(src[start:end])
    if body == src[start:end]:
        return False
    path.write_text(src[:start] + body + src[end:])
    return True


def dataflow_to_pipeline(project_dir: Path, name: str | None = None) -> bool:
    """Replace the top function's `#pragma HLS DATAFLOW` with `#pragma HLS PIPELINE` (HGQ tip 2)."""
    return _edit_body(project_dir, name, lambda body: _DATAFLOW.sub(r"\1#pragma HLS PIPELINE\n", body))


def remove_dataflow(project_dir: Path, name: str | None = None) -> bool:
    """Drop the top function's `#pragma HLS DATAFLOW` (HGQ tip 2, the other variant)."""
    return _edit_body(project_dir, name, lambda body: _DATAFLOW.sub("", body))


def inline_recursive(project_dir: Path, name: str | None = None) -> bool:
    """Add `#pragma HLS INLINE RECURSIVE` to the top function, after its pipeline pragma (HGQ tip 3)."""

    def edit(body: str) -> str:
        if _INLINE_RECURSIVE.search(body):
            return body
        m = _PIPELINE_OR_DATAFLOW.search(body)
        if m:
            return body[: m.end()] + f"{m[1]}#pragma HLS INLINE RECURSIVE\n" + body[m.end() :]
        return "\n    #pragma HLS INLINE RECURSIVE" + body  # no pipeline pragma: first line of the body

    return _edit_body(project_dir, name, edit)


# Names as in config.PragmaFixup
FIXUPS: dict[str, Callable[[Path, str | None], bool]] = {
    "dataflow_to_pipeline": dataflow_to_pipeline,
    "remove_dataflow": remove_dataflow,
    "inline_recursive": inline_recursive,
}


def apply_fixups(project_dir: Path, names: Iterable[str], name: str | None = None) -> dict[str, bool]:
    """Apply the named fix-ups in order; returns, per fix-up, whether it changed the source."""
    unknown = [n for n in names if n not in FIXUPS]
    if unknown:
        raise PragmaError(f"unknown pragma fix-up(s) {unknown}; known: {sorted(FIXUPS)}")
    return {n: FIXUPS[n](Path(project_dir), name) for n in names}
