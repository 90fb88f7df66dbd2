"""
:class:`ToolsAndHome` — the ``[[tools]]`` runner (GPIO pins opened on the hardware's pin
factory) and the ``[mqtt]`` Home Assistant bridge, fed from the supervisor's effects.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Callable, Mapping

from daemon.app.controls import Controls, MuteGate, top_state
from daemon.vocabulary import CloseConnection, Effect, Persist, ShowStates

__all__ = ["ToolsAndHome"]

log = logging.getLogger(__name__)


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
