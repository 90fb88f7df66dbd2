"""
Limits of the local Live server and the time scale that shrinks them (pure).

Every duration here is *nominal*: the value the real Gemini Live API uses
(LIVE_PROTOCOL.md §5). A test runs the server with ``time_scale=600`` and a
ten-minute connection then lasts one wall second: ``wall = nominal / time_scale``.
The server's clock reads nominal seconds too, ``(loop.time() - t0) * time_scale``,
so inspection timestamps and handle lifetimes are in the same unit as the limits.

Audio is *not* scaled: a second of 16 kHz audio is 32 000 bytes and counts as
one second of speech whatever the time scale, because durations of audio are
properties of the samples, not of the clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["ServerLimits", "text_tokens", "audio_tokens"]


@dataclass(frozen=True)
class ServerLimits:
    """Caps, deadlines and token accounting of the local Live server.

    All durations are nominal seconds (see the module docstring).
    """

    time_scale: float = 1.0
    """Nominal seconds per wall second; 600 makes a 10-minute connection last 1 s."""

    connection_cap: float = 600.0
    """Connection lifetime: about 10 minutes (LIVE_PROTOCOL.md §5)."""

    goaway_before: float = 60.0
    """``goAway`` is sent this long before the connection cap; ``timeLeft`` says so."""

    session_cap_audio: float = 900.0
    """Session length without compression, audio only: 15 minutes (§5)."""

    session_cap_video: float = 120.0
    """Session length without compression once video was received: 2 minutes (§5)."""

    handle_ttl: float = 7200.0
    """Resumption handles stay valid 2 hours after the session's last connection ends (§5)."""

    context_window: int = 131_072
    """Context window in tokens: 128k for the native-audio models (§5)."""

    audio_tokens_per_second: float = 25.0
    """Audio token rate, in and out (§5: 25 tokens/s, the Vertex figure)."""

    chars_per_token: float = 4.0
    """Text token rate: about four characters per token."""

    reply_pace: float = 1.66
    """Reply audio seconds sent per nominal second: the real API streams faster than
    realtime, about 1.66× (PITFALLS.md "Replies arrive burstier than realtime")."""

    reply_chunk_ms: int = 80
    """Reply audio is sent in chunks of this many milliseconds (24 kHz s16le)."""

    vad_threshold_dbfs: float = -40.0
    """Energy VAD: a 20 ms window louder than this is speech."""

    vad_silence_ms: int = 500
    """Energy VAD: default silence that ends a turn (setup's ``silenceDurationMs`` overrides)."""

    vad_min_speech_ms: int = 60
    """Energy VAD: speech must last this long before a turn starts."""

    max_frame_bytes: int = 16 * 1024 * 1024
    """Largest client frame accepted (video frames are large)."""

    def __post_init__(self) -> None:
        # Bad limits are a caller's bug; say which field and why.
        if not self.time_scale > 0:
            raise ValueError(f"ServerLimits.time_scale = {self.time_scale!r}: must be > 0")
        for name in (
            "connection_cap",
            "session_cap_audio",
            "session_cap_video",
            "handle_ttl",
            "audio_tokens_per_second",
            "chars_per_token",
            "reply_pace",
        ):
            if not getattr(self, name) > 0:
                raise ValueError(f"ServerLimits.{name} = {getattr(self, name)!r}: must be > 0")
        if not 0 <= self.goaway_before < self.connection_cap:
            raise ValueError(
                f"ServerLimits.goaway_before = {self.goaway_before!r}: must be in "
                f"[0, connection_cap)"
            )
        if self.context_window <= 0:
            raise ValueError(f"ServerLimits.context_window = {self.context_window!r}: must be > 0")
        if self.reply_chunk_ms <= 0:
            raise ValueError(f"ServerLimits.reply_chunk_ms = {self.reply_chunk_ms!r}: must be > 0")

    def wall(self, nominal: float) -> float:
        """Wall seconds for *nominal* seconds."""
        return nominal / self.time_scale

    def nominal(self, wall: float) -> float:
        """Nominal seconds for *wall* seconds."""
        return wall * self.time_scale

    def reply_wall_seconds(self, audio_seconds: float) -> float:
        """Wall time to stream *audio_seconds* of reply audio at ``reply_pace``."""
        return audio_seconds / (self.reply_pace * self.time_scale)

    def session_cap(self, video_received: bool) -> float:
        """The session length cap (nominal) without context window compression."""
        return self.session_cap_video if video_received else self.session_cap_audio

    def default_trigger_tokens(self) -> int:
        """``triggerTokens`` when the setup leaves it out: 80% of the window (§2)."""
        return int(self.context_window * 0.8)


def text_tokens(text: str, limits: ServerLimits) -> int:
    """Tokens for *text*: about ``chars_per_token`` characters each, at least 1."""
    return max(1, math.ceil(len(text) / limits.chars_per_token)) if text else 0


def audio_tokens(seconds: float, limits: ServerLimits) -> int:
    """Tokens for *seconds* of audio at ``audio_tokens_per_second``."""
    return math.ceil(seconds * limits.audio_tokens_per_second - 1e-9) if seconds > 0 else 0
