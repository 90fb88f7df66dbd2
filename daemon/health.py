"""
Pure health decisions for the systemd side: is the pipeline moving (the
watchdog gate), and the one-line STATUS text. No asyncio, no I/O: time comes
in as ``now`` (``time.monotonic()`` seconds, which is also asyncio's
``loop.time()`` on Linux). daemon/runtime/service.py runs these from the event loop
and re-exports them.

When a lost device makes systemd restart us (issue 14; README "When something goes
wrong"): a device the audio host (hw/pastream.py) is actively trying to reopen is
healthy — the LED shows error, STATUS and the journal name it, and a restart would only
churn while a USB mic is unplugged. Two exceptions withhold the pings, so systemd
restarts the daemon:

* the retry loop is wedged: no reopen attempt for ``retry_wedge_after`` seconds (or
  three of its longest backoff delays, if that is longer) — a PortAudio call that
  never returns, a dead thread; only a new process gets the device back then;
* the device has been missing for ``lost_restart_after`` seconds (10 min): a last
  resort for driver state that only a fresh process clears. Cheap — the
  conversation is saved and resumed — and at most once per that period.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Mapping, Protocol, Sequence

__all__ = [
    "LostDeviceFacts",
    "Heartbeat",
    "WatchdogGate",
    "WatchdogVerdict",
    "format_status",
    "STATUS_MAX",
    "GUARD_WALL_FLOORS",
    "floor_guards",
]


# --- the watchdog decision -----------------------------------------------------------


class LostDeviceFacts(Protocol):
    """A device being reopened (``hw.pastream.LostDevice``); times from ``time.monotonic``."""

    @property
    def kind(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def since(self) -> float: ...
    @property
    def last_attempt(self) -> float: ...
    @property
    def retry_max(self) -> float: ...


class Heartbeat(Protocol):
    """What the supervisor exposes to the watchdog (times from ``time.monotonic``,
    which is also what asyncio's ``loop.time()`` returns on Linux)."""

    @property
    def last_loop_tick(self) -> float | None: ...
    @property
    def last_mic_frame(self) -> float | None: ...
    @property
    def mic_expected(self) -> bool: ...


@dataclass(frozen=True)
class WatchdogVerdict:
    """Whether to ping now, and why (logged when the answer changes)."""

    ping: bool
    reason: str


@dataclass(frozen=True)
class WatchdogGate:
    """Pure decision: is the daemon alive enough to ping the watchdog?

    Args:
        started_at: when the pipeline started (grace for the first tick/frame):
            build the gate right when sending READY=1 — systemd arms the
            watchdog only once start-up is complete (systemd.service(5)).
        loop_limit: max age of the supervisor's last loop iteration, seconds.
        mic_limit: max age of the last mic frame while a mic is expected. A
            real mic delivers a frame every 20–40 ms all the time, so a few
            seconds of silence from the driver means it is stuck.

        retry_wedge_after: a lost device with no reopen attempt for this long (or
            three of its longest backoff delays, if longer) means the retry loop
            is wedged (module docstring).
        lost_restart_after: a device missing this long gets one restart (None:
            never).

    The loop and mic limits must be well below the unit's ``WatchdogSec=`` (30 s)
    so a wedge is noticed before systemd's own timeout runs out.
    """

    started_at: float
    loop_limit: float = 5.0
    mic_limit: float = 5.0
    retry_wedge_after: float = 20.0
    lost_restart_after: float | None = 600.0

    def decide(
        self,
        now: float,
        last_loop_tick: float | None,
        last_mic_frame: float | None,
        mic_expected: bool,
        lost_devices: Sequence[LostDeviceFacts] = (),
    ) -> WatchdogVerdict:
        """Ping only if the loop ticked recently, (when a mic is expected) mic
        frames are moving, and every lost device is being retried and has not been
        missing for too long. ``None`` times count from ``started_at``."""
        tick = self.started_at if last_loop_tick is None else last_loop_tick
        loop_age = now - tick
        if loop_age > self.loop_limit:
            return WatchdogVerdict(False, f"supervisor loop stalled for {loop_age:.1f}s")
        for device in lost_devices:
            quiet = now - device.last_attempt
            if quiet > max(self.retry_wedge_after, 3.0 * device.retry_max):
                return WatchdogVerdict(
                    False,
                    f"{device.kind} {device.name!r} lost and its "
                    f"reopen loop is stuck (no attempt for {quiet:.0f}s)",
                )
            missing = now - device.since
            if self.lost_restart_after is not None and missing > self.lost_restart_after:
                return WatchdogVerdict(
                    False,
                    f"{device.kind} {device.name!r} missing for "
                    f"{_age(missing)}: restarting for a fresh start",
                )
        if lost_devices:
            names = ", ".join(f"{d.kind} {d.name!r}" for d in lost_devices)
            return WatchdogVerdict(True, f"loop moving; reopening {names}")
        if not mic_expected:
            # Device lost: the adapter is reopening it; LED shows error. Healthy.
            return WatchdogVerdict(True, "loop moving; mic lost, adapter reopening it")
        frame = self.started_at if last_mic_frame is None else last_mic_frame
        mic_age = now - frame
        if mic_age > self.mic_limit:
            return WatchdogVerdict(False, f"no mic frame for {mic_age:.1f}s")
        return WatchdogVerdict(True, "loop and mic moving")


# --- time-scaled guards ----------------------------------------------------------------

GUARD_WALL_FLOORS: Mapping[str, float] = {
    "setup_timeout": 10.0,
    "reply_timeout": 10.0,
    "close_timeout": 2.0,
    "playback_slack": 1.0,
}
"""Wall seconds the session's guards (daemon/vocabulary.py SessionSettings, nominal
seconds) never go below. At a time scale S the core's clock runs S times faster than the
wall, so a 30 s stall guard is 1.5 s of wall time at S = 20 — less than a slow CPU (an
emulated arm64 userland, a Pi Zero 2 W) needs for one TLS-less handshake or one burst of
frames, and every error then looks like a server stall (issue 14: "1000 stalled", "no
setupComplete within 15 s"). ``playback_slack`` is in the list because the speaker
plays in wall time: a reply still playing on a slow machine must not be declared over."""


def floor_guards(settings: Any, time_scale: float) -> Any:
    """``settings`` (a SessionSettings) with each guard in :data:`GUARD_WALL_FLOORS`
    raised to at least its floor × ``time_scale`` nominal seconds. At scale 1 (production)
    the floors are below the defaults and nothing changes."""
    changes = {
        name: floor * time_scale
        for name, floor in GUARD_WALL_FLOORS.items()
        if getattr(settings, name) < floor * time_scale
    }
    return replace(settings, **changes) if changes else settings


# --- STATUS ---------------------------------------------------------------------------


def _age(seconds: float) -> str:
    """Coarse human duration: 45s, 12m03s, 2h05m (coarse keeps STATUS churn low)."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def _count(n: float) -> str:
    n = float(n)
    if n >= 1_000_000:
        return f"{n / 1_000_000:.1f}M"
    if n >= 1000:
        return f"{n / 1000:.1f}k"
    return f"{int(n)}"


def _number(stats: Mapping[str, object], key: str) -> float | None:
    value = stats.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


STATUS_MAX = 200
"""STATUS text is cut to this many characters (systemctl shows one line)."""


def format_status(stats: Mapping[str, object]) -> str:
    """One-line human summary for STATUS=, from a plain mapping.

    Keys (all optional; missing or malformed ones are left out):
    ``state`` (str or enum with ``.value``), ``session_age``, ``connection_age``,
    ``next_resume_in``, ``next_rollover_in``, ``next_retry_in`` (seconds),
    ``tokens_used``, ``token_window`` (counts), ``last_error`` (str),
    ``devices_missing`` (a list of ``{"kind", "name", "seconds"}``: audio devices
    being reopened, ``hw.pastream.PortAudioHost.lost_devices``).

    Example: ``idle; session 12m03s; connection 4m10s; rollover in 6m00s;
    tokens 12.3k/128.0k; last error: 1011 deadline expired``.
    """
    state = stats.get("state")
    state = getattr(state, "value", state)
    parts = [str(state) if state else "starting"]
    missing = stats.get("devices_missing")
    if isinstance(missing, (list, tuple)):
        for device in missing:
            if isinstance(device, Mapping):
                seconds = _number(device, "seconds")
                parts.append(
                    f"{device.get('kind', 'device')} {device.get('name', '?')!r} missing"
                    + (f" {_age(seconds)}" if seconds is not None else "")
                )
    for key, label in (("session_age", "session"), ("connection_age", "connection")):
        value = _number(stats, key)
        if value is not None:
            parts.append(f"{label} {_age(value)}")
    for key, label in (
        ("next_resume_in", "resume in"),
        ("next_rollover_in", "rollover in"),
        ("next_retry_in", "retry in"),
    ):
        value = _number(stats, key)
        if value is not None:
            parts.append(f"{label} {_age(value)}")
    used, window = _number(stats, "tokens_used"), _number(stats, "token_window")
    if used is not None:
        parts.append(f"tokens {_count(used)}" + (f"/{_count(window)}" if window else ""))
    error = stats.get("last_error")
    if error:
        parts.append(f"last error: {error}")
    text = " ".join("; ".join(parts).split())
    return text if len(text) <= STATUS_MAX else text[: STATUS_MAX - 1] + "…"
