"""Plain-text tables for the CLI's views (results, trades, summary): pure, no I/O."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def render_table(
    columns: Sequence[str], body: Iterable[Sequence[str]], *, min_widths: Sequence[int] = ()
) -> str:
    """Rows under a header and a rule, each column as wide as its widest cell."""
    rows = [tuple(columns), *(tuple(r) for r in body)]
    least = list(min_widths) + [0] * (len(columns) - len(min_widths))
    widths = [max(least[i], *(len(row[i]) for row in rows)) for i in range(len(columns))]
    lines = []
    for n, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)
