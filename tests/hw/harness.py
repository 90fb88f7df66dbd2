"""Signal helpers for hardware tests: tones, spectra, correlation, event collection."""

from __future__ import annotations

import threading
import time
from typing import Callable

import numpy as np

from daemon.events import Event


def tone(freq: float, rate: int, seconds: float, amplitude: float = 0.5) -> bytes:
    """A sine as s16le mono with 5 ms fades (no clicks)."""
    n = int(rate * seconds)
    t = np.arange(n) / rate
    x = np.sin(2 * np.pi * freq * t) * amplitude * 32767
    fade = min(n // 2, int(rate * 0.005))
    if fade:
        ramp = np.linspace(0.0, 1.0, fade)
        x[:fade] *= ramp
        x[-fade:] *= ramp[::-1]
    return x.astype("<i2").tobytes()


def samples(pcm: bytes) -> np.ndarray:
    """s16le bytes → float array in [-1, 1)."""
    return np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2").astype(np.float64) / 32768.0


def spectrum_db(x: np.ndarray, rate: int) -> tuple[np.ndarray, np.ndarray]:
    """(freqs, dB relative to the strongest bin) with a Blackman-Harris window."""
    n = len(x)
    k = np.arange(n)
    w = (
        0.35875
        - 0.48829 * np.cos(2 * np.pi * k / n)
        + 0.14128 * np.cos(4 * np.pi * k / n)
        - 0.01168 * np.cos(6 * np.pi * k / n)
    )
    mag = np.abs(np.fft.rfft(x * w))
    db = 20 * np.log10(np.maximum(mag, 1e-12) / max(mag.max(), 1e-12))
    return np.fft.rfftfreq(n, 1 / rate), db


def loud_span(x: np.ndarray, threshold: float = 0.02, win: int = 160) -> tuple[int, int]:
    """First and last sample index of the region whose short-time RMS exceeds threshold."""
    m = len(x) // win
    if m == 0:
        return 0, 0
    rms = np.sqrt((x[: m * win].reshape(m, win) ** 2).mean(axis=1))
    idx = np.nonzero(rms > threshold)[0]
    if len(idx) == 0:
        return 0, 0
    return int(idx[0] * win), int((idx[-1] + 1) * win)


def best_correlation(a: np.ndarray, b: np.ndarray) -> tuple[float, int]:
    """Peak normalised cross-correlation of b against a, and its lag (b later by lag)."""
    n = 1 << int(np.ceil(np.log2(len(a) + len(b))))
    fa, fb = np.fft.rfft(a, n), np.fft.rfft(b, n)
    cc = np.fft.irfft(np.conj(fa) * fb, n)
    lag = int(np.argmax(np.abs(cc)))
    if lag > n // 2:
        lag -= n
    if lag >= 0:
        seg_b, seg_a = b[lag : lag + len(a)], a[: len(b) - lag]
    else:
        seg_a, seg_b = a[-lag : -lag + len(b)], b[: len(a) + lag]
    m = min(len(seg_a), len(seg_b))
    seg_a, seg_b = seg_a[:m], seg_b[:m]
    denom = np.sqrt((seg_a**2).sum() * (seg_b**2).sum()) or 1.0
    return float((seg_a * seg_b).sum() / denom), lag


class Inbox:
    """A thread-safe ``post`` that records events, like the supervisor's inbox."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._cond = threading.Condition()

    def __call__(self, event: Event) -> None:
        with self._cond:
            self.events.append(event)
            self._cond.notify_all()

    def of(self, kind: type) -> list[Event]:
        with self._cond:
            return [e for e in self.events if isinstance(e, kind)]

    def wait_for(self, pred: Callable[[list[Event]], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not pred(self.events):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True
