"""
The fake "model" of the local Live server: what it hears and what it says.

* :class:`EnergyVad` — automatic activity detection over 16-bit PCM by window
  energy, measured in *audio* time (samples), so it behaves the same at any
  time scale.
* :func:`describe_audio`, :func:`reply_text`, :func:`input_text` — the words:
  every reply names the turn number, the duration and a digest of the audio
  it heard, so a test (or a person listening) can tell that exactly the right
  audio arrived, e.g. "Turn 3: I heard 1.40 seconds of audio, digest 3fa2c1."
* :class:`Voice` — turns words into 24 kHz s16le speech: espeak-ng when it is
  installed (cached by text, resampled 22050 → 24000 Hz with numpy), else a
  synthetic speech-shaped signal (voiced syllables with formants and pauses).

Nothing here imports asyncio; :meth:`Voice.speak` runs a subprocess, so the
server calls it in a worker thread.
"""

from __future__ import annotations

import hashlib
import logging
import math
import shutil
import subprocess
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

__all__ = [
    "EnergyVad",
    "VadEvent",
    "AudioSummary",
    "describe_audio",
    "reply_text",
    "input_text",
    "Voice",
    "synthetic_speech",
    "resample",
    "OUTPUT_RATE",
]

log = logging.getLogger(__name__)

OUTPUT_RATE = 24_000
"""Reply audio: 24 kHz 16-bit mono PCM (LIVE_PROTOCOL.md §3 notes)."""


# ---------------------------------------------------------------------------------------------
# Hearing


@dataclass(frozen=True)
class VadEvent:
    """``kind`` is "start" or "end"; ``offset`` is the byte offset in the fed stream."""

    kind: str
    offset: int


class EnergyVad:
    """A simple energy voice activity detector over 20 ms windows.

    Speech starts after ``min_speech_ms`` of windows louder than
    ``threshold_dbfs`` and ends after ``silence_ms`` of quieter windows. Offsets
    are byte offsets into everything fed so far.
    """

    WINDOW_MS = 20

    def __init__(
        self,
        rate: int = 16_000,
        threshold_dbfs: float = -40.0,
        silence_ms: int = 500,
        min_speech_ms: int = 60,
    ) -> None:
        self.rate = rate
        self.window_bytes = rate * self.WINDOW_MS // 1000 * 2
        self.threshold = 32768.0 * 10 ** (threshold_dbfs / 20)
        self.silence_windows = max(1, math.ceil(silence_ms / self.WINDOW_MS))
        self.speech_windows = max(1, math.ceil(min_speech_ms / self.WINDOW_MS))
        self.in_speech = False
        self._pending = b""
        self._fed = 0  # bytes consumed into whole windows
        self._loud_run = 0
        self._quiet_run = 0

    def feed(self, pcm: bytes) -> list[VadEvent]:
        """Feed audio; return the start/end transitions it caused, in order."""
        data = self._pending + pcm
        whole = len(data) - len(data) % self.window_bytes
        self._pending = data[whole:]
        events: list[VadEvent] = []
        if whole == 0:
            return events
        samples = np.frombuffer(data[:whole], dtype="<i2").astype(np.float64)
        windows = samples.reshape(-1, self.window_bytes // 2)
        rms = np.sqrt(np.mean(windows * windows, axis=1))
        for i, level in enumerate(rms):
            end_offset = self._fed + (i + 1) * self.window_bytes
            if level >= self.threshold:
                self._loud_run += 1
                self._quiet_run = 0
                if not self.in_speech and self._loud_run >= self.speech_windows:
                    self.in_speech = True
                    events.append(
                        VadEvent("start", end_offset - self._loud_run * self.window_bytes)
                    )
            else:
                self._quiet_run += 1
                self._loud_run = 0
                if self.in_speech and self._quiet_run >= self.silence_windows:
                    self.in_speech = False
                    events.append(VadEvent("end", end_offset))
        self._fed += whole
        return events

    def reset(self) -> None:
        """Forget everything (``audioStreamEnd`` closes the stream)."""
        self.in_speech = False
        self._loud_run = self._quiet_run = 0
        self._fed += len(self._pending)
        self._pending = b""


@dataclass(frozen=True)
class AudioSummary:
    """What the model "heard" of one turn's audio."""

    bytes: int
    seconds: float
    digest: str
    """sha256 hex of the exact bytes."""

    @property
    def short(self) -> str:
        """The first six hex digits, as spoken in replies."""
        return self.digest[:6]


def describe_audio(pcm: bytes, rate: int = 16_000) -> AudioSummary:
    """Length, duration and digest of 16-bit mono PCM."""
    return AudioSummary(len(pcm), len(pcm) / (2 * rate), hashlib.sha256(pcm).hexdigest())


def input_text(audio: AudioSummary | None, text: str = "") -> str:
    """The ``inputTranscription`` of a turn: what arrived, never a guess at words."""
    pieces = []
    if audio is not None and audio.bytes:
        pieces.append(f"[{audio.seconds:.2f} seconds of audio, digest {audio.short}]")
    if text:
        pieces.append(text)
    return " ".join(pieces) or "[nothing]"


def reply_text(turn: int, audio: AudioSummary | None, text: str = "") -> str:
    """What the model answers to user turn number *turn* (1-based within the session)."""
    if audio is not None and audio.bytes:
        said = f"Turn {turn}: I heard {audio.seconds:.2f} seconds of audio, digest {audio.short}."
        if text:
            said += f" You also wrote: {_quote(text)}."
        return said
    if text:
        return f"Turn {turn}: you wrote {_quote(text)}."
    return f"Turn {turn}: I heard nothing."


def _quote(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return f"\u201c{text if len(text) <= limit else text[: limit - 1] + '…'}\u201d"


# ---------------------------------------------------------------------------------------------
# Speaking


def resample(samples: np.ndarray, src_rate: int, dst_rate: int) -> np.ndarray:
    """Resample float samples by linear interpolation after a light low-pass.

    Good enough for a speech-like reply; the daemon's own resampler (hw/) is
    the one that must be exact.
    """
    if src_rate == dst_rate or samples.size == 0:
        return samples
    if dst_rate < src_rate:
        # Simple moving-average anti-alias filter before decimating.
        taps = max(1, round(src_rate / dst_rate))
        samples = np.convolve(samples, np.ones(taps) / taps, mode="same")
    n_out = int(round(samples.size * dst_rate / src_rate))
    t_out = np.arange(n_out) * (src_rate / dst_rate)
    return np.interp(t_out, np.arange(samples.size), samples)


def _to_pcm(samples: np.ndarray) -> bytes:
    return np.clip(np.round(samples), -32768, 32767).astype("<i2").tobytes()


def synthetic_speech(text: str, rate: int = OUTPUT_RATE) -> bytes:
    """A deterministic speech-shaped signal for *text*: one voiced syllable per
    ~3 characters (pitch ~120 Hz with a falling contour, three formants), short
    gaps between words, a longer pause at punctuation. About 14 characters/s.
    """
    syllable_s, gap_s, pause_s = 0.19, 0.06, 0.25
    segments: list[np.ndarray] = []
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")
    rng = np.random.default_rng(seed)
    formant_sets = (
        (730, 1090, 2440),
        (270, 2290, 3010),
        (530, 1840, 2480),
        (570, 840, 2410),
        (300, 870, 2240),
    )
    for word in text.split():
        n_syll = max(1, round(len(word.strip(".,:;!?")) / 3))
        for _ in range(n_syll):
            n = int(syllable_s * rate * rng.uniform(0.8, 1.2))
            t = np.arange(n) / rate
            f0 = 120 * (1.15 - 0.3 * t / syllable_s) * (1 + 0.02 * np.sin(2 * np.pi * 5 * t))
            phase = 2 * np.pi * np.cumsum(f0) / rate
            formants = formant_sets[rng.integers(len(formant_sets))]
            sig = np.zeros(n)
            for h in range(1, 30):
                freq = h * f0.mean()
                if freq > rate / 2 - 500:
                    break
                gain = sum(1.0 / (1 + ((freq - f) / 90.0) ** 2) for f in formants) / h**0.5
                sig += gain * np.sin(h * phase)
            env = np.sin(np.pi * np.arange(n) / n) ** 0.6
            sig = sig * env
            peak = np.max(np.abs(sig)) or 1.0
            segments.append(sig / peak * 9000)
            segments.append(np.zeros(int(gap_s * rate * 0.3)))
        segments.append(np.zeros(int((pause_s if word[-1] in ".,:;!?" else gap_s) * rate)))
    if not segments:
        return b""
    return _to_pcm(np.concatenate(segments))


def _wav_pcm(wav: bytes) -> tuple[bytes, int]:
    """PCM and rate of a WAV from ``espeak-ng --stdout``.

    espeak writes its header before it knows the length (the data size says
    0x7fffffff), so we walk the chunks and take the rest of the file as data.
    """
    if len(wav) < 12 or wav[:4] != b"RIFF" or wav[8:12] != b"WAVE":
        raise ValueError("espeak-ng output is not a WAV file")
    pos, rate, bits, channels = 12, 22_050, 16, 1
    while pos + 8 <= len(wav):
        chunk_id, size = wav[pos : pos + 4], int.from_bytes(wav[pos + 4 : pos + 8], "little")
        body = pos + 8
        if chunk_id == b"fmt ":
            channels = int.from_bytes(wav[body + 2 : body + 4], "little")
            rate = int.from_bytes(wav[body + 4 : body + 8], "little")
            bits = int.from_bytes(wav[body + 14 : body + 16], "little")
        elif chunk_id == b"data":
            if bits != 16 or channels != 1:
                raise ValueError(
                    f"espeak-ng output is {bits}-bit x{channels}, expected 16-bit mono"
                )
            data = wav[body:]
            return data[: len(data) - len(data) % 2], rate
        pos = body + size + (size & 1)
    raise ValueError("espeak-ng output has no data chunk")


class Voice:
    """Speech for reply text, cached by text.

    ``kind`` is "espeak" (espeak-ng must be installed), "synthetic", or
    "auto" (espeak-ng when installed, else synthetic).
    """

    def __init__(self, kind: str = "auto", cache_size: int = 256) -> None:
        if kind not in ("auto", "espeak", "synthetic"):
            raise ValueError(f"voice {kind!r}: must be auto, espeak or synthetic")
        self.espeak = shutil.which("espeak-ng")
        if kind == "espeak" and not self.espeak:
            raise ValueError("voice 'espeak': espeak-ng is not installed (apt install espeak-ng)")
        self.kind = "synthetic" if kind == "synthetic" or not self.espeak else "espeak"
        self._cache: OrderedDict[tuple[str, str | None], bytes] = OrderedDict()
        self._cache_size = cache_size

    def speak(self, text: str, voice_name: str | None = None) -> bytes:
        """24 kHz s16le mono PCM saying *text*. Blocking: call it in a thread."""
        key = (text, voice_name)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        pcm = self._espeak(text) if self.kind == "espeak" else None
        if pcm is None:
            pcm = synthetic_speech(text)
        self._cache[key] = pcm
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return pcm

    def _espeak(self, text: str) -> bytes | None:
        assert self.espeak is not None
        try:
            done = subprocess.run(
                [self.espeak, "--stdout", "-s", "170", "--", text],
                capture_output=True,
                timeout=30,
                check=True,
            )
            pcm, rate = _wav_pcm(done.stdout)
        except (OSError, subprocess.SubprocessError, ValueError) as exc:
            # A broken espeak must not stop replies: fall back to the synthetic voice.
            log.warning("! espeak-ng failed (%s); using the synthetic voice", exc)
            return None
        samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
        return _to_pcm(resample(samples, rate, OUTPUT_RATE))
