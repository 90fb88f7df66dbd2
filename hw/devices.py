"""Find PortAudio devices by name, not index (PITFALLS.md "Device side": card numbers move).

Used by the mic and speaker adapters and by ``voiced devices`` (daemon/cli/devices.py).
A device spec is ``None``/``""`` (the default device), an index (``3`` or ``"3"``), or
a name substring matched case-insensitively (an exact name wins over a substring).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import ctypes.util
import logging
import os
from dataclasses import dataclass
from typing import Any, Iterator, Literal

from daemon.errors import DeviceError

__all__ = [
    "AudioDevice",
    "list_devices",
    "find_device",
    "pick_rate",
    "format_devices",
    "route_alsa_messages_to_log",
]

log = logging.getLogger(__name__)

Direction = Literal["input", "output"]


@dataclass(frozen=True)
class AudioDevice:
    """One PortAudio device as the host API reports it."""

    index: int
    name: str
    max_input_channels: int
    max_output_channels: int
    default_rate: int
    host_api: str

    def channels(self, direction: Direction) -> int:
        """Channels available in ``direction``."""
        return self.max_input_channels if direction == "input" else self.max_output_channels


def _device(pa: Any, info: dict[str, Any]) -> AudioDevice:
    try:
        api = str(pa.get_host_api_info_by_index(int(info["hostApi"]))["name"])
    except Exception:  # a host API that vanished mid-listing: name is cosmetic
        api = "?"
    return AudioDevice(
        index=int(info["index"]),
        name=str(info["name"]),
        max_input_channels=int(info["maxInputChannels"]),
        max_output_channels=int(info["maxOutputChannels"]),
        default_rate=int(round(float(info["defaultSampleRate"]))),
        host_api=api,
    )


_alsa_handler: Any = None  # keep the ctypes callback alive for the process lifetime


def route_alsa_messages_to_log() -> bool:
    """Send libasound's messages to our logger (DEBUG) instead of stderr. Idempotent.

    PortAudio's ALSA probing prints ~20 "ALSA lib ... Unknown PCM" lines at every
    ``PyAudio()``; a device being reopened with backoff would fill the journal.
    Returns False if libasound can't be loaded (then nothing changes).
    """
    global _alsa_handler
    if _alsa_handler is not None:
        return True
    try:
        lib = ctypes.CDLL(ctypes.util.find_library("asound") or "libasound.so.2")
    except OSError:
        return False
    # void handler(const char *file, int line, const char *function, int err, const char *fmt, ...)
    # We read only the fixed arguments (fine on x86-64 and AArch64 Linux).
    prototype = ctypes.CFUNCTYPE(
        None, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p
    )

    def handler(
        file: bytes | None, line: int, function: bytes | None, err: int, fmt: bytes | None
    ) -> None:
        log.debug(
            "alsa %s:%d %s: %s (err %d)",
            (file or b"?").decode(errors="replace"),
            line,
            (function or b"?").decode(errors="replace"),
            (fmt or b"").decode(errors="replace"),
            err,
        )

    _alsa_handler = prototype(handler)
    lib.snd_lib_error_set_handler(_alsa_handler)
    # Back to libasound's default before the interpreter goes away under the callback.
    atexit.register(lib.snd_lib_error_set_handler, None)
    return True


def list_devices(pa: Any) -> list[AudioDevice]:
    """Every device this PortAudio instance sees (the list is fixed at ``PyAudio()``)."""
    return [_device(pa, pa.get_device_info_by_index(i)) for i in range(pa.get_device_count())]


def find_device(
    pa: Any, spec: str | int | None, direction: Direction, fallback_to_default: bool = False
) -> AudioDevice:
    """The device ``spec`` names for ``direction``.

    Raises:
        DeviceError: nothing matches (the message lists what is available) and
            either ``fallback_to_default`` is false or there is no default device.
    """
    devices = [d for d in list_devices(pa) if d.channels(direction) > 0]
    if spec is None or (isinstance(spec, str) and not spec.strip()):
        return _default(pa, devices, direction)
    found = _match(devices, spec)
    if found is not None:
        return found
    names = ", ".join(f"{d.index}:{d.name!r}" for d in devices) or "none"
    if fallback_to_default:
        log.warning(
            "no %s device matches %r; using the default (available: %s)", direction, spec, names
        )
        return _default(pa, devices, direction)
    raise DeviceError(f"no {direction} device matches {spec!r} (available: {names})")


def _match(devices: list[AudioDevice], spec: str | int) -> AudioDevice | None:
    if isinstance(spec, int) or spec.strip().isdigit():
        index = int(spec)
        return next((d for d in devices if d.index == index), None)
    wanted = spec.strip().lower()
    exact = [d for d in devices if d.name.lower() == wanted]
    if exact:
        return exact[0]
    partial = [d for d in devices if wanted in d.name.lower()]
    if len(partial) > 1:
        log.info("%d devices match %r; using %r", len(partial), spec, partial[0].name)
    return partial[0] if partial else None


def _default(pa: Any, devices: list[AudioDevice], direction: Direction) -> AudioDevice:
    try:
        info = (
            pa.get_default_input_device_info()
            if direction == "input"
            else pa.get_default_output_device_info()
        )
        return _device(pa, info)
    except (IOError, OSError):
        pass  # PortAudio has no default; take the first usable device
    if devices:
        return devices[0]
    raise DeviceError(f"no {direction} audio device found (PortAudio lists none)")


def pick_rate(
    pa: Any, device: AudioDevice, wanted: int, channels: int, direction: Direction
) -> int:
    """``wanted`` if the device takes it, else its default rate, else 48k/44.1k."""
    import pyaudio  # only here: devices.py is imported by `voiced devices` too

    candidates = [wanted, device.default_rate, 48000, 44100, 32000, 24000, 16000]
    for rate in dict.fromkeys(candidates):  # keep order, drop repeats
        kwargs: dict[str, Any] = {"rate": rate}
        if direction == "input":
            kwargs.update(
                input_device=device.index, input_channels=channels, input_format=pyaudio.paInt16
            )
        else:
            kwargs.update(
                output_device=device.index, output_channels=channels, output_format=pyaudio.paInt16
            )
        try:
            if pa.is_format_supported(**kwargs):
                return rate
        except ValueError:
            continue  # PyAudio raises ValueError for "invalid sample rate"
    raise DeviceError(
        f"{device.name!r} takes none of the rates {candidates} "
        f"with {channels} channel(s) of 16-bit {direction}"
    )


def format_devices(devices: list[AudioDevice]) -> str:
    """A table for ``voiced devices``: index, in/out channels, rate, API, name."""
    lines = [f"{'idx':>3}  {'in':>3} {'out':>3}  {'rate':>6}  {'api':<6} name"]
    for d in devices:
        lines.append(
            f"{d.index:>3}  {d.max_input_channels:>3} {d.max_output_channels:>3}  "
            f"{d.default_rate:>6}  {d.host_api[:6]:<6} {d.name}"
        )
    return "\n".join(lines)


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Silence fd 2 (ALSA/JACK probing noise at ``PyAudio()``). Single-threaded use only."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
