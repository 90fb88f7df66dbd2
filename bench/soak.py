"""Soak: a day (or more) of device time in minutes, resources measured flat.

    python -m bench.soak [--hours 24] [--scale 100] [--chaos] [--json]

The local Live server runs here (its own thread) with short, real-shaped limits —
45 s connections with goAway 25 s before the end, 240 s sessions — so a nominal day
holds thousands of resumes and hundreds of rollovers. The daemon runs in a child
process (:mod:`bench.soakchild`): ``voiced run``'s own App — state keeper, control
socket, STATUS loop, the watchdog gate on a real NOTIFY_SOCKET, SIGTERM at the end —
with the production failure timeouts, the mic posting 50 frames per nominal second
all day from its own thread (idle frames through the pre-roll path), the real Button
and Led on mock pins, the real reply queue on a scaled device clock; a "user" thread
talks a push-to-talk turn every 20–70 nominal seconds. The child samples resident
memory, open fds, asyncio tasks and threads every nominal hour; the figures compare the
first sample (after one nominal hour of warm-up) with the last. Every turn must be
answered exactly once with exactly the captured audio (the server's per-turn sha256),
or be reported as not answered.

``--chaos``: the same day, and at random moments (every 5–30 nominal minutes) one of
the local server's fault modes from :data:`CHAOS` hits whatever is happening then.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import threading
import time
from collections import Counter
from typing import Any, Callable

from bench.common import run_child
from daemon.liveserver import LiveServerThread, ServerLimits
from daemon.liveserver.faults import INTERNAL, Faults
from daemon.liveserver.model import Voice

__all__ = ["run_soak", "LIMITS", "OneClipVoice", "CHAOS"]


class OneClipVoice(Voice):
    """The server's voice, rendering one reply clip once and reusing it.

    Synthesising each reply takes the server 60–75 ms of CPU; at ×100 that is several
    nominal seconds of "model thinking" (at ×500 longer than the goAway window), which would
    measure the server's synthesiser, not the daemon. What the reply says does not
    matter here (what the server *heard* is checked by digest), so every reply is the
    same ~4 s clip, streamed as usual.
    """

    def __init__(self) -> None:
        super().__init__("synthetic")
        self._clip = super().speak("Turn 1: I heard 1.50 seconds of audio, digest 000000.")

    def speak(self, text: str, voice_name: str | None = None) -> bytes:
        return self._clip


LIMITS = dict(connection_cap=45.0, goaway_before=25.0, session_cap_audio=240.0, reply_chunk_ms=400)
"""Short, real-shaped caps; 400 ms reply chunks (fewer, larger frames) so a reply streams
in nominal seconds, not in CPU time, at ×500."""


CHAOS: list[tuple[str, Callable[[Faults], Any]]] = [
    ("close 1011 Internal error", lambda f: f.close_now(1011, INTERNAL)),
    ("unexpected close 1000", lambda f: f.close_now(1000, "")),
    ("TCP dropped, no close frame (1006)", lambda f: f.close_now(1006, "")),
    ("goAway now (timeLeft 30 s)", lambda f: f.go_away_now(30.0)),
    ("goAway, then silence", lambda f: f.silent_after_goaway(now=True, time_left=30.0)),
    ("the TCP path stalls", lambda f: f.stall()),
    ("a frame that is not JSON", lambda f: f.send_malformed()),
    ("an unknown top-level message", lambda f: f.send_unknown_field()),
    ("every resumption handle expires", lambda f: f.expire_all_handles()),
    (
        "the next resume is refused, then a close",
        lambda f: (f.refuse_next_resume(), f.close_now(1011, INTERNAL)),
    ),
    (
        "the next setupComplete comes 5 s late, then a close",
        lambda f: (f.delay_setup_complete(5.0), f.close_now(1011, INTERNAL)),
    ),
]
"""The local server's fault modes the chaos day injects (data: name, how to hit the
server's :class:`~daemon.liveserver.faults.Faults`). Field behaviours join here as the
local server learns them."""


def _chaos(
    runner: LiveServerThread,
    server: Any,
    scale: float,
    seed: int,
    stop: threading.Event,
    hits: list[str],
) -> None:
    rng = random.Random(seed + 1000)
    while not stop.wait(rng.uniform(300, 1800) / scale):
        name, hit = CHAOS[rng.randrange(len(CHAOS))]
        try:
            runner.call(hit, server.faults)
            hits.append(name)
        except Exception as exc:  # the server's loop gone: the day is over
            hits.append(f"{name} (failed: {exc})")


SCALE = 100.0
"""Nominal seconds per wall second. The daemon keeps its production timeouts (15 s for
setupComplete, …), which are wall-clock things at heart: at ×100 15 s is 150 ms of wall
time, what a busy two-core machine can still promise; at ×500 (30 ms) setups time out on
a loaded machine and the day measures the machine, not the daemon."""


def run_soak(
    hours: float = 24.0, scale: float = SCALE, seed: int = 1, chaos: bool = False
) -> dict[str, Any]:
    """Run the soak; return its figures (see the module docstring)."""
    limits = ServerLimits(time_scale=scale, **LIMITS)
    t0 = time.monotonic()
    runner = LiveServerThread(limits=limits, voice="synthetic")
    server = runner.start()
    stop, hits = threading.Event(), []
    try:
        server.voice = OneClipVoice()  # a plain attribute of LiveServer, read per reply
        injector = threading.Thread(
            target=_chaos, args=(runner, server, scale, seed, stop, hits), name="chaos", daemon=True
        )
        if chaos:
            injector.start()
        child = run_child(
            "soakchild",
            "--url",
            server.url,
            "--hours",
            str(hours),
            "--scale",
            str(scale),
            "--seed",
            str(seed),
            timeout=120 + 3 * hours * 3600 / scale,
        )
        stop.set()
        if chaos:
            injector.join(10)

        async def tally() -> tuple[dict[str, int], dict[str, list[int]], int, int]:
            replies: dict[str, int] = {}
            seen: dict[str, list[int]] = {}  # digest: [received, interrupted, dropped, rolled back]
            for t in server.user_turns:
                replies[t.audio_digest] = replies.get(t.audio_digest, 0) + t.replies
                row = seen.setdefault(t.audio_digest, [0, 0, 0, 0])
                row[0] += 1
                row[1] += t.interrupted
                row[2] += t.dropped
                row[3] += int(t.rolled_back)
            return replies, seen, len(server.connections), len(server.sessions)

        replies, seen, connections, sessions = runner.run(tally())
    finally:
        stop.set()
        runner.stop()
    captured: list[list[Any]] = child["turns"]  # [digest, frames]
    stats = child["stats"]
    # Each turn ends one way: answered once with exactly its audio; answered twice (a
    # defect); never received intact (its exact audio never reached the server); or
    # received and never answered (rolled back by a resume, dropped…).
    lost = [(d, f) for d, f in captured if d not in seen]
    unanswered = [(d, f) for d, f in captured if d in seen and replies.get(d, 0) < 1]
    twice = sum(1 for digest, _ in captured if replies.get(digest, 0) > 1)
    # The designed ends the core counts and reports, each once per turn (SessionStats):
    # a question dropped (unanswered on two connections, refused twice), a turn ended at
    # max_turn_seconds (the server got its first part, not the press the tap digested),
    # a turn asked without part of its audio (buffer full, a clipped turn sent again).
    # Every turn not answered once intact must be one of them; more such turns than
    # designed ends are SILENT losses: nobody was told.
    # (A turn may meet two — capped, then dropped — so the core counts turns once.)
    designed = stats["turns_ended_by_design"]
    not_once = len(lost) + len(unanswered)
    silent = max(0, not_once - designed)
    # Where the turns not answered once went (server row: received, interrupted,
    # dropped, rolled back; None: never received intact).
    unanswered_turns = [
        {"turn": i, "frames": frames, "server": seen.get(digest)}
        for i, (digest, frames) in enumerate(captured, 1)
        if replies.get(digest, 0) != 1
    ]
    # Compare settled moments (connected, idle): a sample taken while stuck reconnecting
    # holds a socket or task on its way in or out.
    settled = [x for x in child["samples"] if x.get("settled", True)] or child["samples"]
    first, last = settled[0], settled[-1]
    return {
        "hours": hours,
        "scale": scale,
        "wall_s": round(time.monotonic() - t0, 1),
        "chaos": chaos,
        "faults_injected": hits,
        "turns": len(captured),
        "frames_captured": sum(f for _, f in captured),
        # Frames of turns the server never received intact (reported or not: the designed
        # ends below say how many turns the core reported), and the core's own counts.
        "frames_not_received_intact": sum(f for _, f in lost),
        "frames_in_unanswered_turns": sum(f for _, f in unanswered),
        "core_frames": {
            k: stats[k]
            for k in ("frames_captured", "frames_sent", "frames_buffered", "frames_dropped")
        },
        "answered_twice": twice,
        "turns_not_received_intact": len(lost),
        "turns_unanswered": len(unanswered),
        "user_saw_unanswered": len(child["unanswered"]),
        "designed_ends": {
            "asks_dropped": stats["asks_dropped"],
            "turns_capped": stats["turns_capped"],
            "turns_incomplete": stats["turns_incomplete"],
            "turns_ended_by_design": designed,
        },
        "drops_by_cause": child["drops_by_cause"],
        "turns_silently_lost": silent,
        # The names bench/report.py reads (the same figures).
        "frames_lost": sum(f for _, f in lost),
        "turns_reported_unanswered": designed,
        "turns_unanswered_unreported": silent,
        "warnings": child["warnings"],
        "not_answered_once": unanswered_turns,
        "frames_posted": child["frames_posted"],
        "frames_tapped": child["frames_seen"],
        "watchdog_pings": child["watchdog_pings"],
        "watchdog_longest_gap_s": child["watchdog_longest_gap_s"],
        "status_updates": child["status_updates"],
        "state_saves": child["state_saves"],
        "exit_code": child["exit_code"],
        "longest_mic_burst": child["longest_mic_burst"],
        "resumes": child["stats"]["resumes"],
        "rollovers": child["stats"]["rollovers"],
        "retries": child["stats"]["retries"],
        "last_error": child["stats"]["last_error"],
        "connections": connections,
        "sessions": sessions,
        "rss_mb_start": first["rss_mb"],
        "rss_mb_end": last["rss_mb"],
        "rss_mb_max": max(s["rss_mb"] for s in child["samples"]),
        "rss_trimmed_mb_start": first["rss_trimmed_mb"],
        "rss_trimmed_mb_end": last["rss_trimmed_mb"],
        "py_heap_mb_start": first["py_heap_mb"],
        "py_heap_mb_end": last["py_heap_mb"],
        "fds_start": first["fds"],
        "fds_end": last["fds"],
        "tasks_start": first["tasks"],
        "tasks_end": last["tasks"],
        "threads_start": first["threads"],
        "threads_end": last["threads"],
        # What differs between the two samples compared (fd targets, task names).
        "fds_added": _added(first["fd_targets"], last["fd_targets"]),
        "fds_gone": _added(last["fd_targets"], first["fd_targets"]),
        "tasks_added": _added(first["task_names"], last["task_names"]),
        "tasks_gone": _added(last["task_names"], first["task_names"]),
        "samples_not_quiet": sum(1 for x in child["samples"] if not x["quiet"]),
        "samples": child["samples"],
        "digest_of_all_turns": hashlib.sha256("".join(d for d, _ in captured).encode()).hexdigest(),
    }


def _added(before: list[str], after: list[str]) -> list[str]:
    """What ``after`` holds that ``before`` does not (with multiplicity)."""
    return sorted((Counter(after) - Counter(before)).elements())


def describe(r: dict[str, Any]) -> str:
    return "\n".join(
        [
            f"soak{' (chaos)' if r['chaos'] else ''}: {r['hours']:g} h nominal / "
            f"{r['wall_s'] / 60:.1f} min wall (×{r['scale']:g})",
            f"  mic frames posted {r['frames_posted']} (all day, 50 per nominal second); "
            f"watchdog pings {r['watchdog_pings']} (longest gap {r['watchdog_longest_gap_s']} s "
            f"wall); STATUS updates {r['status_updates']}; state saves {r['state_saves']}; "
            f"exit code {r['exit_code']}",
            f"  core frames {r['core_frames']}",
            f"  turns not received intact {r['turns_not_received_intact']} "
            f"({r['frames_not_received_intact']} frames), received but not answered "
            f"{r['turns_unanswered']}; designed ends the core reported {r['designed_ends']} "
            f"(drops by cause {r['drops_by_cause']}); SILENTLY lost {r['turns_silently_lost']}",
            f"  faults injected {len(r['faults_injected'])}: "
            f"{', '.join(sorted(set(r['faults_injected'])))}",
            f"  turns {r['turns']}, frames captured {r['frames_captured']}, "
            f"answered twice {r['answered_twice']}",
            f"  resumes {r['resumes']}, rollovers {r['rollovers']}, retries {r['retries']}, "
            f"server connections {r['connections']}, sessions {r['sessions']}",
            f"  {'':14}{'start':>8}{'end':>8}",
            f"  {'rss MB':14}{r['rss_mb_start']:>8.1f}{r['rss_mb_end']:>8.1f}"
            f"   (max {r['rss_mb_max']:.1f})",
            f"  {'rss trimmed':14}{r['rss_trimmed_mb_start']:>8.1f}{r['rss_trimmed_mb_end']:>8.1f}"
            "   (after malloc_trim: freed memory glibc kept)",
            f"  {'python heap':14}{r['py_heap_mb_start']:>8.2f}{r['py_heap_mb_end']:>8.2f}"
            "   (sys.getsizeof of every gc-tracked object)",
            f"  {'open fds':14}{r['fds_start']:>8}{r['fds_end']:>8}",
            f"  {'asyncio tasks':14}{r['tasks_start']:>8}{r['tasks_end']:>8}",
            f"  {'threads':14}{r['threads_start']:>8}{r['threads_end']:>8}",
            f"  between those samples: fds +{r['fds_added']} -{r['fds_gone']}, tasks "
            f"+{r['tasks_added']} -{r['tasks_gone']}; samples never quiet "
            f"{r['samples_not_quiet']}",
            "  rss MB by nominal hour: "
            + ", ".join(f"{x['nominal_h']:g}h {x['rss_mb']:.1f}" for x in _every(r["samples"], 8)),
            f"  last error: {r['last_error']}",
        ]
    )


def _every(samples: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """About ``n`` samples spread over the run, the first and last included."""
    step = max(1, len(samples) // n)
    picked = samples[::step]
    return picked if picked[-1] is samples[-1] else picked + [samples[-1]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=24.0, help="nominal device hours")
    parser.add_argument("--scale", type=float, default=SCALE, help="nominal s per wall s")
    parser.add_argument(
        "--chaos",
        action="store_true",
        help="inject the local server's fault modes at random moments",
    )
    parser.add_argument("--json", action="store_true", help="end with one JSON line")
    parser.add_argument(
        "--out",
        default="",
        help="also write the whole result, samples included, to this JSON "
        "file (python -m bench.report --soak-from reads it)",
    )
    args = parser.parse_args(argv)
    result = run_soak(args.hours, args.scale, chaos=args.chaos)
    print(describe(result))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f)
    if args.json:
        print(json.dumps({k: v for k, v in result.items() if k != "samples"}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
