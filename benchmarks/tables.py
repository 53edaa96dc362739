"""Result tables as Markdown (pandas' `to_markdown` needs `tabulate`, which the project does not install)."""

from __future__ import annotations

import pandas as pd


def markdown(frame: pd.DataFrame) -> str:
    """One row per row of `frame`, its columns as headers; a missing value is `-`."""

    def cell(v: object) -> str:
        return "-" if v is None or (isinstance(v, float) and v != v) else str(v)

    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)
