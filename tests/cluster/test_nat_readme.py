"""router/README.md's theory table says what cluster/nat.py computes, cell by cell."""

from __future__ import annotations

from pathlib import Path

from cluster.nat import PRESETS, theory_table

README = Path(__file__).resolve().parents[2] / "router" / "README.md"


def _word(verdict) -> str:
    if not verdict.possible:
        return "**no**"
    if len(verdict.directions) == 2:
        return "yes"
    return f"yes, {verdict.directions[0]} only"


def test_the_readme_table_is_theorys() -> None:
    lines = README.read_text().splitlines()
    start = lines.index(next(line for line in lines if line.startswith("| dialer \\ listener |")))
    header = [c.strip() for c in lines[start].strip("|").split("|")][1:]
    assert header == list(PRESETS)
    table = theory_table()
    for row in lines[start + 2:start + 2 + len(PRESETS)]:
        dialer, *cells = [c.strip() for c in row.strip("|").split("|")]
        for listener, cell in zip(header, cells, strict=True):
            for transport in ("tcp", "quic"):
                assert cell == _word(table[(dialer, listener, transport)]), (dialer, listener)
