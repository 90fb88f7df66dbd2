"""The idle floor (child of :mod:`bench.idle`): a bare PyAudio callback capturing the
mic voiced uses (``vmic`` at 48 kHz, 20 ms buffers) into a bounded deque, and nothing
else. Prints "capturing" once the stream runs, then sleeps until killed."""

from __future__ import annotations

import signal
import sys
from collections import deque


def main() -> int:
    import pyaudio

    pa = pyaudio.PyAudio()
    index = next(
        i
        for i in range(pa.get_device_count())
        if "vmic" in pa.get_device_info_by_index(i)["name"]
        and pa.get_device_info_by_index(i)["maxInputChannels"] > 0
    )
    ring: deque[bytes] = deque(maxlen=15)  # ~300 ms, the pre-roll

    def callback(data: bytes | None, frames: int, info: object, flags: int) -> tuple[None, int]:
        ring.append(data or b"")
        return None, pyaudio.paContinue

    stream = pa.open(
        format=pyaudio.paInt16,
        channels=1,
        rate=48000,
        input=True,
        input_device_index=index,
        frames_per_buffer=960,
        stream_callback=callback,
    )
    stream.start_stream()
    print("capturing", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        signal.pause()
    finally:
        stream.close()
        pa.terminate()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
