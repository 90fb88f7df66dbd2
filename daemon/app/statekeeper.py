"""
:class:`StateKeeper` — persists every ``Persist`` snapshot atomically, in order, on one
worker thread (an SD-card fsync must not stall the event loop), and restores the session
from the state file at start.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from typing import Callable

from daemon import wire
from daemon.runtime.state import StateStore
from daemon.session import Session, SessionSettings, Snapshot

__all__ = ["StateKeeper"]

log = logging.getLogger(__name__)


class StateKeeper:
    """Saves snapshots to a :class:`StateStore` and builds the session from it.

    The payload: ``{"snapshot": Snapshot.to_dict(), "saved_at": unix seconds,
    "time_scale": nominal seconds per wall second, "server": where the handle is valid,
    "config_instruction": the [live] system_instruction when it was saved}``.

    Args:
        store: the state file.
        server: identifies the Live server the handles belong to ("local" for the
            embedded server, whose handles die with the process).
        config_instruction: the configured system instruction; a saved instruction wins
            over it (``voiced instruct`` survives a restart) unless the config changed since.
        time_scale: the supervisor's; downtime is converted to nominal seconds.
    """

    def __init__(
        self,
        store: StateStore,
        *,
        server: str,
        config_instruction: str,
        time_scale: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.server = server
        self.config_instruction = config_instruction
        self.time_scale = time_scale
        self._clock = clock
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="state-save")
        self.saves = 0

    def save(self, snapshot: Snapshot) -> None:
        """Queue an atomic save of ``snapshot`` (in order; returns at once)."""
        payload = {
            "snapshot": snapshot.to_dict(),
            "saved_at": self._clock(),
            "time_scale": self.time_scale,
            "server": self.server,
            "config_instruction": self.config_instruction,
        }
        future = self._worker.submit(self.store.save, payload)
        future.add_done_callback(self._saved)

    def _saved(self, future: Future[bool]) -> None:
        exc = future.exception()
        if exc is not None:
            log.error("! saving state failed: %s", exc)
        elif future.result():
            self.saves += 1

    def close(self) -> None:
        """Wait for queued saves to be on disk."""
        self._worker.shutdown(wait=True)

    def restore(self, settings: SessionSettings, setup: wire.SetupConfig, api: str) -> Session:
        """The session to start with: continuing the saved one when the state file is
        usable (resume within the handle's lifetime, else fresh with context), else new."""
        payload = self.store.load()  # a corrupt file is set aside with a warning
        if not payload:
            log.info("no saved conversation: starting a new one")
            return Session(settings, setup, api)
        try:
            snapshot = Snapshot.from_dict(payload["snapshot"])
            downtime = max(0.0, self._clock() - float(payload["saved_at"])) * self.time_scale
        except (KeyError, TypeError, ValueError) as exc:
            log.warning(
                "state file %s is unusable (%s); starting a new conversation", self.store.path, exc
            )
            return Session(settings, setup, api)
        if snapshot.handle and payload.get("server") != self.server:
            # A handle from another server (or from an embedded server that died with
            # the last process) would only be refused: keep the conversation, not the handle.
            snapshot = replace(snapshot, handle=None, handle_age=None, session_age=None)
        if payload.get("config_instruction") != self.config_instruction:
            snapshot = replace(snapshot, system_instruction=None)  # the config changed: it wins
        session = Session.from_snapshot(snapshot, settings, setup, api, now=0.0, downtime=downtime)
        resuming = session.snapshot().handle is not None
        log.info(
            "restored the conversation (%d entries, down %.0f s): %s",
            len(snapshot.history),
            downtime,
            "resuming the same session" if resuming else "a fresh session with context",
        )
        return session
