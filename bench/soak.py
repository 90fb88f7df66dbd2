"""Soak: a day (or more) of device time in a few minutes, resources measured flat.

    python -m bench.soak [--hours 24] [--scale 500] [--json]

The local Live server runs here (its own thread) with short, real-shaped limits —
45 s connections with goAway 25 s before the end, 240 s sessions — so a nominal day
holds thousands of resumes and hundreds of rollovers; the daemon runs in a child
process (:mod:`bench.soakchild`: Supervisor, Session, Connection, the real Led and
Button on mock pins, the real reply queue on a paced clock) at the same time scale, talking a
push-to-talk turn every 20–70 nominal seconds, many of them across switches. The
child samples its resident memory, open file descriptors, asyncio tasks and threads
every nominal hour; the figures compare the first sample (after one nominal hour of
warm-up) with the last. Every turn must be answered exactly once with exactly the
captured audio (the server's per-turn sha256).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from typing import Any

from bench.common import run_child
from daemon.liveserver import LiveServerThread, ServerLimits
from daemon.liveserver.model import Voice

__all__ = ["run_soak", "LIMITS", "OneClipVoice"]


class OneClipVoice(Voice):
    """The server's voice, rendering one reply clip once and reusing it.

    Synthesising each reply takes the server 60–75 ms of CPU; at ×500 that is half a
    nominal minute of "model thinking", longer than the goAway window, which would
    measure the server's synthesiser, not the daemon. What the reply says does not
    matter here (what the server *heard* is checked by digest), so every reply is the
    same ~4 s clip, streamed as usual.
    """

    def __init__(self) -> None:
        super().__init__("synthetic")
        self._clip = super().speak("Turn 1: I heard 1.50 seconds of audio, digest 000000.")

    def speak(self, text: str, voice_name: str | None = None) -> bytes:
        return self._clip

LIMITS = dict(connection_cap=45.0, goaway_before=25.0, session_cap_audio=240.0,
              reply_chunk_ms=400)
"""Short, real-shaped caps; 400 ms reply chunks (fewer, larger frames) so a reply streams
in nominal seconds, not in CPU time, at ×500."""


def run_soak(hours: float = 24.0, scale: float = 500.0, seed: int = 1) -> dict[str, Any]:
    """Run the soak; return its figures (see the module docstring)."""
    limits = ServerLimits(time_scale=scale, **LIMITS)
    t0 = time.monotonic()
    with LiveServerThread(limits=limits, voice="synthetic") as server:
        server.voice = OneClipVoice()  # a plain attribute of LiveServer, read per reply
        child = run_child("soakchild", "--url", server.url, "--hours", str(hours),
                          "--scale", str(scale), "--seed", str(seed),
                          timeout=120 + 3 * hours * 3600 / scale)
        turns = server.user_turns
        replies: dict[str, int] = {}
        for t in turns:
            replies[t.audio_digest] = replies.get(t.audio_digest, 0) + t.replies
        connections = len(server.connections)
        sessions = len(server.sessions)
    captured: list[list[Any]] = child["turns"]  # [digest, frames]
    lost = sum(frames for digest, frames in captured if replies.get(digest, 0) < 1)
    twice = sum(1 for digest, _ in captured if replies.get(digest, 0) > 1)
    first, last = child["samples"][0], child["samples"][-1]
    return {
        "hours": hours, "scale": scale, "wall_s": round(time.monotonic() - t0, 1),
        "turns": len(captured), "frames_captured": sum(f for _, f in captured),
        "frames_lost": lost + child["stats"]["frames_dropped"], "answered_twice": twice,
        "resumes": child["stats"]["resumes"], "rollovers": child["stats"]["rollovers"],
        "retries": child["stats"]["retries"], "last_error": child["stats"]["last_error"],
        "connections": connections, "sessions": sessions,
        "rss_mb_start": first["rss_mb"], "rss_mb_end": last["rss_mb"],
        "rss_mb_max": max(s["rss_mb"] for s in child["samples"]),
        "rss_trimmed_mb_start": first["rss_trimmed_mb"], "rss_trimmed_mb_end": last["rss_trimmed_mb"],
        "py_heap_mb_start": first["py_heap_mb"], "py_heap_mb_end": last["py_heap_mb"],
        "fds_start": first["fds"], "fds_end": last["fds"],
        "tasks_start": first["tasks"], "tasks_end": last["tasks"],
        "threads_start": first["threads"], "threads_end": last["threads"],
        "samples": child["samples"],
        "digest_of_all_turns": hashlib.sha256("".join(d for d, _ in captured).encode()).hexdigest(),
    }


def describe(r: dict[str, Any]) -> str:
    return "\n".join([
        f"soak: {r['hours']:g} h of device time in {r['wall_s']} s wall (×{r['scale']:g})",
        f"  turns {r['turns']}, frames captured {r['frames_captured']}, lost {r['frames_lost']}, "
        f"answered twice {r['answered_twice']}",
        f"  resumes {r['resumes']}, rollovers {r['rollovers']}, retries {r['retries']}, "
        f"server connections {r['connections']}, sessions {r['sessions']}",
        f"  {'':14}{'start':>8}{'end':>8}",
        f"  {'rss MB':14}{r['rss_mb_start']:>8.1f}{r['rss_mb_end']:>8.1f}   (max {r['rss_mb_max']:.1f})",
        f"  {'rss trimmed':14}{r['rss_trimmed_mb_start']:>8.1f}{r['rss_trimmed_mb_end']:>8.1f}"
        "   (after malloc_trim: freed memory glibc kept)",
        f"  {'python heap':14}{r['py_heap_mb_start']:>8.2f}{r['py_heap_mb_end']:>8.2f}"
        "   (sys.getsizeof of every gc-tracked object)",
        f"  {'open fds':14}{r['fds_start']:>8}{r['fds_end']:>8}",
        f"  {'asyncio tasks':14}{r['tasks_start']:>8}{r['tasks_end']:>8}",
        f"  {'threads':14}{r['threads_start']:>8}{r['threads_end']:>8}",
        "  rss MB by nominal hour: " + ", ".join(
            f"{x['nominal_h']:g}h {x['rss_mb']:.1f}" for x in _every(r["samples"], 8)),
        f"  last error: {r['last_error']}",
    ])


def _every(samples: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """About ``n`` samples spread over the run, the first and last included."""
    step = max(1, len(samples) // n)
    picked = samples[::step]
    return picked if picked[-1] is samples[-1] else picked + [samples[-1]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=24.0, help="nominal device hours")
    parser.add_argument("--scale", type=float, default=500.0, help="nominal s per wall s")
    parser.add_argument("--json", action="store_true", help="end with one JSON line")
    args = parser.parse_args(argv)
    result = run_soak(args.hours, args.scale)
    print(describe(result))
    if args.json:
        print(json.dumps({k: v for k, v in result.items() if k != "samples"}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
