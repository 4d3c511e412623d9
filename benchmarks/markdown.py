"""Reports as Markdown: prose from the templates in ``benchmarks/templates``, tables from rows."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from string import Template

__all__ = ["render", "table"]

TEMPLATES = Path(__file__).parent / "templates"


def render(name: str, **values: object) -> str:
    """Fill the template ``name`` (``$field`` placeholders, ``string.Template``); a missing field is an error."""
    return Template((TEMPLATES / name).read_text()).substitute({k: str(v) for k, v in values.items()})


def table(header: Sequence[str], rows: Iterable[Sequence[object]], left: int = 1) -> str:
    """A Markdown table; the first ``left`` columns are left-aligned, the others (figures) right-aligned."""
    align = ["---" if i < left else "---:" for i in range(len(header))]
    lines = [header, align, *([str(c) for c in row] for row in rows)]
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)
