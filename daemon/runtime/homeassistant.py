"""
Home Assistant over MQTT: the device as one HA device with state, transcripts,
volume, mute, talk, new conversation, announce and instruct (README "Home Assistant").

Why aiomqtt 2.x (on paho-mqtt 2.x): it is the maintained asyncio client (releases
through 2026; paho-mqtt is the Eclipse reference implementation underneath, so MQTT
3.1.1/5, TLS, last-will and keepalive are paho's, which Home Assistant itself uses). It
runs on our event loop as one supervisor companion — no extra thread, no second loop.

How it behaves (FIELD_REPORTS Part 2 rows 3, 4, 5, 11):

* On every connect: the retained availability topic says ``online`` (the broker's
  retained last-will says ``offline`` when we vanish), then the HA MQTT discovery
  configs (retained) of every entity, then the current state of each, then it
  subscribes to its own command topics.
* Commands go through the control socket's own dispatcher (daemon/runtime/control.py): talk is
  ``ptt``, new conversation ``new-session``, instruct ``instruct``, announce ``announce``
  with the text wrapped so the model says it verbatim (the core speaks it on the device
  instead while offline: ``Announce``). Volume and mute go to the device controls
  (daemon/app/controls.py), the same ones the built-in tools use.
* A broker that is down or refuses never touches the voice path: the bridge only reads
  snapshots the supervisor hands it; it reconnects with full-jitter backoff
  (daemon/backoff.py) and republishes everything when it is back.
* Each device publishes under its own prefix (``[mqtt] topic_prefix``, else
  ``voiced/<machine id>``), so any number share one broker; a broker ACL can confine
  each device's user to its prefix and its discovery topics.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from daemon.errors import ConfigError

__all__ = [
    "MqttSettings",
    "HomeAssistant",
    "resolve_password",
    "machine_node",
    "ENTITIES",
    "announce_prompt",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MqttSettings:
    """Home Assistant over MQTT (``[mqtt]``); off while ``host`` is empty."""

    host: str = ""
    """Broker host name or address; empty turns MQTT off."""
    port: int = 1883
    """Broker port (8883 is the usual one with TLS)."""
    tls: bool = False
    """Connect with TLS (the system CAs, or ca_file)."""
    ca_file: str = ""
    """A CA certificate file for a broker with its own CA (TLS only)."""
    username: str = ""
    """Broker user name; empty for an anonymous broker."""
    password_file: str = ""
    """A file holding the broker password
    (used when there is no systemd credential mqtt-password)."""
    topic_prefix: str = ""
    """Topics of this device start with this; empty: voiced/<machine id>."""
    discovery_prefix: str = "homeassistant"
    """Home Assistant's MQTT discovery prefix."""
    device_name: str = ""
    """The device's name in Home Assistant; empty: voiced <host name>."""
    keepalive: int = 30
    """MQTT keepalive in seconds (the broker publishes the last-will after 1.5 times this)."""
    reconnect_max: float = 60.0
    """Longest wait between reconnect attempts, in seconds."""

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ConfigError("mqtt.port", self.port, "must be 1..65535")
        if not 5 <= self.keepalive <= 3600:
            raise ConfigError("mqtt.keepalive", self.keepalive, "must be 5..3600 seconds")
        if not 0.1 <= self.reconnect_max <= 3600:
            raise ConfigError("mqtt.reconnect_max", self.reconnect_max, "must be 0.1..3600 seconds")
        for key in ("topic_prefix", "discovery_prefix"):
            value = getattr(self, key)
            if any(c in value for c in "#+\x00") or value.startswith("/") or value.endswith("/"):
                raise ConfigError(
                    f"mqtt.{key}", value, "must be a topic without wildcards or leading/trailing /"
                )
        if self.ca_file and not self.tls:
            raise ConfigError("mqtt.ca_file", self.ca_file, "needs tls = true")

    @property
    def enabled(self) -> bool:
        return bool(self.host)


def resolve_password(settings: MqttSettings, environ: Mapping[str, str]) -> str | None:
    """The broker password from, in order: the systemd credential ``mqtt-password``,
    ``mqtt.password_file``. Never logged (the caller registers it with the redactor)."""
    creds = environ.get("CREDENTIALS_DIRECTORY")
    if creds:
        path = Path(creds) / "mqtt-password"
        if path.exists():
            try:
                text = path.read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(
                    "systemd credential mqtt-password",
                    str(path),
                    f"cannot be read ({type(exc).__name__})",
                ) from None
            if text:
                return text
    if settings.password_file:
        try:
            text = Path(settings.password_file).read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            raise ConfigError(
                "mqtt.password_file", settings.password_file, "file not found"
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(
                "mqtt.password_file",
                settings.password_file,
                f"cannot be read ({type(exc).__name__})",
            ) from None
        if not text:
            raise ConfigError("mqtt.password_file", settings.password_file, "the file is empty")
        return text
    return None


def machine_node(path: str = "/etc/machine-id") -> str:
    """A short stable id of this machine (the systemd machine id, else the host name)."""
    try:
        ident = Path(path).read_text().strip()
    except OSError:
        ident = ""
    if ident:
        return ident[:12]
    return "".join(c if c.isalnum() else "_" for c in socket.gethostname().lower()) or "voiced"


_ToolMessage = tuple[str, bytes, int, bool, "concurrent.futures.Future[None]"]
"""An MQTT tool's message waiting for the publisher: topic, payload, qos, retain, and the
future its thread waits on."""


def announce_prompt(text: str) -> str:
    """What the model is asked so that it says ``text`` verbatim (an announcement)."""
    return (
        "Announcement: say exactly the following words, verbatim, and nothing else. "
        f"Do not answer or comment on them.\n{text}"
    )


STATES = (
    "idle",
    "listening",
    "thinking",
    "speaking",
    "working",
    "going_away",
    "error",
    "quota",
    "cooldown",
    "muted",
    "connecting",
    "offline",
)

# object id -> (component, config beyond the common keys). Topics are relative to the prefix.
ENTITIES: dict[str, tuple[str, dict[str, Any]]] = {
    "state": (
        "sensor",
        {
            "name": "State",
            "state_topic": "state",
            "icon": "mdi:account-voice",
            "device_class": "enum",
            "options": list(STATES),
        },
    ),
    "transcript_in": (
        "sensor",
        {"name": "Last heard", "state_topic": "transcript_in", "icon": "mdi:microphone-message"},
    ),
    "transcript_out": (
        "sensor",
        {"name": "Last said", "state_topic": "transcript_out", "icon": "mdi:message-reply-text"},
    ),
    "connection_age": (
        "sensor",
        {
            "name": "Connection age",
            "state_topic": "diagnostics",
            "value_template": "{{ value_json.connection_age }}",
            "unit_of_measurement": "s",
            "device_class": "duration",
            "entity_category": "diagnostic",
        },
    ),
    "session_age": (
        "sensor",
        {
            "name": "Session age",
            "state_topic": "diagnostics",
            "value_template": "{{ value_json.session_age }}",
            "unit_of_measurement": "s",
            "device_class": "duration",
            "entity_category": "diagnostic",
        },
    ),
    "volume": (
        "number",
        {
            "name": "Volume",
            "state_topic": "volume",
            "command_topic": "volume/set",
            "min": 0,
            "max": 100,
            "step": 1,
            "unit_of_measurement": "%",
            "icon": "mdi:volume-high",
        },
    ),
    "mute": (
        "switch",
        {
            "name": "Mute microphone",
            "state_topic": "mute",
            "command_topic": "mute/set",
            "icon": "mdi:microphone-off",
        },
    ),
    "talk": (
        "switch",
        {
            "name": "Talk",
            "state_topic": "talk",
            "command_topic": "talk/set",
            "icon": "mdi:gesture-tap-button",
        },
    ),
    "new_conversation": (
        "button",
        {
            "name": "New conversation",
            "command_topic": "new_conversation/press",
            "icon": "mdi:restart",
        },
    ),
    "announce": (
        "text",
        {
            "name": "Announce",
            "command_topic": "announce/set",
            "state_topic": "announce",
            "max": 255,
            "icon": "mdi:bullhorn",
        },
    ),
    "instruct": (
        "text",
        {
            "name": "Instruction",
            "command_topic": "instruct/set",
            "state_topic": "instruct",
            "max": 255,
            "icon": "mdi:script-text",
        },
    ),
}


class HomeAssistant:
    """The MQTT bridge; :meth:`run` is a supervisor companion.

    Args:
        settings: ``[mqtt]``.
        password: from :func:`resolve_password`.
        dispatch: the control socket's dispatcher, ``dispatch(request) -> reply`` (the
            same validation and actions as ``voiced say`` / ``ptt`` / …).
        device: volume and mute (daemon/app/controls.py ``Controls``).
        status: the status mapping (``Controls.status``) for the diagnostics.
        node: this machine's id (:func:`machine_node`); the prefix, and so the node id of
            the discovery topics and unique ids, comes from it unless ``topic_prefix`` is set.
        sw_version: shown in the HA device block.
    """

    def __init__(
        self,
        settings: MqttSettings,
        *,
        password: str | None,
        dispatch: Callable[[dict[str, Any]], Mapping[str, Any]],
        device: Any,
        status: Callable[[], Mapping[str, Any]],
        node: str | None = None,
        sw_version: str = "",
        diagnostics_period: float = 30.0,
    ) -> None:
        self.settings = settings
        self.password = password
        self.dispatch = dispatch
        self.device = device
        self.status = status
        # The node id names the device in discovery topics and unique ids: from the prefix
        # when one is set (so a broker ACL can confine both to it), else the machine id.
        self.prefix = settings.topic_prefix or f"voiced/{node or machine_node()}"
        self.node = self.prefix.replace("/", "_")
        self.name = settings.device_name or f"voiced {socket.gethostname()}"
        self.sw_version = sw_version
        self.diagnostics_period = diagnostics_period
        self.connected = asyncio.Event()
        self.connects = 0
        self.commands = 0
        self._client: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._values: dict[str, str] = {}
        """Last value per state topic (relative), republished on every connect."""
        # What waits to be published, in order: state topics changed since they last went
        # out, and the MQTT tools' messages (with the future their thread waits on). Only
        # the companion's own publisher (in _serve) sends them: no stray tasks (issue 11).
        self._changed: dict[str, None] = {}
        self._tool_messages: list[_ToolMessage] = []
        self._wake = asyncio.Event()

    # -- state from the daemon (loop thread) ------------------------------------------------

    def update(self, topic: str, value: str) -> None:
        """Set a state topic (relative to the prefix); published now if connected, and on
        every reconnect."""
        if self._values.get(topic) == value:
            return
        self._values[topic] = value
        self._changed[topic] = None  # goes out now if connected, else on the next connect
        self._wake.set()

    def going_offline(self) -> None:
        """The daemon is stopping: say ``offline`` now (loop thread), while the broker
        connection is surely still up; the clean stop in :meth:`run` says it again."""
        self.update("availability", "offline")

    def topic(self, relative: str) -> str:
        return f"{self.prefix}/{relative}"

    def discovery(self) -> dict[str, dict[str, Any]]:
        """Discovery topic → config payload, for every entity."""
        device = {
            "identifiers": [self.node],
            "name": self.name,
            "manufacturer": "voiced",
            "model": "voiced push-to-talk (Gemini Live)",
        }
        if self.sw_version:
            device["sw_version"] = self.sw_version
        out = {}
        for object_id, (component, extra) in ENTITIES.items():
            config: dict[str, Any] = {
                "unique_id": f"{self.node}_{object_id}",
                "object_id": f"{self.node}_{object_id}",
                "availability_topic": self.topic("availability"),
                "payload_available": "online",
                "payload_not_available": "offline",
                "device": device,
            }
            for k, v in extra.items():
                config[k] = self.topic(v) if k.endswith("_topic") else v
            out[f"{self.settings.discovery_prefix}/{component}/{self.node}/{object_id}/config"] = (
                config
            )
        return out

    # -- thread-safe publish for MQTT tools ------------------------------------------------

    def publish_threadsafe(
        self, topic: str, payload: bytes, qos: int, retain: bool, timeout: float
    ) -> None:
        """Publish from a tool's thread; raises RuntimeError when the broker is not there."""
        loop = self._loop
        if loop is None or self._client is None or not self.connected.is_set():
            raise RuntimeError("the MQTT broker is not connected")
        done: concurrent.futures.Future[None] = concurrent.futures.Future()
        loop.call_soon_threadsafe(self._queue_tool_message, (topic, payload, qos, retain, done))
        try:
            done.result(timeout)
        except concurrent.futures.TimeoutError:
            done.cancel()  # the publisher skips it if it has not gone out yet
            raise RuntimeError(
                f"the broker did not take the message within {timeout:g} s"
            ) from None

    def _queue_tool_message(self, item: _ToolMessage) -> None:
        self._tool_messages.append(item)
        self._wake.set()

    # -- the companion ----------------------------------------------------------------------

    async def run(self) -> None:
        """Connect, serve, and reconnect with backoff until cancelled."""
        import aiomqtt

        from daemon.backoff import delays

        self._loop = asyncio.get_running_loop()
        s = self.settings
        will = aiomqtt.Will(self.topic("availability"), b"offline", qos=1, retain=True)
        tls = aiomqtt.TLSParameters(ca_certs=s.ca_file or None) if s.tls else None
        base = min(0.5, s.reconnect_max)
        backoff = delays(base, s.reconnect_max)
        stopping = False
        while True:
            try:
                async with aiomqtt.Client(
                    s.host,
                    s.port,
                    username=s.username or None,
                    password=self.password,
                    identifier=f"voiced-{self.node}",
                    will=will,
                    tls_params=tls,
                    keepalive=s.keepalive,
                    timeout=10.0,
                ) as client:
                    self._client = client
                    try:
                        await self._on_connect(client)
                        backoff = delays(
                            base, s.reconnect_max
                        )  # a connection that worked resets it
                        await self._serve(client)
                    except asyncio.CancelledError:
                        stopping = True
                        # A clean stop sends no last will: say "offline" ourselves (QoS 0:
                        # written before our DISCONNECT, no acknowledgement to wait for while
                        # the supervisor winds down). Also when the stop comes while we are
                        # still announcing ourselves: "online" is already out by then.
                        with contextlib.suppress(Exception):
                            await asyncio.wait_for(
                                client.publish(
                                    self.topic("availability"), b"offline", qos=0, retain=True
                                ),
                                1.0,
                            )
                        raise
            except aiomqtt.MqttError as exc:
                task = asyncio.current_task()
                if stopping or (task is not None and task.cancelling()):
                    # Stopped while the broker is gone: the client's DISCONNECT (or its
                    # connect) failed and replaced our CancelledError with an MqttError.
                    # Retrying here would swallow the stop and keep this task alive for
                    # ever (the supervisor, or asyncio.Runner, waits on it: seen as a hang).
                    raise asyncio.CancelledError() from exc
                log.warning("MQTT broker %s:%d: %s; retrying", s.host, s.port, exc)
            finally:
                self._client = None
                self.connected.clear()
            # Full jitter, but never a busy loop against a broker that refuses at once.
            await asyncio.sleep(max(0.05, next(backoff)))

    async def _on_connect(self, client: Any) -> None:
        self.connects += 1
        await client.publish(self.topic("availability"), b"online", qos=1, retain=True)
        for topic, config in self.discovery().items():
            await client.publish(topic, json.dumps(config).encode(), qos=1, retain=True)
        self._refresh()
        self._changed.clear()  # every value goes out here; later changes are marked again
        for rel, value in list(self._values.items()):
            await client.publish(self.topic(rel), value.encode(), qos=0, retain=True)
        for _, extra in ENTITIES.values():
            if "command_topic" in extra:
                await client.subscribe(self.topic(extra["command_topic"]), qos=1)
        self.connected.set()
        log.info(
            "MQTT connected to %s:%d as %s (Home Assistant discovery published)",
            self.settings.host,
            self.settings.port,
            self.prefix,
        )

    async def _serve(self, client: Any) -> None:
        # Two helpers of this companion's task (the supervisor owns it), ended with this
        # connection: the diagnostics ticker and the one publisher of state and tool messages.
        loop = asyncio.get_running_loop()
        helpers = [
            loop.create_task(self._diagnostics(), name="mqtt-diagnostics"),
            loop.create_task(self._publisher(client), name="mqtt-publisher"),
        ]
        try:
            async for message in client.messages:
                self._command(str(message.topic), bytes(message.payload or b""))
        finally:
            for helper in helpers:
                helper.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            for *_, done in self._tool_messages:
                if not done.done():
                    done.set_exception(RuntimeError("the MQTT broker connection was lost"))
            self._tool_messages.clear()

    async def _diagnostics(self) -> None:
        while True:
            await asyncio.sleep(self.diagnostics_period)
            self._refresh()

    async def _publisher(self, client: Any) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._tool_messages:
                topic, payload, qos, retain, done = self._tool_messages.pop(0)
                if not done.set_running_or_notify_cancel():
                    continue  # its tool gave up waiting
                try:
                    await client.publish(topic, payload, qos=qos, retain=retain)
                except Exception as exc:
                    done.set_exception(exc)
                else:
                    done.set_result(None)
            while self._changed:
                relative = next(iter(self._changed))
                del self._changed[relative]
                await self._publish_quietly(relative, self._values[relative])

    def _refresh(self) -> None:
        try:
            st = self.status()
        except Exception:  # status must never take the bridge down
            log.exception("! status for MQTT failed")
            return
        diag = {
            k: (round(float(st[k]), 1) if st.get(k) is not None else None)
            for k in ("connection_age", "session_age")
        }
        self.update("diagnostics", json.dumps(diag, sort_keys=True))
        if self.device is not None:
            self.update("volume", str(round(self.device.get_volume() * 100)))
            self.update("mute", "ON" if self.device.is_muted() else "OFF")

    async def _publish_quietly(self, relative: str, value: str) -> None:
        client = self._client
        if client is None:
            return
        try:
            await client.publish(self.topic(relative), value.encode(), qos=0, retain=True)
        except Exception as exc:  # the reconnect loop notices; state goes out again then
            log.debug("MQTT publish of %s failed: %s", relative, exc)

    def _command(self, topic: str, payload: bytes) -> None:
        """A command from Home Assistant (loop thread)."""
        rel = topic[len(self.prefix) + 1 :] if topic.startswith(self.prefix + "/") else topic
        text = payload.decode("utf-8", "replace").strip()
        self.commands += 1
        log.info("MQTT command %s %r", rel, text[:80])
        try:
            if rel == "volume/set":
                self.device.set_volume(min(100.0, max(0.0, float(text))) / 100.0)
                self._refresh()
            elif rel == "mute/set":
                self.device.set_muted(text.upper() == "ON")
                self._refresh()
            elif rel == "talk/set":
                on = text.upper() == "ON"
                ok = self._ask({"cmd": "ptt", "action": "start" if on else "stop"})
                # Refused (muted): the switch springs back, so Home Assistant shows the truth.
                self.update("talk", "ON" if on and ok else "OFF")
            elif rel == "new_conversation/press":
                self._ask({"cmd": "new-session"})
            elif rel == "announce/set":
                if self._ask({"cmd": "announce", "text": text}):
                    self.update("announce", text)
            elif rel == "instruct/set":
                if self._ask({"cmd": "instruct", "text": text}):
                    self.update("instruct", text)
            else:
                log.warning("MQTT: no command on topic %s", topic)
        except (ValueError, TypeError) as exc:
            log.warning("MQTT command %s %r refused: %s", rel, text[:80], exc)

    def _ask(self, request: dict[str, Any]) -> bool:
        reply = self.dispatch(request)
        if not reply.get("ok"):
            log.warning("MQTT command %s refused: %s", request["cmd"], reply.get("error"))
            return False
        return True
