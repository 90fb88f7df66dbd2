"""
The device controls ``voiced run`` exposes:

* :class:`Controls` — the control socket's :class:`~daemon.runtime.control.ControlTarget`
  over the supervisor (status mapping, say, context, instruct, ptt, new-session), and the
  device side the built-in tools and Home Assistant use (volume, mute, stop, timers).
* :class:`MuteGate` — the mic mute of the built-in tool and the Home Assistant switch,
  reported to the core (``SetMuted``), which ignores presses and shows "muted".
* :func:`top_state` — the one state the LED (and ``status``, and Home Assistant) shows.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Mapping

from daemon.events import LED_PRIORITY, DeviceState, Event
from daemon.vocabulary import SetMuted

__all__ = ["Controls", "MuteGate", "top_state"]

log = logging.getLogger(__name__)


def top_state(states: frozenset[DeviceState]) -> DeviceState:
    """The state the LED shows (first of LED_PRIORITY that holds)."""
    return next((s for s in LED_PRIORITY if s in states), DeviceState.OFFLINE)


class MuteGate:
    """The mic mute switch (built-in tool ``mute``, Home Assistant): reports the user's
    choice to the core (``SetMuted``), which decides what muted means — presses ignored,
    no audio kept, the LED's "muted". Mic frames keep flowing, so the watchdog still sees
    a live mic. Keeps the choice for ``status``, ``ptt`` and Home Assistant."""

    def __init__(self) -> None:
        self.muted = False
        self.post: Callable[[Event], None] | None = None
        """The supervisor's inbox post (set once it exists)."""
        self._lock = threading.Lock()
        self.listeners: list[Callable[[bool], None]] = []

    def set(self, muted: bool) -> None:
        with self._lock:
            changed, self.muted = self.muted != muted, muted
        if changed:
            log.info("mic %s", "muted" if muted else "unmuted")
            if self.post is not None:
                self.post(SetMuted(muted))
            for listener in self.listeners:
                listener(muted)


class Controls:
    """The control socket's target: the supervisor, plus what ``status`` reports; and the
    device side the built-in tools and Home Assistant use (volume, mute, stop, timers)."""

    def __init__(
        self,
        supervisor: Any,
        endpoint: str,
        mic: Any = None,
        speaker: Any = None,
        *,
        mute: MuteGate | None = None,
        volume_store: Any = None,
    ) -> None:
        self.supervisor = supervisor
        self.endpoint = endpoint
        self.mic, self.speaker = mic, speaker
        self.mute = mute or MuteGate()
        if self.mute.post is None and hasattr(supervisor, "post"):
            self.mute.post = supervisor.post
        self.volume_store = volume_store
        self.tools_running = 0
        self.volume_listeners: list[Callable[[float], None]] = []

    # -- device side (daemon/runtime/actions.py Device; any thread)
    # ----------------------------------

    def get_volume(self) -> float:
        return float(getattr(self.speaker, "volume", 1.0))

    def set_volume(self, level: float) -> None:
        """Speaker volume, 0..1 (100 %); kept in the state directory across restarts."""
        level = min(1.0, max(0.0, float(level)))
        if self.speaker is not None:
            self.speaker.volume = level
        if self.volume_store is not None:
            self.volume_store.save(level)
        log.info("volume %d%%", round(level * 100))
        for listener in self.volume_listeners:
            listener(level)

    def is_muted(self) -> bool:
        return self.mute.muted

    def set_muted(self, muted: bool) -> None:
        self.mute.set(muted)

    def stop_speaking(self) -> None:
        if self.speaker is not None:
            self.speaker.flush()

    def start_timer(self, seconds: float, label: str) -> None:
        """A timer (built-in ``set_timer``; nominal seconds, any thread): when due it rings
        the "new" earcon and is announced — through the model, or in the device's own voice
        while offline (the core decides)."""
        from daemon.runtime.homeassistant import announce_prompt
        from daemon.vocabulary import Announce

        text = f"Your timer {label} is done."
        log.info("timer %r set for %g s", label, seconds)
        self.supervisor.post_after(seconds, Announce(text, announce_prompt(text), "new"))

    def announce(self, text: str) -> None:
        """Say ``text`` verbatim (Home Assistant's announce, ``voiced announce``)."""
        from daemon.runtime.homeassistant import announce_prompt

        self.supervisor.announce(text, announce_prompt(text))

    def status(self) -> Mapping[str, Any]:
        """One mapping for both STATUS= (daemon.health.format_status) and ``voiced status``
        (daemon.cli.ctl.format_report). Times are nominal seconds (real time at scale 1)."""
        stats = self.supervisor.stats()
        out: dict[str, Any] = dict(vars(stats))
        states = self.supervisor.states()
        out["state"] = top_state(states).value
        out["states"] = sorted(s.value for s in states)
        out["muted"] = self.mute.muted
        out["tools_running"] = self.tools_running
        out["endpoint"] = self.endpoint
        out["token_window"] = stats.context_window
        out["mic"] = getattr(self.mic, "device_name", "none")
        out["speaker"] = getattr(self.speaker, "device_name", "none")
        now = time.monotonic()  # audio devices being reopened (hw/pastream.py, issue 14)
        out["devices_missing"] = [
            {"kind": lost.kind, "name": lost.name, "seconds": round(now - lost.since, 1)}
            for lost in (getattr(part, "lost", None) for part in (self.mic, self.speaker))
            if lost
        ]
        return out

    def say(self, text: str) -> None:
        self.supervisor.send_text(text)

    def context(self, text: str) -> None:
        self.supervisor.context(text)

    def instruct(self, text: str) -> None:
        self.supervisor.instruct(text)

    def ptt(self, start: bool) -> None:
        if start and self.mute.muted:
            raise RuntimeError("the mic is muted")
        if start:
            self.supervisor.ptt_start()
        else:
            self.supervisor.ptt_stop()

    def new_session(self) -> None:
        self.supervisor.new_session()
