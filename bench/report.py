"""Write ``docs/proving.md``: the benchmark figures, the fault matrix and the soak.

    python -m bench.report [--quick] [--soak-hours 24] [--out docs/proving.md]
        [--figures-from F.json] [--profile-from F.json] [--soak-from F.json]
        [--chaos-from F.json] [--keep-faults]

The ``--*-from`` options take parts already measured (the last JSON line of ``python -m
bench --json``, ``python -m bench.profile --json``, the ``--out`` file of ``python -m
bench.soak``), so a loaded machine can run them one at a time; ``--keep-faults`` keeps the
fault matrix of the existing document. The document says which parts were taken so.

It also puts the same text into README.md between the ``<!-- proving:start -->`` and
``<!-- proving:end -->`` markers (headings one level down), so the README's tables are
produced by this command too. Full mode takes about ten minutes on two cores;
``--quick`` about two.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
from pathlib import Path
from typing import Any

from bench.__main__ import collect, how
from bench.common import ROOT
from bench.faults import markdown as fault_table
from bench.faults import run_all
from bench.profile import profile_send_path
from bench.soak import run_soak

FIGURE_ROWS = [
    (
        "cpu_ratio_vs_sdk",
        lambda f: f"{f['cpu_ratio_vs_sdk']:.2f}",
        lambda f: f"vs bare websockets floor: {f['cpu_ratio_vs_floor']:.2f}",
    ),
    (
        "cpu_s_per_audio_min",
        lambda f: f"{f['cpu_s_per_audio_min']['voiced']:.3f}",
        lambda f: (
            f"SDK {f['cpu_s_per_audio_min']['sdk']:.3f}, floor "
            f"{f['cpu_s_per_audio_min']['floor']:.3f}"
        ),
    ),
    (
        "rss_mb",
        lambda f: f"{f['rss_mb']:.1f}",
        lambda f: (
            f"SDK equivalent {f['rss_mb_sdk']:.1f}; voiced core on the same harness "
            f"{f['rss_mb_core']:.1f}"
        ),
    ),
    (
        "rss_ratio_vs_sdk",
        lambda f: f"{f['rss_ratio_vs_sdk']:.2f}",
        lambda f: f"core only {f['rss_ratio_core_vs_sdk']:.2f}",
    ),
    (
        "ready_s",
        lambda f: f"{f['ready_s']:.3f}",
        lambda f: f"connected (IDLE) {f['idle_s']:.3f}; SDK app connected {f['ready_s_sdk']:.3f}",
    ),
    (
        "resume_gap_p50_ms",
        lambda f: f"{f['resume_gap_p50_ms']:.1f}",
        lambda f: (
            f"client overhead on loopback (a real network adds its round trips); "
            f"p95 {f['resume_gap_p95_ms']:.1f}, max {f['resume_gap_max_ms']:.1f}; "
            f"{f['goaways']} goAways, {f['resumes']} resumes, {f['rollovers']} rollovers"
        ),
    ),
    (
        "frames_lost",
        lambda f: str(f["frames_lost"]),
        lambda f: f"of {f['frames_captured']} captured",
    ),
    (
        "reply_heard_latency_p50_ms",
        lambda f: f"{f['reply_heard_latency_p50_ms']:.1f}",
        lambda f: (
            f"p95 {f['reply_heard_latency_p95_ms']:.1f}; of it the server "
            f"p50 {f['reply_server_latency_p50_ms']:.1f}; at realtime pace p50 "
            f"{f['realtime_heard_p50_ms']:.1f}"
        ),
    ),
    (
        "reply_added_latency_p95_ms",
        lambda f: f"{f['reply_added_latency_p95_ms']:.1f}",
        lambda f: (
            f"goal ≤ 25 ({_met(f['reply_added_latency_p95_ms'] <= 25)}); p50 "
            f"{f['reply_added_latency_p50_ms']:.1f}, max "
            f"{f['reply_added_latency_max_ms']:.1f}; underruns per reply "
            f"{_list(f['reply_underruns_per_reply'])}; at realtime pace p95 "
            f"{f['realtime_added_p95_ms']:.1f}, underruns "
            f"{_list(f['realtime_underruns_per_reply'])}"
        ),
    ),
    (
        "playback_pipeline_p95_ms",
        lambda f: f"{f['playback_pipeline_p95_ms']:.2f}",
        lambda f: f"at realtime pace {f['realtime_to_play_p95_ms']:.2f}",
    ),
    (
        "send_cpu_ratio_vs_floor",
        lambda f: f"{f['send_cpu_ratio_vs_floor']:.2f}",
        lambda f: (
            f"goal ≤ 1.2 ({_met(f['send_cpu_ratio_vs_floor'] <= 1.2)}); with the "
            f"thread hop of a real mic"
        ),
    ),
    (
        "idle_cpu_s_per_hour",
        lambda f: f"{f['idle_cpu_s_per_hour']:.1f}",
        lambda f: f"floor {f['idle_cpu_s_per_hour_floor']:.1f}",
    ),
    (
        "idle_cpu_ratio_vs_floor",
        lambda f: f"{f['idle_cpu_ratio_vs_floor']:.2f}",
        lambda f: f"goal ≤ 1.3 ({_met(f['idle_cpu_ratio_vs_floor'] <= 1.3)})",
    ),
    (
        "idle_wakeups_per_s",
        lambda f: f"{f['idle_wakeups_per_s']:.1f}",
        lambda f: (
            f"floor {f['idle_wakeups_per_s_floor']:.1f}; by thread: {_threads(f['idle_threads'])}"
        ),
    ),
    (
        "speaker_resume_p95_ms",
        lambda f: f"{f['speaker_resume_p95_ms']:.2f}",
        lambda f: (
            f"p50 {f['speaker_resume_p50_ms']:.2f}; a running stream p50 "
            f"{f['speaker_running_p50_ms']:.2f}, p95 {f['speaker_running_p95_ms']:.2f} "
            "(it waits for its next 20 ms callback; a started one is asked at once)"
        ),
    ),
    (
        "ptt_latency_p99_ms",
        lambda f: f"{f['ptt_latency_p99_ms']:.2f}",
        lambda f: f"p50 {f['ptt_latency_p50_ms']:.2f}",
    ),
    (
        "resampler_alias_db",
        lambda f: f"{f['resampler_alias_db']:.1f}",
        lambda f: f"soxr HQ {f['soxr_alias_db']}",
    ),
    (
        "resampler_x_realtime",
        lambda f: str(f["resampler_x_realtime"]),
        lambda f: f"soxr HQ {f['soxr_x_realtime']}",
    ),
]


def _attempt(part: Any) -> str:
    """A part of the report, or — when it could not be produced (a child that timed out on
    a machine loaded past its limits) — one line saying so, so the rest still gets written."""
    try:
        return str(part())
    except Exception as exc:  # reported in the document, never hidden
        return (
            f"**Not produced in this run**: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
        )


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def _list(values: list[Any]) -> str:
    return " ".join(str(v) for v in values)


def _threads(threads: dict[str, float]) -> str:
    return ", ".join(f"{name} {rate:g}" for name, rate in threads.items() if rate >= 0.5)


def figures_md(f: dict[str, Any]) -> str:
    how = f["how"]
    lines = ["| figure | voiced | beside it | how it was measured |", "|---|---|---|---|"]
    for name, value, beside in FIGURE_ROWS:
        lines.append(f"| `{name}` | {value(f)} | {beside(f)} | {how.get(name, '')} |")
    return "\n".join(lines)


def soak_md(s: dict[str, Any]) -> str:
    faults = ""
    if s["chaos"]:
        counts: dict[str, int] = {}
        for name in s["faults_injected"]:
            counts[name] = counts.get(name, 0) + 1
        faults = (
            f"Faults injected at random moments: {len(s['faults_injected'])} — "
            + ", ".join(f"{name} ×{n}" for name, n in sorted(counts.items()))
            + "."
        )
    return "\n".join(
        [
            f"{s['hours']:g} h nominal / {s['wall_s'] / 60:.1f} min wall (×{s['scale']:g}, "
            f"the mic at its real rate all day, production timeouts): "
            f"{s['turns']} turns, {s['resumes']} resumes, {s['rollovers']} rollovers, "
            f"{s['retries']} retries, {s['connections']} server connections; frames captured "
            f"{s['frames_captured']}, lost {s['frames_lost']}, turns answered twice "
            f"{s['answered_twice']}; turns received but not answered {s['turns_unanswered']} "
            f"(reported: {s['turns_reported_unanswered']}, silent: "
            f"{s['turns_unanswered_unreported']}).",
            "",
            f"The mic posted {s['frames_posted']} frames (50 per nominal second, from its own "
            f"thread, idle ones through the pre-roll ring); the watchdog gate let "
            f"{s['watchdog_pings']} pings through (longest gap {s['watchdog_longest_gap_s']} s "
            f"wall); {s['status_updates']} STATUS updates; the state file was saved "
            f"{s['state_saves']} times; SIGTERM ended the day with exit code {s['exit_code']}.",
            *(["", faults] if faults else []),
            "",
            "| resource | after 1 h | at the end | max |",
            "|---|---|---|---|",
            f"| resident memory (MB) | {s['rss_mb_start']:.1f} | {s['rss_mb_end']:.1f} | "
            f"{s['rss_mb_max']:.1f} |",
            f"| resident memory after malloc_trim (MB) | {s['rss_trimmed_mb_start']:.1f} | "
            f"{s['rss_trimmed_mb_end']:.1f} | "
            f"{max(x['rss_trimmed_mb'] for x in s['samples']):.1f} |",
            f"| Python objects (MB, getsizeof of gc-tracked) | {s['py_heap_mb_start']:.2f} | "
            f"{s['py_heap_mb_end']:.2f} | {max(x['py_heap_mb'] for x in s['samples']):.2f} |",
            f"| open file descriptors | {s['fds_start']} | {s['fds_end']} | "
            f"{max(x['fds'] for x in s['samples'])} |",
            f"| asyncio tasks | {s['tasks_start']} | {s['tasks_end']} | "
            f"{max(x['tasks'] for x in s['samples'])} |",
            f"| threads | {s['threads_start']} | {s['threads_end']} | "
            f"{max(x['threads'] for x in s['samples'])} |",
            "",
            "Resident memory by nominal hour: "
            + ", ".join(f"{x['nominal_h']:g} h {x['rss_mb']:.1f} MB" for x in s["samples"][::3])
            + ".",
        ]
    )


def _load(path: str) -> Any:
    """The last JSON object in *path* (a file of JSON, or output ending with a JSON line)."""
    text = Path(path).read_text().strip()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return json.loads(text.splitlines()[-1])


def _old_faults(old: str) -> str:
    """The fault matrix table of an existing document (``--keep-faults``)."""
    m = re.search(r"^(\| fault \|.*?)\n\n", old, re.S | re.M)
    if m is None:
        raise SystemExit("--keep-faults: the existing document has no fault matrix")
    return m.group(1)


def _load_note() -> str:
    """How busy the machine was while the report was written (the bench shares it)."""
    one, five, fifteen = os.getloadavg()
    return (
        f"load average {one:.1f} / {five:.1f} / {fifteen:.1f} (1/5/15 min) on "
        f"{os.cpu_count()} cores when the report was written"
    )


def build(
    quick: bool,
    soak_hours: float,
    *,
    figures_from: str = "",
    profile_from: str = "",
    soak_from: str = "",
    chaos_from: str = "",
    old_faults: str = "",
    notes: str = "",
) -> str:
    reused = [
        name
        for name, given in (
            ("figures", figures_from),
            ("profile", profile_from),
            ("soak", soak_from),
            ("chaos day", chaos_from),
            ("fault matrix", old_faults),
        )
        if given
    ]
    figures: dict[str, Any] = {}
    if figures_from:  # one or more JSON files, merged in order (a later part wins)
        for path in figures_from.split(","):
            figures.update(_load(path))
        figures["how"] = how(figures)  # today's wording, for parts measured before
    else:
        figures = collect("quick" if quick else "full")
    profile = _load(profile_from) if profile_from else profile_send_path(60.0 if quick else 200.0)
    faults = old_faults or _attempt(lambda: fault_table(run_all()))
    soak_run = _load(soak_from) if soak_from else None
    chaos_run = _load(chaos_from) if chaos_from else None
    soak = _attempt(lambda: soak_md(soak_run or run_soak(hours=soak_hours)))
    chaos = _attempt(lambda: soak_md(chaos_run or run_soak(hours=soak_hours, chaos=True)))
    soak_h = soak_run["hours"] if soak_run else soak_hours
    chaos_h = chaos_run["hours"] if chaos_run else soak_hours
    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    taken = (
        f" Parts measured one at a time beforehand and read from their JSON: {', '.join(reused)}."
        if reused
        else ""
    )
    return "\n".join(
        [
            "# Proving ground",
            "",
            f"Generated by `python -m bench.report{' --quick' if quick else ''}` on {when} "
            f"({platform.machine()}, {platform.python_implementation()} "
            f"{platform.python_version()}, loopback, local Live server). Do not edit by hand."
            f"{taken} Machine: {_load_note()}. Every voiced figure stands beside a baseline "
            "measured in the same round, so other work on the machine moves both.",
            "",
            "## Figures (`python -m bench --json`)",
            "",
            "CPU and memory are measured in separate child processes, so the local server's own "
            "work is never counted; ratios are taken pair by pair within each round.",
            "",
            figures_md(figures),
            "",
            "### Where the time goes",
            "",
            "Send path (`python -m bench.profile`): share of the samples in which a thread of "
            "the voiced send-path child held the GIL, by the part of the program running "
            f"({profile['profile_note']}):",
            "",
            *(
                [f"- {pct:g}% {part}" for part, pct in profile["profile"].items()]
                if profile["profile"]
                else ["- (no profile: " + profile["profile_note"] + ")"]
            ),
            "",
            "Idle (`python -m bench.idle`): wakeups per second by thread of `voiced run` at rest "
            '(the kernel names every Python thread "python"; py-spy names the ones Python '
            "knows): "
            + _threads(figures["idle_threads"])
            + "; the floor's: "
            + _threads(figures["idle_threads_floor"])
            + ". `threaded-ml` is PulseAudio's client "
            "thread of each stream (the mic's, and the speaker's while it runs: hw/speaker.py "
            "stops it 2 s after the last reply), the unnamed `python` ones are PortAudio's "
            "callback threads; `portaudio-host` is the stream watcher (a few checks per "
            "stall_timeout).",
            "",
            *(
                [
                    "Idle, where the Python work goes (py-spy --gil, 200 Hz: samples in which a "
                    "thread of `voiced run` at rest holds the GIL, by the innermost file of "
                    "ours or a "
                    "library's): "
                    + ", ".join(
                        f"{part} {pct:g}%"
                        for part, pct in figures["idle_profile"].items()
                        if pct >= 1
                    )
                    + ".",
                    "",
                ]
                if figures.get("idle_profile")
                else []
            ),
            *(
                ["### Goals, and the runs behind these figures", "", notes.strip(), ""]
                if notes.strip()
                else []
            ),
            "## Fault matrix (`python -m bench.faults --markdown`, asserted by tests/proving)",
            "",
            "Recoverable faults hit the middle of a push-to-talk turn; *frames lost* compares the "
            "server's per-turn sha256 with the captured audio; the LED column is what the real "
            "`hw.led.Led` shows on a mock pin at the end.",
            "",
            faults,
            "",
            f"## Soak (`python -m bench.soak --hours {soak_h:g}`)",
            "",
            "`voiced run`'s own App (state keeper, control socket, STATUS, the watchdog gate on a "
            "NOTIFY_SOCKET) with the production failure timeouts, the local server's short "
            "connection and session caps, a push-to-talk turn every 20–70 nominal seconds; "
            "*lost* compares the server's per-turn sha256 with the audio the mic posted.",
            "",
            soak,
            "",
            f"## Chaos day (`python -m bench.soak --hours {chaos_h:g} --chaos`)",
            "",
            "The same day; every 5–30 nominal minutes one of the local server's fault modes "
            "(bench.soak.CHAOS) hits whatever is happening then.",
            "",
            chaos,
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="quick benchmark mode")
    parser.add_argument("--soak-hours", type=float, default=24.0)
    parser.add_argument("--out", default=str(ROOT / "docs" / "proving.md"))
    parser.add_argument(
        "--readme",
        default=str(ROOT / "README.md"),
        help="README to update between the proving markers ('' for none)",
    )
    parser.add_argument(
        "--figures-from",
        default="",
        help="`python -m bench --json` output (several: comma-separated, merged in order)",
    )
    parser.add_argument("--profile-from", default="", help="`bench.profile --json` output")
    parser.add_argument("--soak-from", default="", help="`bench.soak --out` file")
    parser.add_argument("--chaos-from", default="", help="`bench.soak --chaos --out` file")
    parser.add_argument(
        "--notes",
        default="",
        help="a markdown file: what the figures mean for the goals, other runs",
    )
    parser.add_argument(
        "--keep-faults", action="store_true", help="keep the existing document's fault matrix"
    )
    args = parser.parse_args(argv)
    out = Path(args.out)
    old = out.read_text() if out.exists() else ""
    text = build(
        args.quick,
        args.soak_hours,
        figures_from=args.figures_from,
        profile_from=args.profile_from,
        soak_from=args.soak_from,
        chaos_from=args.chaos_from,
        old_faults=_old_faults(old) if args.keep_faults else "",
        notes=Path(args.notes).read_text() if args.notes else "",
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    text = keep_sections(old, text)
    out.write_text(text)
    print(f"wrote {out}")
    if args.readme:
        readme = Path(args.readme)
        readme.write_text(into_readme(readme.read_text(), text))
        print(f"updated {readme}")
    return 0


START, END = "<!-- proving:start -->", "<!-- proving:end -->"

KEPT_SECTION = re.compile(r"<!-- ([\w-]+):start -->.*?<!-- \1:end -->", re.S)
"""Sections of docs/proving.md that other checks write between their own markers (the
arm64 install under qemu, the real-systemd check): this report never produces them and
never drops them."""


def keep_sections(old: str, new: str) -> str:
    """*new* with every marked section of *old* (but the report's own) carried over,
    markers included: in place of the same section if *new* has one, else appended."""
    for m in KEPT_SECTION.finditer(old):
        if m.group(1) == "proving":
            continue
        start, end = f"<!-- {m.group(1)}:start -->", f"<!-- {m.group(1)}:end -->"
        if start in new and end in new.split(start, 1)[1]:
            head, rest = new.split(start, 1)
            new = head + m.group(0) + rest.split(end, 1)[1]
        else:
            new = new.rstrip("\n") + "\n\n" + m.group(0) + "\n"
    return new


def into_readme(readme: str, report: str) -> str:
    """*readme* with the text between the proving markers replaced by *report*, its
    headings one level down and its title dropped (the README has its own)."""
    if START not in readme or END not in readme:
        raise SystemExit(f"README has no {START} … {END} markers")
    lines = report.splitlines()
    if lines and lines[0].startswith("# "):
        lines = lines[1:]
    body = "\n".join("#" + line if line.startswith("#") else line for line in lines).strip()
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{body}\n{END}{tail}"


if __name__ == "__main__":
    raise SystemExit(main())
