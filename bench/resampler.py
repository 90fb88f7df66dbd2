"""Benchmark the streaming resampler against soxr: alias rejection, passband ripple, × realtime.

    python bench/resampler.py            # table
    python bench/resampler.py --json     # machine-readable

Method (issue 4 targets, for 16 kHz output): alias rejection is the worst level,
relative to the input tone, of the aliased image of tones from 8.5 kHz up to the
input Nyquist; passband ripple is the largest gain error for tones 100 Hz–7 kHz;
× realtime is seconds of audio per second of one core, fed in 20 ms frames the
way the mic delivers them. Upsampling pairs (24k→48k/44.1k) report the image
rejection above 12.75 kHz and ripple to 10.5 kHz instead (same edges scaled to
the 12 kHz Nyquist).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # "on one core"
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from hw.resample import PASS_EDGE, STOP_EDGE, Resampler  # noqa: E402

PAIRS = [(48000, 16000), (44100, 16000), (24000, 48000), (24000, 44100)]

Stream = Callable[[bytes], bytes]


def ours(rate_in: int, rate_out: int) -> tuple[Stream, Callable[[], bytes]]:
    rs = Resampler(rate_in, rate_out)
    return rs.process, rs.flush


def soxr_stream(rate_in: int, rate_out: int) -> tuple[Stream, Callable[[], bytes]]:
    import soxr

    rs = soxr.ResampleStream(rate_in, rate_out, 1, dtype="int16", quality="HQ")

    def process(pcm: bytes) -> bytes:
        return rs.resample_chunk(np.frombuffer(pcm, "<i2")).tobytes()

    def flush() -> bytes:
        return rs.resample_chunk(np.zeros(0, "<i2"), last=True).tobytes()

    return process, flush


def run(
    make: Callable[[int, int], tuple[Stream, Callable[[], bytes]]],
    rate_in: int,
    rate_out: int,
    pcm: bytes,
) -> np.ndarray:
    process, flush = make(rate_in, rate_out)
    frame = rate_in // 50 * 2
    out = b"".join(process(pcm[i : i + frame]) for i in range(0, len(pcm), frame)) + flush()
    return np.frombuffer(out, "<i2").astype(np.float64) / 32768


def tone(freq: float, rate: int, seconds: float, amp: float) -> bytes:
    t = np.arange(int(rate * seconds)) / rate
    return (np.sin(2 * np.pi * freq * t) * amp * 32767).astype("<i2").tobytes()


def level_db(x: np.ndarray, freq: float, rate: int) -> float:
    w = np.hanning(len(x))
    t = np.arange(len(x)) / rate
    amp = 2 * abs(np.sum(x * w * np.exp(-2j * np.pi * freq * t))) / w.sum()
    return float(20 * np.log10(max(amp, 1e-12)))


def alias_of(f: float, rate_out: int) -> float:
    f = f % rate_out
    return rate_out - f if f > rate_out / 2 else f


def measure(make: Any, rate_in: int, rate_out: int) -> dict[str, float]:
    amp = 0.9
    low_nyq = min(rate_in, rate_out) / 2
    skip = rate_out // 10
    # Alias (down) or image (up) rejection.
    worst = -999.0
    if rate_out < rate_in:
        freqs = np.arange(STOP_EDGE * low_nyq, rate_in / 2, 250.0)
        for f in freqs:
            x = run(make, rate_in, rate_out, tone(f, rate_in, 0.4, amp))[skip:-skip]
            worst = max(worst, level_db(x, alias_of(f, rate_out), rate_out) - 20 * np.log10(amp))
    else:
        # Images of tone f appear at rate_in - f (and rate_in + f ...), above the old Nyquist.
        for f in np.arange(500.0, PASS_EDGE * low_nyq * (2 - STOP_EDGE / PASS_EDGE) + 1, 250.0):
            x = run(make, rate_in, rate_out, tone(f, rate_in, 0.4, amp))[skip:-skip]
            for image in (rate_in - f, rate_in + f):
                if STOP_EDGE * low_nyq <= image < rate_out / 2:
                    worst = max(worst, level_db(x, image, rate_out) - 20 * np.log10(amp))
    # Passband ripple.
    ripple = 0.0
    for f in np.arange(100.0, PASS_EDGE * low_nyq + 1, 100.0):
        x = run(make, rate_in, rate_out, tone(f, rate_in, 0.4, 0.5))[skip:-skip]
        ripple = max(ripple, abs(level_db(x, f, rate_out) - 20 * np.log10(0.5)))
    # Speed in 20 ms frames.
    seconds = 20.0
    noise = np.random.default_rng(0).normal(0, 3000, int(rate_in * seconds)).astype("<i2").tobytes()
    process, _ = make(rate_in, rate_out)
    frame = rate_in // 50 * 2
    frames = [noise[i : i + frame] for i in range(0, len(noise), frame)]
    start = time.perf_counter()
    for f in frames:
        process(f)
    elapsed = time.perf_counter() - start
    return {
        "alias_rejection_db": round(-worst, 1),
        "passband_ripple_db": round(ripple, 4),
        "x_realtime": round(seconds / elapsed),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(argv)
    results = []
    for rate_in, rate_out in PAIRS:
        row: dict[str, Any] = {
            "from": rate_in,
            "to": rate_out,
            "ours": measure(ours, rate_in, rate_out),
        }
        try:
            row["soxr"] = measure(soxr_stream, rate_in, rate_out)
        except ImportError:
            row["soxr"] = None
        results.append(row)
    if args.json:
        print(
            json.dumps(
                {
                    "targets": {
                        "alias_rejection_db": 80,
                        "passband_ripple_db": 0.1,
                        "x_realtime": 1000,
                    },
                    "results": results,
                },
                indent=2,
            )
        )
        return 0
    print("resampler: ours (numpy polyphase Kaiser) vs soxr HQ; 20 ms frames, one core")
    print("targets: alias rejection >= 80 dB, passband ripple <= 0.1 dB, >= 1000x realtime\n")
    print(f"{'pair':>13}  {'':5} {'rejection dB':>12} {'ripple dB':>10} {'x realtime':>11}")
    for row in results:
        pair = f"{row['from'] / 1000:g}k->{row['to'] / 1000:g}k"
        for name in ("ours", "soxr"):
            m = row[name]
            if m is None:
                print(f"{pair:>13}  {name:5} (not installed)")
                continue
            print(
                f"{pair:>13}  {name:5} {m['alias_rejection_db']:>12.1f} "
                f"{m['passband_ripple_db']:>10.4f} {m['x_realtime']:>11d}"
            )
            pair = ""
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
