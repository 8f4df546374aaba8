"""Where a study writes, and how: ``reports/<study>/`` with ``table.csv`` + ``table.md`` and PNG figures."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..artifacts import write_bytes, write_csv

REPORTS_DIR = "reports"


def report_dir(workdir: str | Path, study: str, out: str | Path | None = None) -> Path:
    """``--out`` if given, else ``<workdir>/reports/<study>/`` (created)."""
    path = Path(out) if out else Path(workdir) / REPORTS_DIR / study
    path.mkdir(parents=True, exist_ok=True)
    return path


def _number(v: float) -> str:
    """Four significant digits for scores (0.7094), one decimal for large values (14568.9), no float noise (19.4)."""
    return "" if v != v else (f"{v:.1f}" if abs(v) >= 1000 else f"{v:.4g}")


def markdown_table(df: pd.DataFrame, floatfmt: str | None = None) -> str:
    """A GitHub-flavoured Markdown table without the optional ``tabulate`` dependency (``floatfmt``: one format for all floats)."""
    def cell(v: object) -> str:
        if isinstance(v, float):
            return _number(v) if floatfmt is None or v != v else format(v, floatfmt)
        return str(v).replace("|", "\\|")

    head = "| " + " | ".join(map(str, df.columns)) + " |"
    rule = "|" + "|".join("---" for _ in df.columns) + "|"
    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, rule, *rows]) + "\n"


def write_table(out: Path, df: pd.DataFrame, name: str = "table", title: str = "", notes: str = "") -> tuple[Path, Path]:
    """The study's table as ``<name>.csv`` (pandas reads it) and ``<name>.md`` (a student hands it in)."""
    csv, md = out / f"{name}.csv", out / f"{name}.md"
    write_csv(csv, df)
    text = (f"# {title}\n\n" if title else "") + markdown_table(df) + (f"\n{notes.strip()}\n" if notes else "")
    write_bytes(md, text.encode())
    return csv, md
