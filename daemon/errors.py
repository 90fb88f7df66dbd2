"""
voiced's exceptions. One base class; each leaf says whose fault it is.

* :exc:`VoicedError` — base of everything voiced raises on purpose.

  * :exc:`ProtocolError` — the *peer* sent something we cannot use (a
    malformed or impossible Live API frame). Remote fault. (Sans-I/O)
  * :exc:`EncodeError` — *we* were asked to build a message the protocol
    does not allow (local misuse). (Sans-I/O)
  * :exc:`ConfigError` — the *user's* configuration is wrong; the message names
    the key, the value and what is allowed. Fatal: exit, don't retry.
  * :exc:`DeviceError` — a *device* (audio, GPIO) is missing or failed.

Leaf errors also subclass the matching builtin, so callers may catch either
(as gpiozero does).
"""

from __future__ import annotations

__all__ = [
    "VoicedError",
    "ProtocolError",
    "EncodeError",
    "ConfigError",
    "DeviceError",
]


class VoicedError(Exception):
    """Base class of all errors raised on purpose by voiced."""


class ProtocolError(VoicedError, ValueError):
    """The server sent a frame we cannot use; the message says what was wrong."""


class EncodeError(VoicedError, ValueError):
    """A client message was requested that the protocol does not allow."""


class ConfigError(VoicedError, ValueError):
    """The configuration is invalid; the message names the key and the value."""

    def __init__(self, key: str, value: object, allowed: str) -> None:
        self.key = key
        self.value = value
        self.allowed = allowed
        super().__init__(f"config {key} = {value!r}: {allowed}")


class DeviceError(VoicedError, OSError):
    """An audio or GPIO device is missing or failed."""
