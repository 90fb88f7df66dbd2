"""
:func:`local_voice` — the device's own voice (espeak-ng, as the local Live server speaks)
for announcements said while offline.
"""

from __future__ import annotations

import shutil
import threading
from typing import Callable

__all__ = ["local_voice"]


def local_voice() -> Callable[[str], tuple[bytes, int]] | None:
    """``speech(text) -> (pcm, rate)`` with espeak-ng — the voice the local Live server
    uses — for announcements said while offline; None when espeak-ng is not installed."""
    if shutil.which("espeak-ng") is None:
        return None
    from daemon.liveserver.model import OUTPUT_RATE, Voice

    voice = Voice("espeak")
    lock = threading.Lock()  # the voice's cache is not thread-safe

    def speak(text: str) -> tuple[bytes, int]:
        with lock:
            return voice.speak(text), OUTPUT_RATE

    return speak
