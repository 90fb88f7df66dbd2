"""
What a tool does: the actions of ``[[tools]]`` entries, and the built-in tools.

Each ``[[tools]]`` table has exactly one action key (README "Tools"):

* ``gpio = {pin = 17, pwm = false, active_high = true}`` — a gpiozero ``OutputDevice``
  (``PWMOutputDevice`` with ``pwm = true``) on the pin factory the button and LED use.
  The call's ``on`` (boolean) or, for PWM, ``level`` (0..1) sets it.
* ``command = {argv = ["/usr/local/bin/garage", "{door}"], max_output = 2000}`` — a
  process, never a shell. An argv element that is exactly ``"{param}"`` becomes the
  checked value of that parameter, as one element; nothing else is substituted, so no
  argument can add an element, an option or a shell word. A timeout kills it; its
  output is truncated.
* ``http = {method = "POST", url = "http://…/{room}", body = {…}, headers = {…}}`` —
  urllib on an executor thread, bounded by the tool's timeout. ``{param}`` in the URL is
  percent-encoded; a body string that is exactly ``"{param}"`` becomes the typed value;
  the body goes as JSON.
* ``mqtt = {topic = "home/porch/set", payload = "{on}", qos = 0, retain = false}`` —
  (no payload: the arguments as JSON) published through the ``[mqtt]`` broker
  connection (daemon/runtime/homeassistant.py).
* ``builtin = "set_volume"`` (or ``get_volume``, ``stop``, ``mute``,
  ``new_conversation``, ``set_timer``) — the device's own tools; name, description and
  parameters default to the built-in's.

Everything here is checked when the configuration is read (:func:`parse_tools`,
raising ``ConfigError`` naming ``tools[i].key``) and built against the running
device later (:func:`build_tools`), once the pins and the broker exist.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import signal
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import AbstractSet, Any, Callable, Mapping, Protocol

from daemon.errors import ConfigError
from daemon.runtime.tools import (
    DEFAULT_TIMEOUT,
    SCHEDULING,
    CallControl,
    ToolSpec,
    check_schema,
)

__all__ = [
    "ToolContext",
    "Device",
    "parse_tools",
    "check_pins",
    "build_tools",
    "close_tools",
    "BUILTINS",
    "VolumeStore",
    "GpioAction",
    "CommandAction",
    "HttpAction",
    "MqttAction",
    "BuiltinAction",
]

log = logging.getLogger(__name__)

_PLACEHOLDER = re.compile(r"^\{([A-Za-z0-9_-]+)\}$")
_ANY_BRACE = re.compile(r"\{([A-Za-z0-9_-]+)\}")
_MAX_OUTPUT = 2000
_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
"""The whole environment of a command is PATH (this) and LANG: nothing of the daemon's."""
_TOOL_KEYS = {"name", "description", "parameters", "timeout", "behavior", "scheduling"}
_ACTION_KEYS = ("gpio", "command", "http", "mqtt", "builtin")


class Device(Protocol):
    """What the built-ins act on (daemon/app/controls.py ``Controls`` implements it)."""

    def get_volume(self) -> float: ...
    def set_volume(self, level: float) -> None: ...
    def stop_speaking(self) -> None: ...
    def set_muted(self, muted: bool) -> None: ...
    def is_muted(self) -> bool: ...
    def new_session(self) -> None: ...
    def start_timer(self, seconds: float, label: str) -> None: ...


@dataclass
class ToolContext:
    """The running device the actions are built against."""

    pin_factory: Any = None
    """gpiozero pin factory of the button and LED (None: gpiozero's default)."""
    publish: Callable[[str, bytes, int, bool, float], None] | None = None
    """``publish(topic, payload, qos, retain, timeout)`` (thread-safe, raises when it cannot)."""
    device: Device | None = None


# -- helpers --------------------------------------------------------------------------------


def _table(value: Any, key: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(key, value, "must be a table")
    return value


def _keys(
    table: Mapping[str, Any], key: str, allowed: set[str], required: AbstractSet[str] = frozenset()
) -> None:
    for k in table:
        if k not in allowed:
            raise ConfigError(
                f"{key}.{k}", table[k], "unknown key; known: " + ", ".join(sorted(allowed))
            )
    for k in sorted(required - set(table)):
        raise ConfigError(f"{key}.{k}", "(missing)", "is required")


_KIND_WORDS = {bool: "true or false", int: "a whole number", str: "a string"}


def _typed(table: Mapping[str, Any], k: str, key: str, kind: type, default: Any) -> Any:
    value = table.get(k, default)
    # TOML's true is a Python int too: a pin or a qos must not be a boolean.
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ConfigError(f"{key}.{k}", value, f"must be {_KIND_WORDS.get(kind, kind.__name__)}")
    return value


def _fill(template: Any, args: Mapping[str, Any]) -> Any:
    """A JSON template with every string that is exactly "{param}" replaced by the value
    (missing optional parameters become null)."""
    if isinstance(template, str):
        m = _PLACEHOLDER.match(template)
        return args.get(m.group(1)) if m else template
    if isinstance(template, dict):
        return {k: _fill(v, args) for k, v in template.items()}
    if isinstance(template, list):
        return [_fill(v, args) for v in template]
    return template


def _placeholders(template: Any) -> set[str]:
    if isinstance(template, str):
        m = _PLACEHOLDER.match(template)
        return {m.group(1)} if m else set()
    if isinstance(template, dict):
        return set().union(*(_placeholders(v) for v in template.values())) if template else set()
    if isinstance(template, list):
        return set().union(*(_placeholders(v) for v in template)) if template else set()
    return set()


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value)  # true/false, numbers as JSON spells them


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + f"… ({len(text) - limit} more characters)"


# -- actions --------------------------------------------------------------------------------


@dataclass(frozen=True)
class GpioAction:
    pin: int
    pwm: bool = False
    active_high: bool = True
    kind: str = "gpio"
    _device: Any = field(default=None, compare=False, repr=False)

    def default_parameters(self) -> dict[str, Any]:
        if self.pwm:
            return {
                "type": "object",
                "properties": {
                    "level": {
                        "type": "number",
                        "minimum": 0,
                        "maximum": 1,
                        "description": "output level, 0 (off) to 1 (full)",
                    }
                },
                "required": ["level"],
            }
        return {
            "type": "object",
            "properties": {
                "on": {"type": "boolean", "description": "true to switch on, false to switch off"}
            },
            "required": ["on"],
        }

    def build(self, ctx: ToolContext) -> GpioAction:
        from gpiozero import OutputDevice, PWMOutputDevice

        cls = PWMOutputDevice if self.pwm else OutputDevice
        device = cls(
            self.pin, active_high=self.active_high, initial_value=False, pin_factory=ctx.pin_factory
        )
        return replace(self, _device=device)

    def run(self, args: Mapping[str, Any], control: CallControl) -> Mapping[str, Any]:
        if self.pwm and "level" in args:
            self._device.value = float(args["level"])
            return {"pin": self.pin, "level": self._device.value}
        on = bool(args.get("on", True))
        self._device.value = 1 if on else 0
        return {"pin": self.pin, "on": bool(self._device.value)}

    def close(self) -> None:
        if self._device is not None:
            self._device.close()


@dataclass(frozen=True)
class CommandAction:
    argv: tuple[str, ...]
    max_output: int = _MAX_OUTPUT
    kind: str = "command"

    def build(self, ctx: ToolContext) -> CommandAction:
        return self

    def command_line(self, args: Mapping[str, Any]) -> list[str]:
        """The argv for checked ``args``: a "{param}" element is the value, as one element
        (a missing optional parameter drops the element); nothing else changes."""
        out = []
        for element in self.argv:
            m = _PLACEHOLDER.match(element)
            if m is None:
                out.append(element)
            elif m.group(1) in args:
                out.append(_as_text(args[m.group(1)]))
        return out

    def run(self, args: Mapping[str, Any], control: CallControl) -> Mapping[str, Any]:
        argv = self.command_line(args)
        # No shell, no stdin, a minimal environment, its own process group (killed whole).
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            shell=False,
            start_new_session=True,
            env={"PATH": _PATH, "LANG": "C.UTF-8"},
        )
        # Cancel or deadline: the runner kills the group from the loop (no watcher thread);
        # this executor thread then sees the pipe close and reaps the process.
        control.on_stop(functools.partial(_kill_group, proc))
        assert proc.stdout is not None
        kept, dropped, tail = bytearray(), 0, b""
        limit = self.max_output * 4  # bytes; the text is truncated to max_output below
        with proc.stdout:
            # Keep the head, count the rest: a chatty program never blocks on a full pipe
            # nor fills the daemon's memory.
            while chunk := os.read(proc.stdout.fileno(), 65536):
                room = max(0, limit - len(kept))
                kept += chunk[:room]
                dropped += len(chunk) - min(room, len(chunk))
                tail = chunk
        returncode = proc.wait()
        if dropped:  # as the text is stripped, so is what was dropped of it
            dropped = max(0, dropped - (len(tail) - len(tail.rstrip())))
        text = kept.decode("utf-8", "replace").strip()
        more = len(text) - self.max_output + dropped
        if more > 0:
            text = text[: self.max_output] + f"… ({more} more characters)"
        result: dict[str, Any] = {"exit_code": returncode, "output": text}
        if returncode != 0:
            result["error"] = f"{Path(argv[0]).name} exited with {returncode}"
        return result


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the process group of ``proc`` unless it was already reaped (loop thread; a
    signal never blocks)."""
    if proc.returncode is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@dataclass(frozen=True)
class HttpAction:
    url: str
    method: str = "POST"
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    token_file: str = ""
    max_output: int = _MAX_OUTPUT
    timeout: float = DEFAULT_TIMEOUT
    kind: str = "http"

    def build(self, ctx: ToolContext) -> HttpAction:
        return self

    def request(self, args: Mapping[str, Any]) -> urllib.request.Request:
        url = _ANY_BRACE.sub(
            lambda m: urllib.parse.quote(_as_text(args.get(m.group(1), "")), safe=""), self.url
        )
        headers = dict(self.headers)
        data = None
        if self.body is not None:
            data = json.dumps(_fill(self.body, args)).encode()
            headers.setdefault("Content-Type", "application/json")
        if self.token_file:
            token = Path(self.token_file).read_text(encoding="utf-8").strip()
            headers["Authorization"] = f"Bearer {token}"
        return urllib.request.Request(url, data=data, headers=headers, method=self.method)

    def run(self, args: Mapping[str, Any], control: CallControl) -> Mapping[str, Any]:
        try:
            with urllib.request.urlopen(self.request(args), timeout=self.timeout) as resp:
                status, raw = resp.status, resp.read(self.max_output * 4)
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read(self.max_output * 4)
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            return {"error": f"request failed: {reason}"}
        text = raw.decode("utf-8", "replace")
        try:
            body: Any = json.loads(text)
            if len(text) > self.max_output:
                body = _truncate(text, self.max_output)
        except ValueError:
            body = _truncate(text.strip(), self.max_output)
        result: dict[str, Any] = {"status": status, "body": body}
        if status >= 400:
            result["error"] = f"HTTP {status}"
        return result


@dataclass(frozen=True)
class MqttAction:
    topic: str
    payload: Any = None
    """A template ("{param}" strings filled); None: the call's arguments as JSON."""
    qos: int = 0
    retain: bool = False
    kind: str = "mqtt"
    _publish: Any = field(default=None, compare=False, repr=False)

    def build(self, ctx: ToolContext) -> MqttAction:
        return replace(self, _publish=ctx.publish)

    def message(self, args: Mapping[str, Any]) -> bytes:
        filled = dict(args) if self.payload is None else _fill(self.payload, args)
        return (filled if isinstance(filled, str) else json.dumps(filled)).encode()

    def run(self, args: Mapping[str, Any], control: CallControl) -> Mapping[str, Any]:
        if self._publish is None:
            return {"error": "no MQTT broker is configured"}
        payload = self.message(args)
        self._publish(self.topic, payload, self.qos, self.retain, 5.0)
        return {"published": self.topic, "payload": payload.decode("utf-8", "replace")}


# -- built-ins ------------------------------------------------------------------------------


class VolumeStore:
    """The speaker volume, kept across restarts in the state directory (``volume.json``)."""

    def __init__(self, state_dir: str | os.PathLike[str]) -> None:
        self.path = Path(state_dir) / "volume.json"

    def load(self) -> float | None:
        try:
            value = json.loads(self.path.read_text())["volume"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return float(value) if isinstance(value, (int, float)) and 0 <= value <= 2 else None

    def save(self, volume: float) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"volume": round(volume, 4)}))
        os.replace(tmp, self.path)


# name -> (description, parameters)
BUILTINS: dict[str, tuple[str, dict[str, Any]]] = {
    "set_volume": (
        "Set the loudness of this device's speaker, in percent.",
        {
            "type": "object",
            "properties": {"percent": {"type": "integer", "minimum": 0, "maximum": 100}},
            "required": ["percent"],
        },
    ),
    "get_volume": ("Tell the loudness of this device's speaker, in percent.", {"type": "object"}),
    "stop": ("Stop talking at once (the user said stop).", {"type": "object"}),
    "mute": (
        "Mute or unmute this device's microphone; while muted the button is ignored.",
        {"type": "object", "properties": {"muted": {"type": "boolean"}}, "required": ["muted"]},
    ),
    "new_conversation": ("Forget this conversation and start a new one.", {"type": "object"}),
    "set_timer": (
        "Start a timer on this device; it rings and says the label when it is due.",
        {
            "type": "object",
            "properties": {
                "seconds": {"type": "integer", "minimum": 1, "maximum": 86400},
                "label": {"type": "string", "maxLength": 80},
            },
            "required": ["seconds"],
        },
    ),
}


@dataclass(frozen=True)
class BuiltinAction:
    which: str
    kind: str = "builtin"
    _ctx: Any = field(default=None, compare=False, repr=False)

    def build(self, ctx: ToolContext) -> BuiltinAction:
        # The context, not its device: the device controls exist only once the supervisor
        # does, after the pins were opened (daemon/app/toolsandhome.py binds them then).
        return replace(self, _ctx=ctx)

    def run(self, args: Mapping[str, Any], control: CallControl) -> Mapping[str, Any]:
        device = self._ctx.device if self._ctx is not None else None
        if device is None:
            return {"error": f"{self.which} is not available on this device"}
        if self.which == "set_volume":
            device.set_volume(args["percent"] / 100.0)
            return {"volume_percent": round(device.get_volume() * 100)}
        if self.which == "get_volume":
            return {"volume_percent": round(device.get_volume() * 100)}
        if self.which == "stop":
            device.stop_speaking()
            return {"stopped": True}
        if self.which == "mute":
            device.set_muted(bool(args["muted"]))
            return {"muted": bool(args["muted"])}
        if self.which == "new_conversation":
            device.new_session()
            return {"new_conversation": True}
        # set_timer: on the supervisor's loop (nominal seconds), announced by the core.
        label = str(args.get("label") or f"{args['seconds']} seconds")
        device.start_timer(float(args["seconds"]), label)
        return {"timer": label, "due_in_seconds": args["seconds"]}


# -- parsing and building -------------------------------------------------------------------


def _parse_action(kind: str, value: Any, key: str, params: set[str], timeout: float) -> Any:
    if kind == "builtin":
        if not isinstance(value, str) or value not in BUILTINS:
            raise ConfigError(key, value, "must be one of " + ", ".join(BUILTINS))
        return BuiltinAction(value)
    t = _table(value, key)
    if kind == "gpio":
        _keys(t, key, {"pin", "pwm", "active_high"}, {"pin"})
        pin = _typed(t, "pin", key, int, 0)
        if not 0 <= pin <= 27:
            raise ConfigError(f"{key}.pin", pin, "must be a BCM pin 0..27")
        return GpioAction(
            pin, _typed(t, "pwm", key, bool, False), _typed(t, "active_high", key, bool, True)
        )
    if kind == "command":
        _keys(t, key, {"argv", "max_output"}, {"argv"})
        argv = t["argv"]
        if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
            raise ConfigError(f"{key}.argv", argv, "must be a non-empty list of strings (no shell)")
        if _PLACEHOLDER.match(argv[0]):
            raise ConfigError(
                f"{key}.argv[0]", argv[0], "the program must be fixed, not a parameter"
            )
        for i, a in enumerate(argv):
            m = _PLACEHOLDER.match(a)
            if m and m.group(1) not in params:
                raise ConfigError(f"{key}.argv[{i}]", a, "names no parameter of this tool")
            if not m and "{" in a and _ANY_BRACE.search(a):
                raise ConfigError(
                    f"{key}.argv[{i}]", a, 'a parameter must be a whole element ("{name}")'
                )
        return CommandAction(tuple(argv), _typed(t, "max_output", key, int, _MAX_OUTPUT))
    if kind == "http":
        _keys(t, key, {"url", "method", "body", "headers", "token_file", "max_output"}, {"url"})
        url = _typed(t, "url", key, str, "")
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"{key}.url", url, "must be an http:// or https:// URL")
        for name in _ANY_BRACE.findall(url):
            if name not in params:
                raise ConfigError(f"{key}.url", url, f"{{{name}}} names no parameter of this tool")
        method = _typed(t, "method", key, str, "POST").upper()
        if method not in ("GET", "POST", "PUT", "PATCH", "DELETE"):
            raise ConfigError(f"{key}.method", method, "must be GET, POST, PUT, PATCH or DELETE")
        headers = _table(t.get("headers", {}), f"{key}.headers")
        if not all(isinstance(v, str) for v in headers.values()):
            raise ConfigError(f"{key}.headers", headers, "values must be strings")
        body = t.get("body")
        for name in _placeholders(body):
            if name not in params:
                raise ConfigError(
                    f"{key}.body", body, f"{{{name}}} names no parameter of this tool"
                )
        return HttpAction(
            url,
            method,
            body,
            headers,
            _typed(t, "token_file", key, str, ""),
            _typed(t, "max_output", key, int, _MAX_OUTPUT),
            timeout,
        )
    # mqtt
    _keys(t, key, {"topic", "payload", "qos", "retain"}, {"topic"})
    topic = _typed(t, "topic", key, str, "")
    if not topic or "#" in topic or "+" in topic:
        raise ConfigError(f"{key}.topic", topic, "must be a topic name without wildcards")
    qos = _typed(t, "qos", key, int, 0)
    if qos not in (0, 1, 2):
        raise ConfigError(f"{key}.qos", qos, "must be 0, 1 or 2")
    payload = t.get("payload")
    for name in _placeholders(payload):
        if name not in params:
            raise ConfigError(
                f"{key}.payload", payload, f"{{{name}}} names no parameter of this tool"
            )
    return MqttAction(topic, payload, qos, _typed(t, "retain", key, bool, False))


def parse_tools(raw: Any) -> tuple[ToolSpec, ...]:
    """Check the ``[[tools]]`` array of tables; raise ConfigError naming ``tools[i].key``."""
    if not isinstance(raw, list):
        raise ConfigError("tools", raw, "must be an array of tables ([[tools]])")
    specs: list[ToolSpec] = []
    for i, entry in enumerate(raw):
        key = f"tools[{i}]"
        t = _table(entry, key)
        actions = [k for k in _ACTION_KEYS if k in t]
        if len(actions) != 1:
            raise ConfigError(
                key, sorted(t), "needs exactly one action: " + ", ".join(_ACTION_KEYS)
            )
        kind = actions[0]
        _keys(t, key, _TOOL_KEYS | {kind})
        if kind == "builtin" and (
            not isinstance(t["builtin"], str) or t["builtin"] not in BUILTINS
        ):
            raise ConfigError(
                f"{key}.builtin", t["builtin"], "must be one of " + ", ".join(BUILTINS)
            )
        builtin = BUILTINS[t["builtin"]] if kind == "builtin" else None
        name = t.get("name", t["builtin"] if builtin else None)
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}", name):
            raise ConfigError(
                f"{key}.name",
                name,
                "must be a function name: a letter or _, then letters, digits, _ . - (at most 64)",
            )
        if any(s.name == name for s in specs):
            raise ConfigError(f"{key}.name", name, "is already the name of another tool")
        description = t.get("description", builtin[0] if builtin else "")
        if not isinstance(description, str) or not description.strip():
            raise ConfigError(
                f"{key}.description",
                description,
                "must say what the tool does (the model chooses tools by it)",
            )
        timeout = t.get("timeout", DEFAULT_TIMEOUT)
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, (int, float))
            or not 0 < timeout <= 600
        ):
            raise ConfigError(f"{key}.timeout", timeout, "must be seconds, > 0 and <= 600")
        behavior = t.get("behavior", "")
        if behavior not in ("", "BLOCKING", "NON_BLOCKING"):
            raise ConfigError(f"{key}.behavior", behavior, 'must be "BLOCKING" or "NON_BLOCKING"')
        scheduling = t.get("scheduling", "")
        if scheduling not in ("",) + SCHEDULING:
            raise ConfigError(
                f"{key}.scheduling", scheduling, "must be one of " + ", ".join(SCHEDULING)
            )
        parameters = t.get("parameters")
        if parameters is None and kind == "gpio":
            parameters = GpioAction(
                0, bool(_table(t["gpio"], f"{key}.gpio").get("pwm"))
            ).default_parameters()
        elif parameters is None:
            parameters = builtin[1] if builtin else {"type": "object"}
        check_schema(parameters, f"{key}.parameters")
        params = set(parameters.get("properties", {}))
        action = _parse_action(kind, t[kind], f"{key}.{kind}", params, float(timeout))
        specs.append(
            ToolSpec(
                name, description.strip(), parameters, action, float(timeout), behavior, scheduling
            )
        )
    return tuple(specs)


def check_pins(specs: tuple[ToolSpec, ...], used: Mapping[int, str]) -> None:
    """A GPIO tool on a pin the button, the LED or another tool already uses is a
    ConfigError naming ``tools[i].gpio.pin`` (gpiozero would refuse it at start)."""
    taken = dict(used)
    for i, spec in enumerate(specs):
        if isinstance(spec.action, GpioAction):
            pin = spec.action.pin
            if pin in taken:
                raise ConfigError(f"tools[{i}].gpio.pin", pin, f"is already used by {taken[pin]}")
            taken[pin] = f"tools[{i}] ({spec.name})"


def build_tools(specs: tuple[ToolSpec, ...], ctx: ToolContext) -> tuple[ToolSpec, ...]:
    """The specs with their actions bound to the running device (pins opened)."""
    return tuple(replace(s, action=s.action.build(ctx)) for s in specs)


def close_tools(specs: tuple[ToolSpec, ...]) -> None:
    """Release what the actions hold (GPIO pins)."""
    for s in specs:
        close = getattr(s.action, "close", None)
        if close is not None:
            try:
                close()
            except Exception:
                log.exception("closing tool %s failed", s.name)
