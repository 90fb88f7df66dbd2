"""A small daemon for the service tests: the real Notifier, watchdog_loop, logging
setup and credential reading, wired the way the App wires them (the supervisor's
Heartbeat seen through the App's Pulse).

Run: python notify_child.py [loop_limit] [mic_limit]. Commands on stdin, one per line:
  status <text> | wedge <seconds> | stall-mic | lose-mic | restore-mic | leak | exit
SIGTERM -> STOPPING=1 and exit 0; SIGHUP -> RELOADING=1, re-read the key, READY=1.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import time

from daemon.app.config import LiveSettings, resolve_api_key
from daemon.app.pulse import Pulse
from daemon.events import DeviceLost, DeviceRestored
from daemon.runtime.logs import setup_logging
from daemon.runtime.service import (
    EXIT_OK,
    Notifier,
    WatchdogGate,
    format_status,
    install_signal_handlers,
    watchdog_loop,
)
from daemon.runtime.supervisor import Heartbeat

log = logging.getLogger("voiced.child")


def read_key() -> str | None:
    """The key as the daemon reads it (the systemd credential first), as plain text."""
    secret = resolve_api_key(LiveSettings(), os.environ)
    return secret.reveal() if secret else None


async def main(loop_limit: float, mic_limit: float) -> int:
    redactor = setup_logging(logging.DEBUG, journal=False)
    key = read_key()
    redactor.set_secrets([key] if key else [])
    notifier = Notifier(redact=redactor.redact)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    heartbeat = Heartbeat()
    pulse = Pulse(heartbeat)
    mic_moving = True

    async def ticker() -> None:
        # Stands in for the supervisor's inbox loop fed by 20 ms mic frames.
        while True:
            now = time.monotonic()
            heartbeat.last_iteration = now
            if mic_moving:
                heartbeat.last_mic_frame = now
            await asyncio.sleep(0.02)

    def command(line: str) -> None:
        nonlocal mic_moving
        name, _, arg = line.strip().partition(" ")
        if name == "status":
            notifier.status(arg)
        elif name == "wedge":
            log.info("wedging the loop for %s s", arg)
            time.sleep(float(arg))  # on purpose: blocks the event loop
        elif name == "stall-mic":
            mic_moving = False
        elif name == "lose-mic":
            pulse.observe(DeviceLost("mic", "vmic", "unplugged"))
        elif name == "restore-mic":
            mic_moving = True
            pulse.observe(DeviceRestored("mic", "vmic"))
        elif name == "leak":
            log.info("the key is %s", key, extra={"REASON": f"bad key {key}"})
            log.debug('> setup {"key": "%s"}', key)
            try:
                raise RuntimeError(f"connect failed for key={key}")
            except RuntimeError:
                log.exception("connection error")
            notifier.status(format_status({"state": "error", "last_error": f"1007 key {key}"}))
            print("env:", dict(os.environ), "argv:", sys.argv, flush=True)
        elif name == "exit":
            stop.set()

    def read_stdin() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(command, line)

    def reload() -> None:
        nonlocal key
        key = read_key()
        redactor.set_secrets([key] if key else [])
        notifier.ready(status="reloaded")

    install_signal_handlers(loop, notifier, stop=stop.set, reload=reload)
    threading.Thread(target=read_stdin, daemon=True).start()
    gate = WatchdogGate(started_at=time.monotonic(), loop_limit=loop_limit, mic_limit=mic_limit)
    tasks = [
        asyncio.create_task(ticker()),
        asyncio.create_task(watchdog_loop(notifier, gate, pulse)),
    ]
    notifier.ready(status=format_status({"state": "idle", "session_age": 0}))
    await stop.wait()
    for task in tasks:
        task.cancel()
    log.info("stopped")
    return EXIT_OK


if __name__ == "__main__":
    args = [float(a) for a in sys.argv[1:3]]
    sys.exit(asyncio.run(main(*(args or [0.3, 0.3]))))
