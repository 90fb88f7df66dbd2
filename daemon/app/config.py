"""
Configuration: one TOML file, a few environment overrides, validated in one place.

Every subsystem has a frozen settings dataclass next to the code that uses it
(``SessionSettings`` in ``daemon.session``, ``MicSettings`` in ``hw.mic``, …);
this module only reads ``/etc/voiced/voiced.toml`` (or ``--config``), checks
every key against the dataclass of its section — unknown keys, wrong types and
out-of-range values are :class:`~daemon.errors.ConfigError` naming the key, the
value and what is allowed — and builds those dataclasses once. Nothing else in
the daemon reads the file or ``os.environ`` (STYLE.md §7 rule 6).

The file's sections map to dataclasses through :data:`SECTIONS`; a section that
is absent gets its defaults. ``voiced config`` prints the effective result with
secrets redacted.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import os
import textwrap
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Mapping

from daemon.errors import ConfigError

__all__ = [
    "DEFAULT_PATH",
    "LiveSettings",
    "ServiceSettings",
    "Config",
    "Secret",
    "load",
    "parse",
    "peek",
    "resolve_api_key",
    "to_toml",
    "example_toml",
    "field_docs",
    "SECTIONS",
    "ENV_OVERRIDES",
]

DEFAULT_PATH = Path("/etc/voiced/voiced.toml")


class Secret(str):
    """A string that never shows itself in repr, str() of containers, or logs."""

    def __repr__(self) -> str:
        return "Secret('***')"

    def reveal(self) -> str:
        return str.__str__(self)


@dataclass(frozen=True)
class LiveSettings:
    """Which Live API to talk to, and as whom (``[live]``)."""

    endpoint: str = "auto"
    """"auto" (the Gemini API when a key is found, else the embedded local server), "gemini",
    "vertex", "local" (the embedded local server), or a ws(s):// URL of any Live server."""
    api_version: str = "v1beta"
    """Gemini API version in the URL; v1beta is the one Live works on (LIVE_PROTOCOL.md §1)."""
    model: str = "gemini-3.8-live"
    """Model id; Vertex ids are expanded to projects/…/models/… from project and location."""
    voice: str = ""
    """Prebuilt voice name (e.g. "Kore", "Puck"); empty for the model's default."""
    language: str = ""
    """BCP-47 language for speech (e.g. "en-US"); empty for the model's default."""
    system_instruction: str = "You are a helpful voice assistant on a small device. Answer briefly."
    """What the model is told about its job.
    SIGHUP or `voiced instruct` changes it mid-conversation."""
    key_file: str = ""
    """A file holding the API key (used when there is no systemd credential)."""
    project: str = ""
    """Vertex AI project id (endpoint = "vertex")."""
    location: str = "us-central1"
    """Vertex AI location (endpoint = "vertex")."""
    local_time_scale: float = 1.0
    """Time scale of the embedded local server (1 = real limits; tests and the demo go faster)."""


@dataclass(frozen=True)
class ServiceSettings:
    """Where the daemon keeps its files, how it logs (``[service]``)."""

    hw: Literal["pi", "sim"] = "pi"
    """Hardware backend: "pi" (PyAudio + gpiozero) or "sim" (WAV files + mock pins)."""
    state_dir: str = "/var/lib/voiced"
    """Resumption handle and conversation history survive restarts here (StateDirectory=)."""
    runtime_dir: str = "/run/voiced"
    """The control socket lives here (RuntimeDirectory=)."""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """INFO: one line per event a human cares about. DEBUG: the wire."""
    control_group: str = "voiced"
    """Group allowed to use the control socket (mode 0660)."""
    debug_commands: bool = False
    """Test-only control commands (debug-wedge-loop, debug-stall-mic) that wedge the daemon on
    purpose to prove the systemd watchdog; never enable on a device in use."""


# Section name -> "module:Class". Imported lazily so that `voiced config` on a laptop works
# without the hardware libraries being importable.
SECTIONS: dict[str, str] = {
    "live": "daemon.app.config:LiveSettings",
    "session": "daemon.vocabulary:SessionSettings",
    "mic": "hw.mic:MicSettings",
    "speaker": "hw.speaker:SpeakerSettings",
    "button": "hw.button:ButtonSettings",
    "led": "hw.led:LedSettings",
    "gpio": "hw.gpio:GpioSettings",
    "earcons": "hw.earcons:EarconSettings",
    "service": "daemon.app.config:ServiceSettings",
    # Home Assistant over MQTT (issue 11); off while [mqtt] host is empty.
    "mqtt": "daemon.runtime.homeassistant:MqttSettings",
}

# Environment overrides, for the few things people set per machine.
ENV_OVERRIDES: dict[str, tuple[str, str]] = {
    "VOICED_ENDPOINT": ("live", "endpoint"),
    "VOICED_MODEL": ("live", "model"),
    "VOICED_HW": ("service", "hw"),
    "VOICED_LOG_LEVEL": ("service", "log_level"),
    "VOICED_MIC_DEVICE": ("mic", "device"),
    "VOICED_SPEAKER_DEVICE": ("speaker", "device"),
    # gpiozero's own variable: honoured, but as a choice of ours (hw/gpio.py), never its
    # fallback chain.
    "GPIOZERO_PIN_FACTORY": ("gpio", "pin_factory"),
}

# Settings fields that are not keys of the file: derived from [[tools]] and [live] model
# (daemon/tools.session_tools, in :func:`parse`) or from the machine (local_speech: app.py),
# so they are neither read, nor printed, nor documented.
DERIVED: frozenset[str] = frozenset(
    {"session.tools", "session.tools_blocking", "session.tool_scheduling", "session.local_speech"}
)

# Extra checks beyond the type: "section.key" -> (predicate, what is allowed).
CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "live.endpoint": (
        lambda v: v in ("auto", "gemini", "vertex", "local") or v.startswith(("ws://", "wss://")),
        'one of "auto", "gemini", "vertex", "local", or a ws:// / wss:// URL',
    ),
    "live.api_version": (lambda v: v in ("v1alpha", "v1beta"), 'one of "v1alpha", "v1beta"'),
    "live.model": (lambda v: bool(v.strip()), 'a model id such as "gemini-3.8-live"'),
    "live.local_time_scale": (lambda v: 0 < v <= 100_000, "a number > 0 (1 = real time)"),
}


@dataclass(frozen=True)
class Config:
    """The effective configuration: one settings object per section."""

    sections: Mapping[str, Any]
    source: str = "defaults"
    api_key: Secret | None = field(default=None, repr=False)
    tools: tuple[Any, ...] = ()
    """The ``[[tools]]`` entries, checked (``daemon.runtime.tools.ToolSpec``; README "Tools")."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self.sections[name]
        except KeyError:
            raise AttributeError(name) from None


def _import(target: str) -> type:
    module, _, name = target.partition(":")
    mod = __import__(module, fromlist=[name])
    return getattr(mod, name)


def _describe(tp: Any) -> str:
    if tp is bool:
        return "true or false"
    if tp is int:
        return "a whole number"
    if tp is float:
        return "a number"
    if tp is str:
        return "a string"
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (types.UnionType, typing.Union):
        return " or ".join(
            "nothing (omit the key)" if a is type(None) else _describe(a)
            for a in typing.get_args(tp)
        )
    if origin is tuple:
        args = typing.get_args(tp)
        return f"a list (each {_describe(args[0])})" if args else "a list"
    return getattr(tp, "__name__", str(tp))


def _coerce(key: str, value: Any, tp: Any) -> Any:
    """Return *value* as type *tp*, or raise ConfigError naming the key."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif origin is Literal:
        if value in typing.get_args(tp):
            return value
    elif origin in (types.UnionType, typing.Union):
        for arg in typing.get_args(tp):
            if arg is type(None):
                continue
            try:
                return _coerce(key, value, arg)
            except ConfigError:
                pass
    elif origin is tuple:
        args = typing.get_args(tp)
        if isinstance(value, list):
            inner = args[0] if args else Any
            return tuple(_coerce(f"{key}[{i}]", v, inner) for i, v in enumerate(value))
    raise ConfigError(key, value, f"must be {_describe(tp)}")


def _build(section: str, cls: type, values: Mapping[str, Any]) -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f"{section}.{f.name}" not in DERIVED]
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        dotted = f"{section}.{key}"
        if key not in names:
            raise ConfigError(
                dotted, value, "unknown key; known keys in [" + section + "]: " + ", ".join(names)
            )
        kwargs[key] = _coerce(dotted, value, hints[key])
        check = CHECKS.get(dotted)
        if check is not None and not check[0](kwargs[key]):
            raise ConfigError(dotted, value, f"must be {check[1]}")
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        # A settings class's own __post_init__ check: keep its words, and name the key when
        # the message starts with one (they say "long_hold_action 'x': must be …").
        text = str(exc)
        first = text.split(" ", 1)[0]
        if first in names:
            raise ConfigError(
                f"{section}.{first}",
                values.get(first, getattr(cls, first, None)),
                text.split(": ", 1)[-1],
            ) from None
        raise ConfigError(section, dict(values), text) from None


def parse(
    data: Mapping[str, Any], environ: Mapping[str, str] | None = None, source: str = "<memory>"
) -> Config:
    """Build a :class:`Config` from parsed TOML *data* and environment overrides."""
    merged: dict[str, dict[str, Any]] = {}
    tools: tuple[Any, ...] = ()
    for section, values in data.items():
        if section == "tools":
            # [[tools]] is an array of tables, not a settings section (daemon/runtime/actions.py).
            from daemon.runtime.actions import parse_tools

            tools = parse_tools(values)
            continue
        if section not in SECTIONS:
            raise ConfigError(
                section,
                "[...]",
                "unknown section; known sections: " + ", ".join([*SECTIONS, "tools"]),
            )
        if not isinstance(values, dict):
            raise ConfigError(section, values, "must be a [section] table")
        merged[section] = dict(values)
    for var, (section, key) in ENV_OVERRIDES.items():
        if environ and environ.get(var):
            merged.setdefault(section, {})[key] = _env_value(var, environ[var])
    sections = {
        name: _build(name, _import(target), merged.get(name, {}))
        for name, target in SECTIONS.items()
    }
    if tools:
        from daemon.runtime.actions import check_pins

        led = sections["led"]
        used = {sections["button"].pin: "button.pin"}
        used.update(
            {p: "led.rgb_pins" for p in led.rgb_pins} if led.rgb_pins else {led.pin: "led.pin"}
        )
        check_pins(tools, used)
        # The core's view of the tools (names, blocking) follows the declarations.
        from daemon.runtime.tools import session_tools

        sections["session"] = dataclasses.replace(
            sections["session"], **session_tools(tools, sections["live"].model)
        )
    return Config(sections=sections, source=source, tools=tools)


def _env_value(var: str, text: str) -> Any:
    # Environment values are strings; numbers and booleans are parsed as TOML would.
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def load(
    path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    required: bool = False,
) -> Config:
    """Read the TOML file at *path* (default /etc/voiced/voiced.toml) and build the config.

    A missing default file means "all defaults"; a missing file that was asked for
    (``required``) is an error. The API key is resolved too (:func:`resolve_api_key`).
    """
    environ = os.environ if environ is None else environ
    p = Path(path) if path is not None else Path(environ.get("VOICED_CONFIG", DEFAULT_PATH))
    data: dict[str, Any] = {}
    source = "defaults"
    if p.exists():
        try:
            with p.open("rb") as f:
                data = tomllib.load(f)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(str(p), "...", f"is not valid TOML: {exc}") from None
        except UnicodeDecodeError as exc:
            # tomllib decodes the bytes itself and lets this escape (found by fuzzing).
            raise ConfigError(
                str(p), "...", f"is not UTF-8 text (TOML must be): {exc.reason} at byte {exc.start}"
            ) from None
        except OSError as exc:
            raise ConfigError(str(p), "...", f"cannot be read: {exc.strerror}") from None
        source = str(p)
    elif required or path is not None:
        raise ConfigError("--config", str(p), "file not found")
    config = parse(data, environ, source)
    key = resolve_api_key(config.live, environ)
    return dataclasses.replace(config, api_key=key)


def peek(
    section: str,
    key: str | None,
    default: Any,
    path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Any:
    """One raw value of the config file (``key`` None: the whole table),
    or ``default`` when the file is missing,
    unreadable (a user outside group voiced), broken, or lacks it — never an error.

    For the callers that must not load the whole configuration (and the key) just to
    find one thing: ``voiced status`` looking for the runtime directory, a start-up
    that failed on a bad config deciding whether there is an LED to blink.
    """
    environ = os.environ if environ is None else environ
    p = Path(path) if path is not None else Path(environ.get("VOICED_CONFIG", DEFAULT_PATH))
    try:
        with p.open("rb") as f:
            table = tomllib.load(f).get(section, {})
            value = table if key is None else table.get(key, default)
    except (OSError, ValueError, AttributeError):  # ValueError: bad TOML, bad UTF-8
        return default
    return value if isinstance(value, type(default)) or default is None else default


def resolve_api_key(live: LiveSettings, environ: Mapping[str, str]) -> Secret | None:
    """The API key from, in order: the systemd credential ``api-key``, ``live.key_file``,
    ``VOICED_API_KEY``. Returns None when there is none (the embedded server needs none)."""
    creds = environ.get("CREDENTIALS_DIRECTORY")
    candidates: list[tuple[str, Path]] = []
    if creds:
        candidates.append(("systemd credential api-key", Path(creds) / "api-key"))
    if live.key_file:
        candidates.append(("live.key_file", Path(live.key_file)))
    for what, path in candidates:
        try:
            text = path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            if what == "live.key_file":
                raise ConfigError("live.key_file", live.key_file, "file not found") from None
            continue
        except (OSError, UnicodeDecodeError) as exc:
            # Name the file, never its content: no chained exception that could carry it.
            raise ConfigError(what, str(path), f"cannot be read ({type(exc).__name__})") from None
        if text:
            return Secret(text)
        if what == "live.key_file":
            raise ConfigError(what, str(path), "the file is empty; put the API key in it")
        # An empty credential means "no key": tools/install.sh --no-key leaves an empty
        # /etc/voiced/api-key because systemd 252 refuses to start a unit whose
        # LoadCredential= file is missing. The next source is asked.
    env_key = environ.get("VOICED_API_KEY", "").strip()
    return Secret(env_key) if env_key else None


def to_toml(config: Config) -> str:
    """The effective configuration as TOML, secrets redacted (``voiced config``)."""
    lines = [
        f"# effective configuration (from {config.source})",
        f"# api key: {'set (redacted)' if config.api_key else 'none'}",
    ]
    for name, settings in config.sections.items():
        lines.append(f"\n[{name}]")
        for f in dataclasses.fields(settings):
            if f"{name}.{f.name}" in DERIVED:
                continue
            value = getattr(settings, f.name)
            if value is None:
                lines.append(f"# {f.name} = (not set)")  # TOML has no null
            else:
                lines.append(f"{f.name} = {_toml_value(value)}")
    for spec in config.tools:
        lines += [
            "\n[[tools]]",
            f"name = {_toml_value(spec.name)}",
            f"description = {_toml_value(spec.description)}",
            f"# action: {spec.action.kind}, timeout {spec.timeout:g} s",
        ]
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, Secret):
        return '"***"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{text}"'


def field_docs(cls: type) -> dict[str, str]:
    """The attribute docstrings of a settings dataclass (the string under each field)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    docs: dict[str, str] = {}
    for node, after in zip(body, body[1:]):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def example_toml() -> str:
    """A documented configuration file with every key at its default, commented out.

    ``systemd/voiced.toml.example`` is this text (a test keeps them equal); the
    installer copies it to /etc/voiced/voiced.toml.
    """
    out = (
        [
            "# voiced configuration: /etc/voiced/voiced.toml",
            "# Every key is shown at its default, commented out: uncomment what you change.",
            "# `voiced config` prints the effective configuration; `sudo systemctl reload voiced`",
            "# applies a new system instruction mid-conversation (other keys need a restart).",
            "# Environment overrides:",
        ]
        + [f"#   {var} sets {sec}.{key}" for var, (sec, key) in ENV_OVERRIDES.items()]
        + ["# The API key never goes here: see the README (systemd credential or live.key_file)."]
    )
    for name, target in SECTIONS.items():
        cls = _import(target)
        doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        out += ["", f"[{name}]"] + ([f"# {doc}"] if doc else [])
        docs = field_docs(cls)
        for f in dataclasses.fields(cls):
            if f"{name}.{f.name}" in DERIVED:
                continue
            for line in textwrap.wrap(docs.get(f.name, ""), 96):
                out.append(f"#   {line}")
            default = getattr(cls, f.name, None) if f.default is not dataclasses.MISSING else None
            if f.default_factory is not dataclasses.MISSING:
                default = f.default_factory()
            if default is None:
                out.append(f"# {f.name} =   (not set)")
            else:
                out.append(f"# {f.name} = {_toml_value(default)}")
    return "\n".join(out + _TOOLS_EXAMPLE) + "\n"


# [[tools]] is an array of tables, so it has no defaults to list: a commented example of
# each action instead (daemon/runtime/actions.py, README "Tools").
_TOOLS_EXAMPLE = [
    "",
    "# [[tools]]: functions the model may call (none by default). Each has a name, a description,",
    "# a JSON schema of its parameters (type, properties, required, enum, minimum, maximum, maxLength),",  # noqa: E501
    '# an optional timeout (seconds, default 10), behavior ("BLOCKING"/"NON_BLOCKING"), scheduling',
    '# ("SILENT"/"WHEN_IDLE"/"INTERRUPT") and exactly one action: gpio, command, http, mqtt or builtin.',  # noqa: E501
    "# [[tools]]",
    '# name = "porch_light"',
    '# description = "Switch the porch light on or off."',
    "# gpio = { pin = 17 }                       # parameter `on` (boolean); pwm = true takes `level` 0..1",  # noqa: E501
    "# [[tools]]",
    '# name = "garage_door"',
    '# description = "Open or close a garage door."',
    '# parameters = { type = "object", properties = { door = { type = "string", enum = ["left", "right"] } }, required = ["door"] }',  # noqa: E501
    '# command = { argv = ["/usr/local/bin/garage", "{door}"] }   # never a shell; "{door}" is one argv element',  # noqa: E501
    "# [[tools]]",
    '# name = "scene"',
    '# description = "Turn on a Home Assistant scene."',
    '# parameters = { type = "object", properties = { scene = { type = "string", maxLength = 40 } }, required = ["scene"] }',  # noqa: E501
    '# http = { method = "POST", url = "http://homeassistant.local:8123/api/services/scene/turn_on", body = { entity_id = "{scene}" }, token_file = "/etc/voiced/ha-token" }',  # noqa: E501
    "# [[tools]]",
    '# name = "fan"',
    '# description = "Switch the fan."',
    '# parameters = { type = "object", properties = { on = { type = "boolean" } }, required = ["on"] }',  # noqa: E501
    '# mqtt = { topic = "home/fan/set", payload = "{on}" }   # needs [mqtt]',
    "# [[tools]]",
    '# builtin = "set_volume"                  # also get_volume, stop, mute, new_conversation, set_timer',  # noqa: E501
]
