"""What pausing the idle speaker stream costs the next reply (issue 13).

    python -m bench.speakerstart [--count 10] [--json]

hw/speaker.py stops its output stream after PAUSE_AFTER_IDLE seconds with nothing to
play and starts it again (from the PortAudio host thread) when a reply or earcon is
queued. This measures, on the real speaker (PyAudio, ``vspk`` on a private PulseAudio,
VIRTUAL_AUDIO.md, 48 kHz), ``Speaker.play()`` of an 80 ms chunk → the first device
callback that takes reply audio, for a **paused** stream (the start included) and,
paired in the same round, for a **running** one (the stream still up from the previous
reply). The difference is the price of the pause; the jitter buffer is set to 0 so only
the device path is timed. Prints a table, and with ``--json`` one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from bench.common import percentile

__all__ = ["measure_speaker_start"]


def _wait(pred: Callable[[], Any], timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.0005)


def measure_speaker_start(count: int = 10) -> dict[str, Any]:
    """``count`` rounds of (paused → first reply callback, running → first callback)."""
    from testing.pulse import Pulse

    with tempfile.TemporaryDirectory(prefix="voiced-spkstart-") as tmpdir:
        root = Path(tmpdir) / "pulse"
        pulse = Pulse.at(root)
        saved = {k: os.environ.get(k) for k in pulse.overrides}
        os.environ.update(pulse.overrides)  # PortAudio (in this process) reads them at init
        pulse.start_server()
        try:
            return _rounds(count)
        finally:
            pulse.stop_server()
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def _rounds(count: int) -> dict[str, Any]:
    import hw.speaker
    from hw.speaker import Speaker, SpeakerSettings

    pause_after = 0.3  # shorter than the product's, so the rounds take seconds
    hw.speaker.PAUSE_AFTER_IDLE = pause_after
    chunk = bytes(24000 * 2 * 80 // 1000)  # 80 ms at 24 kHz, as the local server sends
    events: list[Any] = []
    spk = Speaker(
        SpeakerSettings(device="vspk", device_rate=48000, jitter_ms=0, stall_timeout=0.5),
        events.append,
    )
    paused: list[float] = []
    running: list[float] = []
    try:
        spk.start()
        for _ in range(count):
            _wait(lambda: spk.paused, 10, "the idle stream paused")
            for out in (paused, running):
                before = spk.reply_frames_played
                t0 = time.monotonic()
                spk.play(chunk)
                _wait(lambda: spk.reply_frames_played > before, 5, "the first reply callback")
                out.append((time.monotonic() - t0) * 1000)
                spk.end_of_reply()
                _wait(lambda: not spk.is_playing, 5, "the reply drained")
    finally:
        spk.close()
    return {
        "speaker_resume_p50_ms": round(statistics.median(paused), 2),
        "speaker_resume_p95_ms": round(percentile(paused, 95), 2),
        "speaker_running_p50_ms": round(statistics.median(running), 2),
        "speaker_running_p95_ms": round(percentile(running, 95), 2),
        "speaker_resume_extra_p50_ms": round(
            statistics.median(p - r for p, r in zip(paused, running)), 2
        ),
        "speaker_start_rounds": count,
        "speaker_pause_after_s": pause_after,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    r = measure_speaker_start(args.count)
    print(
        f"paused stream:  play → first reply callback p50 {r['speaker_resume_p50_ms']} ms, "
        f"p95 {r['speaker_resume_p95_ms']} ms"
    )
    print(
        f"running stream: play → first reply callback p50 {r['speaker_running_p50_ms']} ms, "
        f"p95 {r['speaker_running_p95_ms']} ms"
    )
    print(
        f"the pause costs the next reply p50 {r['speaker_resume_extra_p50_ms']} ms "
        f"({args.count} rounds, paired)"
    )
    if args.json:
        print(json.dumps(r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
