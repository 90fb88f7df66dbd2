"""``python -m bench [--json] [--quick]``: the figures of issues 7 and 13 in one table.

With ``--json`` the last line printed is one JSON object with every figure (and a
``how`` object saying how each was measured). ``--quick`` is the CI mode (well under
two minutes on two cores): fewer rounds, shorter streams, fewer goAways.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from typing import Any

from bench.common import ROOT, run_child
from bench.cpu import measure_cpu
from bench.footprint import voiced_run_footprint
from bench.idle import measure_idle
from bench.speakerstart import measure_speaker_start
from daemon.liveserver import LiveServerThread, ServerLimits

MODES = {
    #          cpu (audio s, rounds)  turns  goAways  replies  presses  idle (s, rounds)
    "quick": dict(cpu=(20.0, 3), turns=2, goaways=40, replies=5, presses=20, idle=(5.0, 2)),
    "full": dict(cpu=(60.0, 5), turns=6, goaways=200, replies=20, presses=100, idle=(20.0, 3)),
}

HOW = {
    "cpu_ratio_vs_sdk": "voiced ÷ google-genai CPU s per audio-minute, per round, median; "
    "child processes side by side, same frames, same local server",
    "cpu_s_per_audio_min": "process CPU (time.process_time) of a child streaming 20 ms "
    "16 kHz frames at {speed:g}× realtime in one push-to-talk activity "
    "to a loopback LiveServer, activityStart → first reply audio; "
    "voiced's frames are posted from a thread of their own (the "
    "hop hw.mic pays), the SDK and floor send from the loop",
    "send_cpu_ratio_vs_floor": "voiced ÷ bare websockets floor (json.dumps + base64 + "
    "ws.send per frame) CPU s per audio-minute, per round, "
    "median; same children as cpu_s_per_audio_min",
    "idle_cpu_s_per_hour": "utime+stime (/proc/PID/stat) of `voiced run --hw pi` at rest "
    "(state idle, connected to a local Live server in another "
    "process): real PortAudio mic on a private PulseAudio opened at "
    "48 kHz (resampled to 16 kHz while a turn is open; at rest only the "
    "pre-roll a press takes, then: hw/mic.py), speaker stream open (stopped 2 s after "
    "the last reply: hw/speaker.py), mock pins, control "
    "socket, STATUS and watchdog loops; {idle_rounds} × "
    "{idle_seconds:g} s, median",
    "idle_cpu_ratio_vs_floor": "voiced ÷ a bare PyAudio callback capturing the same device "
    "at 48 kHz into a deque, both running at the same time, "
    "per span, median",
    "idle_wakeups_per_s": "sum over the process's threads of voluntary context switches "
    "per second (/proc/PID/task/*/status): each is one block and "
    "one wakeup, whatever woke it",
    "reply_heard_latency_p50_ms": "button release (posted from another thread) → first "
    "reply sample pulled by a 20 ms device clock through "
    "the real hw.speaker.ReplyPath, per reply, {replies} "
    "replies, server at its default pace "
    "({reply_pace:g}× realtime)",
    "reply_added_latency_p95_ms": "ours: first reply audio decoded off the socket → its "
    "first sample at the device (core, speaker.play, jitter "
    "buffer, device clock), default pace",
    "playback_pipeline_p95_ms": "the code path alone: first reply audio decoded off the "
    "socket → speaker.play called (no buffer, no device clock)",
    "rss_mb": "VmRSS (/proc) of `voiced run --hw sim` (sim mic/speaker, real Button/Led on "
    "mock pins, control socket, state file) after {turns} push-to-talk turns",
    "rss_ratio_vs_sdk": "voiced rss_mb ÷ a google-genai app doing the same job on the same "
    "hw.sim (send_realtime_input while pressed, receive → speaker); "
    "core-only child (Supervisor on the same harness) beside it",
    "ready_s": "spawn of `voiced run --hw sim` → READY=1 on our NOTIFY_SOCKET (config, "
    "hardware open); idle_s: → first IDLE on the control socket (connected)",
    "resume_gap_p50_ms": "core handles goAway → first audio of the turn pressed into the "
    "switch sent on the new socket; {goaways} forced goAways, loopback",
    "frames_lost": "captured frames of those turns the server did not get exactly "
    "(per-turn sha256 digest) + frames the core dropped",
    "ptt_latency_p99_ms": "mock-pin edge (real hw.button.Button, other thread) → "
    "activityStart bytes read by a loopback TCP proxy; {presses} presses",
    "speaker_resume_p95_ms": "bench/speakerstart.py: Speaker.play() of an 80 ms chunk → the "
    "first device callback taking reply audio, the stream paused "
    "while idle (start included), real PyAudio on the private "
    "PulseAudio at 48 kHz; a running stream beside it, paired per "
    "round, {speaker_rounds} rounds",
    "resampler_alias_db": "bench/resampler.py, 48k→16k, worst alias of tones 8.5k–24k "
    "(soxr HQ beside)",
    "resampler_x_realtime": "bench/resampler.py, 48k→16k in 20 ms frames, one core",
}


def footprint(turns: int) -> dict[str, Any]:
    daemon = voiced_run_footprint(turns)
    out: dict[str, Any] = {}
    with LiveServerThread(limits=ServerLimits(time_scale=5.0), voice="synthetic") as server:
        for kind in ("voiced", "sdk"):
            got = run_child(
                "footprint", kind, "--url", server.url, "--turns", str(turns), timeout=120
            )
            out[kind] = {
                "rss_mb": got["rss_mb"][-1],
                "ready_s": got["ready_at"] - got["spawned_at"],
            }
    return {
        "rss_mb": round(daemon["rss_mb"][-1], 1),
        "rss_mb_core": round(out["voiced"]["rss_mb"], 1),
        "rss_mb_sdk": round(out["sdk"]["rss_mb"], 1),
        "rss_ratio_vs_sdk": round(daemon["rss_mb"][-1] / out["sdk"]["rss_mb"], 3),
        "rss_ratio_core_vs_sdk": round(out["voiced"]["rss_mb"] / out["sdk"]["rss_mb"], 3),
        "ready_s": round(daemon["ready_s"], 3),
        "idle_s": round(daemon["idle_s"], 3),
        "ready_s_sdk": round(out["sdk"]["ready_s"], 3),
    }


def resampler() -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "resampler.py"), "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    rows = json.loads(proc.stdout)["results"]
    row = next(r for r in rows if (r["from"], r["to"]) == (48000, 16000))
    soxr = row.get("soxr") or {}
    return {
        "resampler_alias_db": row["ours"]["alias_rejection_db"],
        "resampler_x_realtime": row["ours"]["x_realtime"],
        "soxr_alias_db": soxr.get("alias_rejection_db"),
        "soxr_x_realtime": soxr.get("x_realtime"),
    }


def collect(mode: str) -> dict[str, Any]:
    m = MODES[mode]
    figures: dict[str, Any] = {"mode": mode}
    seconds, rounds = m["cpu"]
    figures.update(measure_cpu(seconds, rounds))
    figures.update(footprint(m["turns"]))
    figures.update(run_child("latency", "resume", "--count", str(m["goaways"]), timeout=600))
    figures.update(run_child("latency", "playback", "--count", str(m["replies"]), timeout=600))
    figures.update(run_child("latency", "ptt", "--count", str(m["presses"]), timeout=600))
    figures.update(resampler())
    idle_seconds, idle_rounds = m["idle"]
    figures.update(measure_idle(idle_seconds, idle_rounds, profile_s=idle_seconds))
    figures.update(measure_speaker_start(m["replies"] * 2))
    figures["send_cpu_ratio_vs_floor"] = figures["cpu_ratio_vs_floor"]
    figures.pop("spawned_at", None)
    figures["how"] = how(figures)
    return figures


def how(figures: dict[str, Any]) -> dict[str, str]:
    """How each figure of ``figures`` (a :func:`collect` result) was measured."""
    m = MODES[figures["mode"]]
    idle_seconds, idle_rounds = m["idle"]
    # The counts a part reports win over its mode's (a part measured on its own).
    fill = dict(
        speed=figures["cpu_speed"],
        turns=m["turns"],
        goaways=figures.get("goaways", m["goaways"]),
        presses=figures.get("presses", m["presses"]),
        replies=figures.get("replies", m["replies"]),
        idle_rounds=figures.get("idle_rounds", idle_rounds),
        idle_seconds=figures.get("idle_seconds_per_round", idle_seconds),
        reply_pace=figures["reply_pace_default"],
        speaker_rounds=figures.get("speaker_start_rounds", m["replies"] * 2),
    )
    return {k: v.format(**fill) for k, v in HOW.items()}


def table(f: dict[str, Any]) -> str:
    cpu = f["cpu_s_per_audio_min"]
    rows = [
        (
            "cpu_ratio_vs_sdk",
            f"{f['cpu_ratio_vs_sdk']:.2f}",
            f"vs floor {f['cpu_ratio_vs_floor']:.2f}",
        ),
        (
            "cpu_s_per_audio_min",
            f"{cpu['voiced']:.3f}",
            f"sdk {cpu['sdk']:.3f}, floor {cpu['floor']:.3f}",
        ),
        ("rss_mb", f"{f['rss_mb']:.1f}", f"sdk {f['rss_mb_sdk']:.1f}, core {f['rss_mb_core']:.1f}"),
        (
            "rss_ratio_vs_sdk",
            f"{f['rss_ratio_vs_sdk']:.2f}",
            f"core only {f['rss_ratio_core_vs_sdk']:.2f}",
        ),
        ("ready_s", f"{f['ready_s']:.3f}", f"idle {f['idle_s']:.3f}; sdk {f['ready_s_sdk']:.3f}"),
        (
            "resume_gap_p50_ms",
            f"{f['resume_gap_p50_ms']:.1f}",
            f"p95 {f['resume_gap_p95_ms']:.1f}, max {f['resume_gap_max_ms']:.1f}",
        ),
        ("frames_lost", str(f["frames_lost"]), f"of {f['frames_captured']} captured"),
        ("send_cpu_ratio_vs_floor", f"{f['send_cpu_ratio_vs_floor']:.2f}", "goal ≤ 1.2"),
        (
            "idle_cpu_s_per_hour",
            f"{f['idle_cpu_s_per_hour']:.1f}",
            f"floor {f['idle_cpu_s_per_hour_floor']:.1f}",
        ),
        ("idle_cpu_ratio_vs_floor", f"{f['idle_cpu_ratio_vs_floor']:.2f}", "goal ≤ 1.3"),
        (
            "idle_wakeups_per_s",
            f"{f['idle_wakeups_per_s']:.1f}",
            f"floor {f['idle_wakeups_per_s_floor']:.1f}",
        ),
        (
            "reply_heard_latency_p50_ms",
            f"{f['reply_heard_latency_p50_ms']:.1f}",
            f"server {f['reply_server_latency_p50_ms']:.1f}; realtime "
            f"{f['realtime_heard_p50_ms']:.1f}",
        ),
        (
            "reply_added_latency_p95_ms",
            f"{f['reply_added_latency_p95_ms']:.1f}",
            f"p50 {f['reply_added_latency_p50_ms']:.1f}; realtime p95 "
            f"{f['realtime_added_p95_ms']:.1f}; goal ≤ 25",
        ),
        (
            "playback_pipeline_p95_ms",
            f"{f['playback_pipeline_p95_ms']:.2f}",
            f"realtime {f['realtime_to_play_p95_ms']:.2f}",
        ),
        (
            "ptt_latency_p99_ms",
            f"{f['ptt_latency_p99_ms']:.2f}",
            f"p50 {f['ptt_latency_p50_ms']:.2f}",
        ),
        ("resampler_alias_db", f"{f['resampler_alias_db']:.1f}", f"soxr {f['soxr_alias_db']}"),
        ("resampler_x_realtime", str(f["resampler_x_realtime"]), f"soxr {f['soxr_x_realtime']}"),
    ]
    how = f["how"]
    lines = [
        f"voiced proving ground ({f['mode']} mode)",
        "",
        f"{'figure':<24} {'voiced':>9}  {'beside':<34} how",
    ]
    for name, value, beside in rows:
        lines.append(f"{name:<24} {value:>9}  {beside:<34} {how.get(name, '')}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="end with one JSON line of figures")
    parser.add_argument("--quick", action="store_true", help="CI mode (well under 2 minutes)")
    args = parser.parse_args(argv)
    t0 = time.monotonic()
    figures = collect("quick" if args.quick else "full")
    figures["bench_wall_s"] = round(time.monotonic() - t0, 1)
    print(table(figures))
    print(f"\n({figures['bench_wall_s']} s)")
    if args.json:
        print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
