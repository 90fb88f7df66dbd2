"""
systemd integration: sd_notify, the watchdog, STATUS text, credentials, exit codes.

Theory of operation (issue 5, PITFALLS.md "Device side"):

* :class:`Notifier` wraps ``systemd.daemon.notify``. READY=1 goes out once the
  config is loaded and the hardware is open (also offline: the device can show
  that it is offline). A missing or broken ``NOTIFY_SOCKET`` never kills the
  daemon: the first failure is logged as a warning, later ones at DEBUG.
* The watchdog is pinged from the *event loop* (never from a thread, which
  proves nothing — Mark II) by :func:`watchdog_loop`, and only while a pure
  :class:`WatchdogGate` says the pipeline is moving. A wedged loop cannot run
  the coroutine, so pings stop by construction; a loop that runs while the
  supervisor or the mic is stuck is caught by the heartbeat ages.
* A lost mic (the adapter posted ``DeviceLost`` and is reopening it with
  backoff) is *healthy*: the LED shows error, the adapter retries cheaply, and
  a watchdog restart would only churn every ``WatchdogSec`` while the USB mic
  is unplugged — unless its retry loop is stuck, or it has been missing for 10
  minutes (daemon/health.py). A mic that is open but delivers no frames, with
  nobody saying it is lost, is a wedge: pings stop and systemd restarts us.
* The pure parts (the gate, the ``Heartbeat`` protocol, :func:`format_status`) live in
  daemon/health.py and are re-exported here.
* Exit codes: :data:`EXIT_CONFIG` (78, ``EX_CONFIG``) is listed in the unit's
  ``RestartPreventExitStatus=``; every other failure is restarted.

Nothing here reads ``os.environ`` behind the caller's back: functions that
need the environment take it as an argument (defaulting to ``os.environ`` at
call time), so the supervisor reads it once at start-up.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import signal
import time
from typing import Callable, Mapping, Sequence

from daemon.errors import ConfigError, DeviceError
from daemon.health import (
    STATUS_MAX,
    Heartbeat,
    LostDeviceFacts,
    WatchdogGate,
    WatchdogVerdict,
    format_status,
)

__all__ = [
    "EXIT_OK",
    "EXIT_FAILURE",
    "EXIT_USAGE",
    "EXIT_CONFIG",
    "EXIT_SOFTWARE",
    "exit_code_for",
    "Notifier",
    "watchdog_interval",
    "Heartbeat",
    "WatchdogGate",
    "WatchdogVerdict",
    "watchdog_loop",
    "format_status",
    "status_loop",
    "STATUS_MAX",
    "install_signal_handlers",
]

logger = logging.getLogger(__name__)

# --- exit codes (sysexits.h where one fits) -------------------------------------------

EXIT_OK = 0
"""Clean stop (SIGTERM handled, state persisted)."""
EXIT_FAILURE = 1
"""Unexpected failure: systemd restarts us (Restart=on-failure)."""
EXIT_USAGE = 2
"""Bad command line (argparse's own code)."""
EXIT_SOFTWARE = 70
"""EX_SOFTWARE: an internal error we caught at the top; restarted like EXIT_FAILURE."""
EXIT_CONFIG = 78
"""EX_CONFIG: fatal configuration error (no key, bad pins, unknown device with no
fallback). The unit's ``RestartPreventExitStatus=78`` stops the restart loop that
would otherwise end in "Start request repeated too quickly" (PITFALLS.md)."""


def exit_code_for(exc: BaseException, *, starting: bool = False) -> int:
    """The process exit code for an exception that reached the top of ``voiced run``.

    Args:
        starting: True if it happened before READY=1 (config load, hardware open).

    A :exc:`ConfigError` is always final (:data:`EXIT_CONFIG`). A
    :exc:`DeviceError` while *starting* is final too: hw adapters raise it from
    ``start()`` only when no device matches the configured name and there is no
    fallback (hw_interface.md) — issue 5 item 7's "unknown device with no
    fallback". Restarting every few seconds cannot fix a typo; the unit shows
    the message in ``systemctl status`` instead. Once running, a lost device is
    handled by the adapter's own reopen loop, so a DeviceError that still gets
    here is unexpected and worth a restart, like anything else.
    """
    if isinstance(exc, ConfigError):
        return EXIT_CONFIG
    if starting and isinstance(exc, DeviceError):
        return EXIT_CONFIG
    return EXIT_SOFTWARE


# --- sd_notify ------------------------------------------------------------------------


def _default_send(message: str) -> bool:
    # Imported lazily so that importing this module never needs libsystemd.
    from systemd import daemon  # type: ignore[attr-defined]  # C, no stubs

    return bool(daemon.notify(message))


class Notifier:
    """Sends sd_notify messages; never raises.

    Args:
        send: function that delivers one notify message; default
            ``systemd.daemon.notify`` (reads ``NOTIFY_SOCKET`` on every call).
        redact: applied to STATUS text so a secret can never reach
            ``systemctl status`` (pass ``Redactor.redact`` from daemon.runtime.logs).

    Each method returns True if the message was delivered to a service manager,
    False if there is none (no ``NOTIFY_SOCKET``) or delivery failed.
    """

    def __init__(
        self,
        send: Callable[[str], bool] | None = None,
        *,
        redact: Callable[[str], str] | None = None,
    ) -> None:
        self._send = send or _default_send
        self._redact = redact or (lambda text: text)
        self._failed_once = False
        self.last_status: str | None = None
        """The last STATUS text sent (after redaction), for ``voiced status``."""

    def notify(self, message: str) -> bool:
        """Send a raw notify message (``KEY=value`` lines); never raises."""
        try:
            return bool(self._send(message))
        except Exception as exc:  # noqa: BLE001 — a broken socket must never kill us
            # A NOTIFY_SOCKET naming a missing socket raises FileNotFoundError
            # (VIRTUAL_AUDIO.md "systemd-python and the unit"); a full socket
            # buffer EAGAIN; a bad name EINVAL. Say it once, loudly.
            if not self._failed_once:
                self._failed_once = True
                logger.warning(
                    "sd_notify failed (%s: %s); continuing without the service manager",
                    type(exc).__name__,
                    exc,
                )
            else:
                logger.debug("sd_notify failed again: %s", exc)
            return False

    def ready(self, status: str | None = None) -> bool:
        """READY=1: config loaded and hardware open (also when offline)."""
        return self.notify(self._with_status("READY=1", status))

    def status(self, text: str) -> bool:
        """STATUS=<one line>: shown by ``systemctl status voiced``."""
        return self.notify(self._with_status(None, text))

    def watchdog(self) -> bool:
        """WATCHDOG=1: only call when the pipeline is moving (see :func:`watchdog_loop`)."""
        return self.notify("WATCHDOG=1")

    def stopping(self, status: str | None = None) -> bool:
        """STOPPING=1: we got SIGTERM and are shutting down."""
        return self.notify(self._with_status("STOPPING=1", status))

    def reloading(self, monotonic_usec: int | None = None) -> bool:
        """RELOADING=1 with MONOTONIC_USEC (systemd >= 253 requires it for
        Type=notify-reload; older versions ignore the extra field). Send
        :meth:`ready` when the reload is done."""
        if monotonic_usec is None:
            monotonic_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify(f"RELOADING=1\nMONOTONIC_USEC={monotonic_usec}")

    def _with_status(self, head: str | None, status: str | None) -> str:
        lines = [head] if head else []
        if status is not None:
            # STATUS is one line: a newline would start a new (bogus) assignment.
            text = self._redact(" ".join(status.split()))
            self.last_status = text
            lines.append(f"STATUS={text}")
        return "\n".join(lines)


def watchdog_interval(
    environ: Mapping[str, str] | None = None, pid: int | None = None
) -> float | None:
    """Seconds between WATCHDOG=1 pings, or None if systemd set no watchdog for us.

    Half of ``WATCHDOG_USEC`` (sd_watchdog_enabled(3) recommends pinging at half
    the timeout). ``WATCHDOG_PID``, when set, must be our pid.
    """
    env = os.environ if environ is None else environ
    raw = env.get("WATCHDOG_USEC")
    if not raw:
        return None
    owner = env.get("WATCHDOG_PID")
    if owner:
        try:
            if int(owner) != (os.getpid() if pid is None else pid):
                return None
        except ValueError:
            logger.warning("ignoring malformed WATCHDOG_PID=%r", owner)
            return None
    try:
        usec = int(raw)
    except ValueError:
        logger.warning("ignoring malformed WATCHDOG_USEC=%r", raw)
        return None
    if usec <= 0:
        return None
    return usec / 2 / 1_000_000


async def watchdog_loop(
    notifier: Notifier,
    gate: WatchdogGate,
    heartbeat: Heartbeat,
    *,
    interval: float | None = None,
    clock: Callable[[], float] = time.monotonic,
    lost_devices: Callable[[], Sequence[LostDeviceFacts]] = tuple,
) -> None:
    """Ping WATCHDOG=1 from the event loop every ``interval`` while ``gate`` agrees.

    ``lost_devices`` lists the audio devices being reopened
    (``hw.pastream.PortAudioHost.lost_devices``): see daemon/health.py for when a
    lost device stops the pings.

    Runs until cancelled. ``interval`` defaults to :func:`watchdog_interval`;
    without a systemd watchdog it returns at once. The supervisor creates the
    task; a wedged loop cannot run this coroutine, so the pings stop.

    While the gate says no, it looks again every ``interval / 5``: a transient
    stall (a slow SD-card fsync, a GC pause) that is over well before
    systemd's deadline gets its ping in time instead of waiting a full
    interval, which would land exactly on the deadline.
    """
    if interval is None:
        interval = watchdog_interval()
    if interval is None or not math.isfinite(interval) or interval <= 0:
        logger.debug("no systemd watchdog requested; not pinging")
        return
    pinging: bool | None = None
    while True:
        verdict = gate.decide(
            clock(),
            heartbeat.last_loop_tick,
            heartbeat.last_mic_frame,
            heartbeat.mic_expected,
            lost_devices(),
        )
        if verdict.ping:
            notifier.watchdog()
        if verdict.ping != pinging:
            if verdict.ping:
                logger.info("watchdog: pinging (%s)", verdict.reason)
            else:
                logger.error(
                    "watchdog: withholding pings, systemd will restart us (%s)", verdict.reason
                )
            pinging = verdict.ping
        await asyncio.sleep(interval if verdict.ping else interval / 5)


async def status_loop(
    notifier: Notifier,
    snapshot: Callable[[], Mapping[str, object]],
    *,
    period: float = 5.0,
) -> None:
    """Keep STATUS= current: every ``period`` s send ``format_status(snapshot())``
    if it changed. The supervisor may also call ``notifier.status`` on state changes."""
    last: str | None = None
    while True:
        text = format_status(snapshot())
        if text != last:
            notifier.status(text)
            last = text
        await asyncio.sleep(period)


# --- signals --------------------------------------------------------------------------


def install_signal_handlers(
    loop: asyncio.AbstractEventLoop,
    notifier: Notifier,
    *,
    stop: Callable[[], object],
    reload: Callable[[], object],
) -> None:
    """SIGTERM/SIGINT -> STOPPING=1 then ``stop()``; SIGHUP -> RELOADING=1 then ``reload()``.

    Both callbacks run on the loop (``loop.add_signal_handler``), so they may
    set events or create tasks (the supervisor's). ``reload`` must send
    ``notifier.ready()`` when the new configuration is in effect — systemd
    keeps the unit in "reloading" until then. STOPPING=1 goes out first so
    ``systemctl status`` says "deactivating" while we persist state and close
    the connection (issue 5 item 5).
    """

    def on_stop(signame: str) -> None:
        logger.info("x %s: stopping", signame)
        notifier.stopping(f"stopping ({signame})")
        stop()

    def on_reload() -> None:
        logger.info("= SIGHUP: reloading configuration")
        notifier.reloading()
        reload()

    loop.add_signal_handler(signal.SIGTERM, on_stop, "SIGTERM")
    loop.add_signal_handler(signal.SIGINT, on_stop, "SIGINT")
    loop.add_signal_handler(signal.SIGHUP, on_reload)
