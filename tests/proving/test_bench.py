"""``python -m bench --quick --json`` runs end to end and its last line carries every
figure of issue 7 with how it was measured. Figures are printed, not asserted against
targets (common.md: timing targets are shown by benchmarks) — except correctness:
no frame may be lost across the forced goAways."""

from __future__ import annotations

import json
import subprocess
import sys

from bench.common import ROOT

FIGURES = ("cpu_ratio_vs_sdk", "cpu_s_per_audio_min", "rss_mb", "rss_ratio_vs_sdk", "ready_s",
           "resume_gap_p50_ms", "resume_gap_p95_ms", "frames_lost", "playback_latency_p99_ms",
           "ptt_latency_p99_ms", "resampler_alias_db", "resampler_x_realtime")


def test_bench_quick_prints_a_table_and_one_json_line_with_every_figure() -> None:
    proc = subprocess.run([sys.executable, "-m", "bench", "--quick", "--json"], cwd=ROOT,
                          capture_output=True, text=True, timeout=170)
    assert proc.returncode == 0, proc.stderr[-3000:]
    *table, last = proc.stdout.strip().splitlines()
    print("\n".join(table))
    figures = json.loads(last)
    for name in FIGURES:
        assert name in figures, name
    assert set(figures["cpu_s_per_audio_min"]) == {"voiced", "sdk", "floor"}
    assert all(v > 0 for v in figures["cpu_s_per_audio_min"].values())
    assert figures["goaways"] >= 40 and figures["resumes"] >= 40
    assert figures["frames_lost"] == 0
    assert figures["rss_mb"] > 0 and figures["ready_s"] > 0
    for name in ("cpu_ratio_vs_sdk", "rss_mb", "resume_gap_p50_ms", "ptt_latency_p99_ms"):
        assert figures["how"][name], name
    assert any("cpu_ratio_vs_sdk" in line for line in table)
