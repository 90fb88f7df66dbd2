"""Rigs both the proving ground (``bench/``) and the tests use. Not installed.

==============  ===============================================================
module          what it is
==============  ===============================================================
``faultrig``    the real daemon on simulated hardware, for the fault matrix
``processrig``  ``voiced run`` as a child process, this process its manager
``proxy``       a loopback TCP proxy that timestamps and can stall
``devices``     bench-side device clocks (the real reply path, paced)
``pulse``       a private PulseAudio with a virtual mic and speaker (tests/hw fixtures,
                bench.idle)
==============  ===============================================================
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["MODEL", "ROOT"]

ROOT = Path(__file__).resolve().parent.parent
MODEL = "gemini-2.5-flash-native-audio-preview-12-2025"
"""A model the local server knows, on both the voiced and the SDK path."""
