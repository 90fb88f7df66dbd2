"""Streaming polyphase resampler for 16-bit mono PCM (numpy only; pure, no I/O).

Why not ``x[::3]``: decimating without a low-pass folds everything above the new
Nyquist back into the band the model hears (PITFALLS.md "Device side": most mics
only do 44.1/48 kHz). This is the textbook rational resampler: upsample by ``L``,
low-pass with a Kaiser-windowed sinc, downsample by ``M`` — computed in polyphase
form so that only the needed products are formed.

Theory of operation
-------------------
Output sample ``n`` is ``y[n] = sum_t h[p + t*L] * x[i0 - t]`` with ``j = n*M``,
``i0 = j // L`` and phase ``p = j % L``. Within one *period* of ``Lp`` outputs
(a multiple of ``L``) the pattern of phases and input offsets repeats, advancing
``Mp`` inputs. We split a period into ``S`` sub-blocks of ``b`` outputs; each
sub-block is a small dense matrix ``W[s]`` (window × b) that maps a contiguous
window of input to its ``b`` outputs. Per call we gather the windows of every
complete period into ``X`` (periods × S × window) and do one batched matmul.
This keeps numpy calls per 20 ms frame to a handful — Python overhead, not
arithmetic, is what limits a streaming resampler at this frame size.

State between calls is the unconsumed tail of the input (at least ``K - 1``
samples of history), so frames join without edge clicks. Output comes in whole
periods (2 ms at 48k→16k, 10 ms at 44.1k→16k); :meth:`Resampler.flush` pushes
out what is left at the end of a stream.

Filter targets (issue 4): alias rejection ≥ 80 dB for tones above 8.5 kHz,
passband within ±0.1 dB up to 7 kHz, for 16 kHz output. We scale that band edge
to the lower of the two Nyquist rates: pass to 0.875·Nyq, stop from 1.0625·Nyq,
Kaiser designed for 85 dB (5 dB margin for float32 coefficients).
"""

from __future__ import annotations

from math import ceil, gcd

import numpy as np

__all__ = ["Resampler", "kaiser_lowpass", "PASS_EDGE", "STOP_EDGE", "ATTENUATION_DB"]

PASS_EDGE = 0.875
"""Passband edge as a fraction of the lower Nyquist rate (7 kHz for 16 kHz)."""
STOP_EDGE = 1.0625
"""Stopband edge as a fraction of the lower Nyquist rate (8.5 kHz for 16 kHz)."""
ATTENUATION_DB = 85.0
"""Kaiser design attenuation; also bounds the passband ripple (≈ 0.0005 dB)."""

_SUB_BLOCK = 32  # outputs per sub-block; ~32 measured fastest here (see module doc)


def kaiser_lowpass(
    up: int, rate_in: int, rate_out: int, attenuation_db: float = ATTENUATION_DB
) -> tuple[np.ndarray, int]:
    """Design the prototype low-pass at ``rate_in * up``.

    Returns ``(h, K)``: ``h`` has ``K * up`` taps with DC gain ``up`` (to make up
    for the zeros inserted by upsampling) and ``K`` is the taps per phase.
    """
    low_nyquist = min(rate_in, rate_out) / 2.0
    f_pass, f_stop = PASS_EDGE * low_nyquist, STOP_EDGE * low_nyquist
    rate_up = float(rate_in * up)
    delta_omega = 2.0 * np.pi * (f_stop - f_pass) / rate_up
    # Kaiser's formulas (Oppenheim & Schafer 7.62-7.63).
    taps = int(ceil((attenuation_db - 7.95) / (2.285 * delta_omega))) + 1
    per_phase = -(-taps // up)
    taps = per_phase * up
    beta = 0.1102 * (attenuation_db - 8.7)
    cutoff = (f_pass + f_stop) / 2.0 / rate_up  # cycles per upsampled sample
    n = np.arange(taps) - (taps - 1) / 2.0
    h = 2.0 * cutoff * np.sinc(2.0 * cutoff * n) * np.kaiser(taps, beta) * up
    return h, per_phase


def _sub_block_size(period: int) -> int:
    """A divisor of ``period`` near ``_SUB_BLOCK`` (so no padded columns)."""
    best = period
    for b in range(1, period + 1):
        if period % b == 0 and abs(b - _SUB_BLOCK) < abs(best - _SUB_BLOCK):
            best = b
    return best


class Resampler:
    """Stateful int16 mono resampler from ``rate_in`` to ``rate_out``.

    Feed any number of bytes to :meth:`process` (an odd trailing byte is kept
    for the next call); read the resampled bytes it returns. Equal rates pass
    through unchanged.
    """

    def __init__(self, rate_in: int, rate_out: int) -> None:
        if rate_in <= 0 or rate_out <= 0:
            raise ValueError(f"resampler rates must be positive, got {rate_in} -> {rate_out}")
        self.rate_in = rate_in
        self.rate_out = rate_out
        self._odd = b""
        g = gcd(rate_in, rate_out)
        self._up, self._down = rate_out // g, rate_in // g
        self.passthrough = rate_in == rate_out
        if self.passthrough:
            self.reset()
            return
        up, down = self._up, self._down
        h, taps = kaiser_lowpass(up, rate_in, rate_out)
        self.taps_per_phase = taps
        # A period of Lp outputs consumes Mp inputs and then repeats.
        repeat = max(1, -(-_SUB_BLOCK // up))
        period_out, period_in = up * repeat, down * repeat
        b = _sub_block_size(period_out)
        subs = period_out // b
        offsets = np.array([(s * b * down) // up for s in range(subs)], dtype=np.intp)
        window = max(((s * b + b - 1) * down) // up - offsets[s] for s in range(subs)) + taps
        weights = np.zeros((subs, window, b), dtype=np.float64)
        for n in range(period_out):
            s, col = divmod(n, b)
            i0, phase = divmod(n * down, up)
            # x[i0 - t] sits at buffer index i0 - t + taps - 1 (taps-1 samples of history).
            rows = i0 + taps - 1 - offsets[s] - np.arange(taps)
            weights[s, rows, col] += h[phase + np.arange(taps) * up]
        self._weights = weights.astype(np.float32)
        self._offsets = offsets
        self._window = int(window)
        self._period_in = period_in
        self._period_out = period_out
        self._span = int(offsets[-1]) + int(window)  # inputs needed for one period
        self._ramp = np.arange(self._window, dtype=np.intp)
        self.reset()

    @property
    def delay_out(self) -> float:
        """Group delay of the filter in output samples (linear phase)."""
        if self.passthrough:
            return 0.0
        return (self.taps_per_phase * self._up - 1) / 2.0 / self._down

    @property
    def period_in(self) -> int:
        """Input samples per period (the output is made in whole periods)."""
        return 1 if self.passthrough else self._period_in

    @property
    def period_out(self) -> int:
        """Output samples per period."""
        return 1 if self.passthrough else self._period_out

    @property
    def history(self) -> int:
        """Input samples before a period's first one that its outputs depend on."""
        return 0 if self.passthrough else self.taps_per_phase - 1

    def outputs_ready(self, fed: int) -> int:
        """Outputs a stream yields, since reset, once ``fed`` input samples were given."""
        if self.passthrough:
            return max(0, fed)
        periods = (fed + self.history - self._span) // self._period_in + 1
        return max(0, periods) * self._period_out

    def position(self) -> tuple[int, bytes]:
        """The whole state, as ``(outputs made since reset, input held as s16le)``.

        An FIR filter remembers nothing but its input: the held input starts at input
        sample ``made // period_out * period_in - history`` (negative: the zeros of a
        fresh stream), so :meth:`resume_at` with the same input continues bit for bit."""
        if self.passthrough:
            return self._fed, b""
        return self._made, np.rint(self._buf).astype("<i2").tobytes()

    def resume_at(self, made: int, held: bytes = b"") -> None:
        """Continue a stream as if it had made ``made`` outputs (a multiple of
        :attr:`period_out`) and held ``held``: the input from sample
        ``made // period_out * period_in - history`` on (see :meth:`position`). Input
        given to :meth:`process` then follows ``held``. Raises ValueError on a ``made``
        that is not a period boundary."""
        self._odd = b""
        if self.passthrough:
            self._fed = made
            return
        if made < 0 or made % self._period_out:
            raise ValueError(f"resume_at: {made} outputs is not a whole number of periods")
        self._made = made
        self._buf = np.frombuffer(held, dtype="<i2").astype(np.float32)
        self._fed = made // self._period_out * self._period_in - self.history + len(self._buf)

    def reset(self) -> None:
        """Forget all history (start a new stream)."""
        self._odd = b""
        self._fed = 0  # input samples given since reset
        self._made = 0  # output samples returned since reset
        if not self.passthrough:
            self._buf = np.zeros(self.taps_per_phase - 1, dtype=np.float32)

    def process(self, pcm: bytes) -> bytes:
        """Resample a chunk of s16le mono; returns what is ready (maybe b"")."""
        if self._odd:
            pcm = self._odd + pcm
            self._odd = b""
        if len(pcm) % 2:
            pcm, self._odd = pcm[:-1], pcm[-1:]
        if self.passthrough:
            self._fed += len(pcm) // 2
            return pcm
        new = np.frombuffer(pcm, dtype="<i2").astype(np.float32)
        self._fed += len(new)
        if len(new) <= self.rate_in:
            return self._run(np.concatenate((self._buf, new)))
        # Long inputs (a whole WAV in the sim) in 1 s pieces: the gathered window
        # matrix is ~3x the input, so this bounds memory without changing the result.
        return b"".join(
            self._run(np.concatenate((self._buf, new[i : i + self.rate_in])))
            for i in range(0, len(new), self.rate_in)
        )

    def flush(self) -> bytes:
        """End of stream: push out everything still held (zero-padded) and reset."""
        if self.passthrough:
            self._odd = b""
            return b""
        # Everything fed, plus the filter's delay so the last sample's response is out.
        total = int(ceil(self._fed * self._up / self._down + self.delay_out))
        wanted = max(0, total - self._made)
        pad = np.zeros(self._span + self._period_in + self.taps_per_phase, dtype=np.float32)
        out = self._run(np.concatenate((self._buf, pad)))
        self.reset()
        return out[: 2 * wanted]

    def _run(self, buf: np.ndarray) -> bytes:
        periods = (len(buf) - self._span) // self._period_in + 1
        if periods <= 0:
            self._buf = buf
            return b""
        starts = np.arange(periods, dtype=np.intp)[:, None] * self._period_in + self._offsets
        x = buf[starts[:, :, None] + self._ramp]  # (periods, subs, window)
        y = np.matmul(x[:, :, None, :], self._weights).ravel()  # (periods*subs*b,)
        self._buf = buf[periods * self._period_in :]
        self._made += len(y)
        return np.clip(np.rint(y), -32768, 32767).astype("<i2").tobytes()
