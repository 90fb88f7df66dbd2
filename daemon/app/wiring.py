"""
Small adapters ``voiced run`` wires between the supervisor and the service side
(daemon/app/run.py is the one that builds and runs them):

* :class:`Pulse` — the watchdog's view of the pipeline (daemon/health.py's
  ``Heartbeat`` protocol) over the supervisor's own heartbeat, plus whether a mic
  is expected (a mic the adapter reported lost is *healthy*: it is reopening it).
* :class:`Controls` — the control socket's :class:`~daemon.runtime.control.ControlTarget`
  over the supervisor (status mapping, say, context, instruct, ptt, new-session).
* :class:`AppControlServer` — the control server plus the test-only debug commands
  (``debug-wedge-loop``, ``debug-stall-mic``), answered only when
  ``[service] debug_commands = true``; otherwise they are unknown commands.
* :class:`StateKeeper` — persists every ``Persist`` snapshot atomically, in order, on
  one worker thread (an SD-card fsync must not stall the event loop), and restores
  the session from the state file at start.
* :class:`MuteGate` — the mic mute of the built-in tool and the Home Assistant switch,
  reported to the core (``SetMuted``), which ignores presses and shows "muted".
* :class:`ToolsAndHome` — the ``[[tools]]`` runner (GPIO pins opened on the hardware's
  pin factory) and the ``[mqtt]`` Home Assistant bridge, fed from the supervisor's effects.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from typing import Any, Callable, Mapping

from daemon import wire
from daemon.events import LED_PRIORITY, DeviceLost, DeviceRestored, DeviceState, Event
from daemon.runtime.control import ControlServer
from daemon.runtime.state import StateStore
from daemon.session import Session, SessionSettings, Snapshot
from daemon.vocabulary import CloseConnection, Effect, Persist, SetMuted, ShowStates

__all__ = [
    "Pulse",
    "Controls",
    "AppControlServer",
    "StateKeeper",
    "MuteGate",
    "ToolsAndHome",
    "top_state",
    "local_voice",
    "DEBUG_COMMANDS",
]

log = logging.getLogger(__name__)

DEBUG_COMMANDS = ("debug-wedge-loop", "debug-stall-mic")
_MAX_WEDGE = 120.0


def local_voice() -> Callable[[str], tuple[bytes, int]] | None:
    """``speech(text) -> (pcm, rate)`` with espeak-ng — the voice the local Live server
    uses — for announcements said while offline; None when espeak-ng is not installed."""
    if shutil.which("espeak-ng") is None:
        return None
    from daemon.liveserver.model import OUTPUT_RATE, Voice

    voice = Voice("espeak")
    lock = threading.Lock()  # the voice's cache is not thread-safe

    def speak(text: str) -> tuple[bytes, int]:
        with lock:
            return voice.speak(text), OUTPUT_RATE

    return speak


def top_state(states: frozenset[DeviceState]) -> DeviceState:
    """The state the LED shows (first of LED_PRIORITY that holds)."""
    return next((s for s in LED_PRIORITY if s in states), DeviceState.OFFLINE)


class Pulse:
    """``health.Heartbeat`` for the watchdog gate.

    Args:
        heartbeat: the supervisor's ``Heartbeat`` (``last_iteration`` / ``last_mic_frame``
            in ``loop.time()``, which is ``time.monotonic()`` on Linux).
        clock: monotonic clock (for the grace period after a mic comes back).
    """

    def __init__(self, heartbeat: Any = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.heartbeat = heartbeat
        """Set once the supervisor exists (the hardware, built first, posts through us)."""
        self._clock = clock
        self._restored_at: float | None = None
        self.mic_expected = True

    @property
    def last_loop_tick(self) -> float | None:
        return (self.heartbeat.last_iteration or None) if self.heartbeat is not None else None

    @property
    def last_mic_frame(self) -> float | None:
        hb = self.heartbeat
        times = [t for t in (hb and hb.last_mic_frame, self._restored_at) if t]
        return max(times) if times else None

    def observe(self, event: Event) -> None:
        """See a hardware event on its way to the inbox (any thread)."""
        if isinstance(event, DeviceLost) and event.kind == "mic":
            self.mic_expected = False
        elif isinstance(event, DeviceRestored) and event.kind == "mic":
            self._restored_at = self._clock()
            self.mic_expected = True

    def wrap(self, post: Callable[[Event], None]) -> Callable[[Event], None]:
        """A ``post`` for the hardware adapters that lets this pulse see their events."""

        def observed(event: Event) -> None:
            self.observe(event)
            post(event)

        return observed


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


class ToolsAndHome:
    """``[[tools]]`` and ``[mqtt]`` for ``voiced run`` (daemon/app/run.py builds one).

    Built before the supervisor (the GPIO tools open their pins on the hardware's pin
    factory; ``runner`` is the supervisor's ``tool_runner``), bound to the device controls once
    they exist (:meth:`attach`), and run as supervisor companions (the MQTT client task).

    Args:
        cfg: the configuration (``tools``, ``mqtt``).
        environ: for the broker password credential.
        pin_factory: the button's and LED's gpiozero pin factory (None: gpiozero's default).
        state_dir: where the volume is kept.
        mute: the mic mute gate the hardware posts through.
    """

    def __init__(
        self,
        cfg: Any,
        environ: Mapping[str, str],
        *,
        pin_factory: Any = None,
        mute: MuteGate | None = None,
        state_dir: Any = None,
    ) -> None:
        from daemon.runtime.actions import ToolContext, VolumeStore, build_tools
        from daemon.runtime.homeassistant import resolve_password
        from daemon.runtime.tools import ToolRunner

        self.cfg = cfg
        self.volume_store = VolumeStore(state_dir) if state_dir is not None else None
        self.context = ToolContext(pin_factory=pin_factory)
        self.mqtt_password = resolve_password(cfg.mqtt, environ) if cfg.mqtt.enabled else None
        if cfg.mqtt.enabled:
            self.context.publish = self._publish
        self.specs = build_tools(cfg.tools, self.context)
        self.runner = ToolRunner(self.specs, on_change=self._tools_changed)
        self.home: Any = None
        self.controls: Controls | None = None
        self.mute = mute or MuteGate()

    def attach(
        self,
        supervisor: Any,
        controls: Controls,
        dispatch: Callable[[bytes], Mapping[str, Any]],
        sw_version: str = "",
    ) -> None:
        """Bind the device controls; subscribe to the supervisor's effects."""
        self.controls = controls
        controls.mute = self.mute
        controls.volume_store = self.volume_store
        self.context.device = controls
        saved = self.volume_store.load() if self.volume_store is not None else None
        if saved is not None and controls.speaker is not None:
            controls.speaker.volume = saved
            log.info("volume %d%% (kept from the last run)", round(saved * 100))
        if self.cfg.mqtt.enabled:
            from daemon.runtime.homeassistant import HomeAssistant

            def dispatch_json(request: dict[str, Any]) -> Mapping[str, Any]:
                return dispatch(json.dumps(request).encode())

            self.home = HomeAssistant(
                self.cfg.mqtt,
                password=self.mqtt_password,
                dispatch=dispatch_json,
                device=controls,
                status=controls.status,
                sw_version=sw_version,
            )
            supervisor.subscribe(self._feed_home)
            self.mute.listeners.append(lambda muted: self._home_mute(muted))
            controls.volume_listeners.append(self._home_volume)

    def companions(self) -> list[Any]:
        return [self.home.run()] if self.home is not None else []

    def close(self) -> None:
        from daemon.runtime.actions import close_tools

        self.runner.close()
        close_tools(self.specs)

    # -- internals

    def _publish(self, topic: str, payload: bytes, qos: int, retain: bool, timeout: float) -> None:
        if self.home is None:
            raise RuntimeError("the MQTT bridge is not running")
        self.home.publish_threadsafe(topic, payload, qos, retain, timeout)

    def _tools_changed(self, running: int) -> None:
        if self.controls is not None:
            self.controls.tools_running = running

    def _home_mute(self, muted: bool) -> None:
        home = self.home
        loop = home._loop if home is not None else None
        if loop is not None:
            # The state entity follows from the core's ShowStates (muted is a core state).
            loop.call_soon_threadsafe(home.update, "mute", "ON" if muted else "OFF")

    def _home_volume(self, level: float) -> None:
        # Any thread (a tool's, or the loop for a command from Home Assistant).
        home = self.home
        loop = home._loop if home is not None else None
        if loop is not None:
            loop.call_soon_threadsafe(home.update, "volume", str(round(level * 100)))

    def _feed_home(self, effect: Effect) -> None:
        home = self.home
        if isinstance(effect, CloseConnection) and effect.reason == "shutting down":
            home.going_offline()  # first thing on SIGTERM, before the wind-down
        elif isinstance(effect, ShowStates):
            home.update("state", top_state(effect.states).value)
        elif isinstance(effect, Persist):
            history = effect.snapshot.history
            said = next((e.text for e in reversed(history) if e.role == "model"), None)
            heard = next((e.text for e in reversed(history) if e.role == "user"), None)
            if heard is not None:
                home.update("transcript_in", heard[:255])
            if said is not None:
                home.update("transcript_out", said[:255])
