"""bench.report puts the proving tables into the README between its markers."""

from __future__ import annotations

from pathlib import Path

from bench.report import END, START, into_readme

ROOT = Path(__file__).resolve().parents[2]


def test_report_replaces_only_the_marked_section_and_demotes_headings() -> None:
    readme = f"# voiced\n\n## Proving ground\nintro\n{START}\nold\n{END}\n\n## Development\n"
    report = "# Proving ground\n\nGenerated.\n\n## Figures\n| a |\n"
    out = into_readme(readme, report)
    assert out == (
        f"# voiced\n\n## Proving ground\nintro\n{START}\nGenerated.\n\n### Figures\n| a |\n{END}"
        "\n\n## Development\n"
    )
    assert into_readme(out, report) == out, "idempotent"


def test_the_shipped_readme_holds_the_shipped_report() -> None:
    readme = (ROOT / "README.md").read_text()
    report = (ROOT / "docs" / "proving.md").read_text()
    assert into_readme(readme, report) == readme, (
        "run: python -m bench.report (or paste docs/proving.md)"
    )


def test_sections_other_checks_write_into_docs_proving_are_kept() -> None:
    from bench.report import keep_sections

    old = (
        "# Proving ground\nold figures\n<!-- arm64:start -->\n## arm64\nran under qemu\n"
        "<!-- arm64:end -->\n\n<!-- systemd:start -->\n## systemd\nnspawn: ok\n"
        "<!-- systemd:end -->\n"
    )
    new = "# Proving ground\nnew figures\n"
    out = keep_sections(old, new)
    assert out.startswith(new) and "old figures" not in out
    assert "<!-- arm64:start -->\n## arm64\nran under qemu\n<!-- arm64:end -->" in out
    assert "<!-- systemd:start -->\n## systemd\nnspawn: ok\n<!-- systemd:end -->" in out
    assert keep_sections(out, new) == out, "idempotent"
    # A block the new text already has (empty here) is replaced in place, not repeated.
    placed = keep_sections(old, new + "<!-- systemd:start --><!-- systemd:end -->\ntail\n")
    assert (
        placed.count("<!-- systemd:start -->") == 1
        and "nspawn: ok\n<!-- systemd:end -->\ntail" in placed
    )
    assert keep_sections("", new) == new  # nothing to keep


def test_the_soak_section_says_nominal_and_wall_time() -> None:
    from bench.report import soak_md

    sample = dict(
        nominal_h=1.0, rss_mb=50.0, rss_trimmed_mb=49.0, py_heap_mb=7.0, fds=9, tasks=6, threads=8
    )
    s = dict(
        hours=24.0,
        wall_s=864.0,
        scale=100.0,
        chaos=True,
        faults_injected=["x", "x", "y"],
        turns=10,
        resumes=5,
        rollovers=2,
        retries=1,
        connections=9,
        frames_captured=100,
        frames_lost=0,
        answered_twice=0,
        turns_unanswered=1,
        turns_reported_unanswered=1,
        turns_unanswered_unreported=0,
        frames_posted=4320000,
        watchdog_pings=10,
        watchdog_longest_gap_s=0.6,
        status_updates=3,
        state_saves=4,
        exit_code=0,
        rss_mb_start=50.0,
        rss_mb_end=50.0,
        rss_mb_max=50.0,
        rss_trimmed_mb_start=49.0,
        rss_trimmed_mb_end=49.0,
        py_heap_mb_start=7.0,
        py_heap_mb_end=7.0,
        fds_start=9,
        fds_end=9,
        tasks_start=6,
        tasks_end=6,
        threads_start=8,
        threads_end=8,
        samples=[sample, sample],
    )
    text = soak_md(s)
    assert text.startswith("24 h nominal / 14.4 min wall (×100")
    assert "x ×2, y ×1" in text and "4320000 frames" in text
