"""
Events that flow *into* the supervisor's single inbox, and the device states that flow out.

Hardware adapters (``hw/``) post the device events below from their own threads
through a thread-safe ``post(event)`` callable that the supervisor gives them;
the supervisor hops them onto the event loop and feeds them to the pure
session core together with ``now``. Adapters never decide anything: an event
says what happened, not what to do about it.

All events are frozen dataclasses. Don't subclass them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = [
    "DeviceState",
    "LED_PRIORITY",
    "Event",
    "ButtonPressed",
    "ButtonReleased",
    "ButtonHeld",
    "MicFrame",
    "MicOverflow",
    "DeviceLost",
    "DeviceRestored",
    "PlaybackStarted",
    "PlaybackDrained",
    "PlaybackUnderrun",
]


class DeviceState(enum.Enum):
    """What the device shows on its LED and in STATUS."""

    OFFLINE = "offline"  # no connection and none being attempted (or no network)
    CONNECTING = "connecting"  # opening, resuming, rolling over, backing off
    IDLE = "idle"  # connected, ready: press to talk
    LISTENING = "listening"  # button held, audio streaming to the model
    THINKING = "thinking"  # turn ended, waiting for the reply
    SPEAKING = "speaking"  # reply playing
    GOING_AWAY = "going_away"  # goAway received, switch pending (overlaps the others)
    WORKING = "working"  # a tool call the model made is running on the device
    MUTED = "muted"  # the mic is muted (Home Assistant switch / control): press ignored
    QUOTA = "quota"  # quota or concurrent-session cap hit: long backoff (FIELD_REPORTS F12)
    COOLDOWN = "cooldown"  # the same failure repeated: circuit breaker open, long cool-down
    ERROR = "error"  # fatal error, or a device is missing


LED_PRIORITY: tuple[DeviceState, ...] = (
    DeviceState.ERROR,
    DeviceState.QUOTA,
    DeviceState.COOLDOWN,
    DeviceState.GOING_AWAY,
    DeviceState.LISTENING,
    DeviceState.SPEAKING,
    DeviceState.WORKING,
    DeviceState.THINKING,
    DeviceState.CONNECTING,
    DeviceState.MUTED,
    DeviceState.IDLE,
    DeviceState.OFFLINE,
)
"""When several states hold at once, the LED shows the first of these that holds."""


class Event:
    """Base class of inbox events."""

    __slots__ = ()


@dataclass(frozen=True)
class ButtonPressed(Event):
    """The push-to-talk button went down (after our debounce)."""


@dataclass(frozen=True)
class ButtonReleased(Event):
    """The button went up; ``held_for`` is how long it was down, in seconds."""

    held_for: float = 0.0


@dataclass(frozen=True)
class ButtonHeld(Event):
    """The button has been down for the configured long-hold time."""


@dataclass(frozen=True)
class MicFrame(Event):
    """One mic frame, already 16 kHz mono 16-bit little-endian PCM (20–40 ms)."""

    pcm: bytes


@dataclass(frozen=True)
class MicOverflow(Event):
    """PortAudio reported input overflow; ``count`` is the running total."""

    count: int


@dataclass(frozen=True)
class DeviceLost(Event):
    """An audio device vanished or failed; the adapter is reopening it with backoff."""

    kind: str  # "mic" or "speaker"
    name: str
    reason: str


@dataclass(frozen=True)
class DeviceRestored(Event):
    """A lost device is open again."""

    kind: str
    name: str


@dataclass(frozen=True)
class PlaybackStarted(Event):
    """The speaker started playing reply audio (after its jitter buffer filled)."""


@dataclass(frozen=True)
class PlaybackDrained(Event):
    """The speaker played everything it was given (tail padding included)."""


@dataclass(frozen=True)
class PlaybackUnderrun(Event):
    """The speaker ran dry mid-reply and played silence; ``count`` is the running total."""

    count: int
