"""
:class:`AppControlServer` — the control server plus the test-only debug commands
(``debug-wedge-loop``, ``debug-stall-mic``), answered only when
``[service] debug_commands = true``; otherwise they are unknown commands.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from daemon.runtime.control import ControlServer

__all__ = ["AppControlServer", "DEBUG_COMMANDS"]

log = logging.getLogger(__name__)

DEBUG_COMMANDS = ("debug-wedge-loop", "debug-stall-mic")
_MAX_WEDGE = 120.0


class AppControlServer(ControlServer):
    """:class:`ControlServer` plus test-only debug commands when ``mic`` hooks are given.

    ``debug-wedge-loop {"seconds": N}`` blocks the event loop for N seconds (so the
    systemd watchdog pings stop, by construction); ``debug-stall-mic`` closes the mic
    without telling anyone (frames stop, nobody reports a loss: the watchdog gate
    withholds pings). Both exist to prove the watchdog; they are refused as unknown
    commands unless ``[service] debug_commands = true``.
    """

    def __init__(
        self,
        target: Any,
        directory: Any,
        group: str | None = None,
        *,
        debug: bool = False,
        mic: Any = None,
    ) -> None:
        super().__init__(target, directory, group)
        self.debug = debug
        self.mic = mic

    def dispatch(self, line: bytes) -> dict[str, Any]:
        if self.debug:
            try:
                req = json.loads(line)
            except (ValueError, UnicodeDecodeError):
                req = None
            if isinstance(req, dict) and req.get("cmd") in DEBUG_COMMANDS:
                return self._debug(req)
        return super().dispatch(line)

    def _debug(self, req: dict[str, Any]) -> dict[str, Any]:
        if req["cmd"] == "debug-wedge-loop":
            try:
                seconds = min(_MAX_WEDGE, max(0.0, float(req.get("seconds", 10.0))))
            except (TypeError, ValueError):
                return {"ok": False, "error": "debug-wedge-loop needs a number of seconds"}
            log.warning("debug: wedging the event loop for %.1f s on purpose", seconds)
            time.sleep(seconds)  # on purpose: this is the wedge
            return {"ok": True, "wedged": seconds}
        log.warning("debug: stalling the mic on purpose (no DeviceLost)")
        if self.mic is not None:
            self.mic.close()
        return {"ok": True}
