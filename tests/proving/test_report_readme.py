"""bench.report puts the proving tables into the README between its markers."""

from __future__ import annotations

from pathlib import Path

from bench.report import END, START, into_readme

ROOT = Path(__file__).resolve().parents[2]


def test_report_replaces_only_the_marked_section_and_demotes_headings() -> None:
    readme = f"# voiced\n\n## Proving ground\nintro\n{START}\nold\n{END}\n\n## Development\n"
    report = "# Proving ground\n\nGenerated.\n\n## Figures\n| a |\n"
    out = into_readme(readme, report)
    assert out == (f"# voiced\n\n## Proving ground\nintro\n{START}\nGenerated.\n\n### Figures\n| a |\n{END}"
                   "\n\n## Development\n")
    assert into_readme(out, report) == out, "idempotent"


def test_the_shipped_readme_holds_the_shipped_report() -> None:
    readme = (ROOT / "README.md").read_text()
    report = (ROOT / "docs" / "proving.md").read_text()
    assert into_readme(readme, report) == readme, "run: python -m bench.report (or paste docs/proving.md)"
