"""
Local tools the model may call: their declarations, argument checks, and the runner.

A tool is declared in the configuration (``[[tools]]``, README "Tools"): a name, a
description, a JSON-schema of its parameters, and one action (daemon/runtime/actions.py). The
model sees the declarations in ``setup.tools`` (:func:`declarations`); when it calls
one, the core emits ``RunTool(call_id, name, args)`` and the supervisor hands it to
:meth:`ToolRunner.start`, which runs the action off the event loop and posts
``ToolDone(call_id, name, response)`` — always, exactly once, unless the call was
cancelled (FIELD_REPORTS F18: a call never answered is dead air forever).

Rules the runner keeps (FIELD_REPORTS F10, F18, Part 4 §5):

* every failure is a *result* the model can speak, ``{"error": "…"}``: bad arguments,
  an action that raised, a timeout, an unknown name. Never an exception that ends a turn.
* each call runs on the supervisor's bounded executor (it owns every thread and timer,
  STYLE.md; the runner is lent them as a :class:`ToolHost`), so a tool that hangs never
  blocks the event loop; a per-tool deadline, a timer on the supervisor's loop, answers
  ``{"error": "… timed out …"}`` and the late result, if it ever comes, is dropped.
* :meth:`ToolRunner.cancel` (``toolCallCancellation``) stops what can be stopped (a
  command's process group is killed) and guarantees that no result is posted for that id.

The JSON-schema subset we accept (anything else is a configuration error naming the
key): ``type`` (object, string, integer, number, boolean), ``properties``,
``required``, ``enum``, ``minimum``/``maximum``, ``maxLength``, ``description``.
Arguments are checked against it before any action sees them; only checked values
ever reach an action (a command's argv, a URL, a topic).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Protocol

from daemon.errors import ConfigError
from daemon.vocabulary import ToolDone

__all__ = [
    "ToolSpec",
    "Action",
    "ToolRunner",
    "ToolHost",
    "CallControl",
    "ModelTools",
    "model_tools",
    "declarations",
    "session_tools",
    "scheduling_of",
    "check_schema",
    "check_args",
    "SCHEDULING",
    "DEFAULT_TIMEOUT",
]

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 10.0
"""Seconds a tool may run before the model is told it timed out."""

SCHEDULING = ("SILENT", "WHEN_IDLE", "INTERRUPT")
"""How a NON_BLOCKING result is delivered (FIELD_REPORTS Part 3): SILENT adds it to the
context only, WHEN_IDLE speaks once the model is idle, INTERRUPT speaks at once."""

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
}
_SCHEMA_KEYS = {
    "type",
    "properties",
    "required",
    "enum",
    "minimum",
    "maximum",
    "maxLength",
    "description",
}
_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


# -- which model does what with tools -------------------------------------------------------


@dataclass(frozen=True)
class ModelTools:
    """What a Live model supports for function calling (FIELD_REPORTS Part 3)."""

    non_blocking: bool
    """NON_BLOCKING (asynchronous) calls can be declared."""
    default_scheduling: str | None
    """The scheduling we send with a NON_BLOCKING result, None when there is none."""


# Model id prefix → capabilities; the first prefix that matches wins. 3.1 Flash Live is
# synchronous only ("the model will not answer until it gets the tool response");
# 3.8 Live is asynchronous by default with SILENT/WHEN_IDLE/INTERRUPT scheduling; the
# 2.5 native-audio models take both. WHEN_IDLE gave "no reply after a tool result" in
# voice mode (F18), so INTERRUPT is our default: the user asked, the answer is awaited.
MODEL_TOOLS: tuple[tuple[str, ModelTools], ...] = (
    ("gemini-3.1-flash-live", ModelTools(non_blocking=False, default_scheduling=None)),
    (
        "gemini-3.8-live-extended-thinking",
        ModelTools(non_blocking=True, default_scheduling="INTERRUPT"),
    ),
    ("gemini-3.8-live", ModelTools(non_blocking=True, default_scheduling="INTERRUPT")),
    (
        "gemini-2.5-flash-native-audio",
        ModelTools(non_blocking=True, default_scheduling="INTERRUPT"),
    ),
    ("gemini-live-2.5-flash", ModelTools(non_blocking=True, default_scheduling="INTERRUPT")),
)
_UNKNOWN_MODEL = ModelTools(
    non_blocking=False, default_scheduling=None
)  # BLOCKING works everywhere


def model_tools(model: str) -> ModelTools:
    """Capabilities of ``model`` (a bare id or ``models/…`` / a Vertex path)."""
    bare = model.rsplit("/", 1)[-1]
    return next((caps for prefix, caps in MODEL_TOOLS if bare.startswith(prefix)), _UNKNOWN_MODEL)


# -- schemas --------------------------------------------------------------------------------


def check_schema(schema: Any, key: str, *, top: bool = True) -> None:
    """Raise :class:`ConfigError` naming ``key`` unless ``schema`` is in our subset."""
    if not isinstance(schema, Mapping):
        raise ConfigError(key, schema, "must be a table (a JSON schema)")
    unknown = sorted(set(schema) - _SCHEMA_KEYS)
    if unknown:
        raise ConfigError(
            f"{key}.{unknown[0]}",
            schema[unknown[0]],
            "is not supported; allowed schema keys: " + ", ".join(sorted(_SCHEMA_KEYS)),
        )
    kind = schema.get("type")
    if not isinstance(kind, str) or kind not in _TYPES:
        raise ConfigError(f"{key}.type", kind, "must be one of " + ", ".join(_TYPES))
    if top and kind != "object":
        raise ConfigError(f"{key}.type", kind, 'must be "object" (the arguments of a call)')
    props = schema.get("properties", {})
    if kind == "object":
        if not isinstance(props, Mapping):
            raise ConfigError(f"{key}.properties", props, "must be a table of parameter schemas")
        for name, sub in props.items():
            if not name or not set(name) <= _NAME_CHARS:
                raise ConfigError(
                    f"{key}.properties", name, "parameter names are letters, digits, _ and -"
                )
            check_schema(sub, f"{key}.properties.{name}", top=False)
        required = schema.get("required", [])
        if not isinstance(required, (list, tuple)) or any(
            not isinstance(r, str) or r not in props for r in required
        ):
            raise ConfigError(f"{key}.required", required, "must list names from properties")
    elif "properties" in schema or "required" in schema:
        raise ConfigError(f"{key}.properties", props, f'only for type "object", not {kind!r}')
    if "enum" in schema:
        enum = schema["enum"]
        if (
            not isinstance(enum, (list, tuple))
            or not enum
            or not all(_is_type(v, kind) for v in enum)
        ):
            raise ConfigError(f"{key}.enum", enum, f"must be a non-empty list of {kind} values")
    for bound in ("minimum", "maximum"):
        if bound in schema:
            if kind not in ("integer", "number") or not _is_type(schema[bound], "number"):
                raise ConfigError(
                    f"{key}.{bound}", schema[bound], "must be a number, on a numeric parameter"
                )
    if "maxLength" in schema:
        n = schema["maxLength"]
        if kind != "string" or not _is_type(n, "integer") or n < 0:
            raise ConfigError(
                f"{key}.maxLength", n, "must be a whole number >= 0, on a string parameter"
            )
    if "description" in schema and not isinstance(schema["description"], str):
        raise ConfigError(f"{key}.description", schema["description"], "must be a string")


def _is_type(value: Any, kind: str) -> bool:
    if isinstance(value, bool) and kind != "boolean":
        return False  # JSON has no bool-as-int
    if kind == "integer" and isinstance(value, float):
        return value.is_integer()
    return isinstance(value, _TYPES[kind])


def check_args(schema: Mapping[str, Any], args: Any, where: str = "arguments") -> str | None:
    """What is wrong with ``args`` against ``schema`` (one sentence the model can read),
    or None when they are fine."""
    kind = schema.get("type", "object")
    if not _is_type(args, kind):
        article = "an" if kind[0] in "aeiou" else "a"
        return f"{where} must be {article} {kind}, not {type(args).__name__}"
    if kind == "object":
        props = schema.get("properties", {})
        for name in schema.get("required", []):
            if name not in args:
                return f"{where}: {name!r} is required"
        for name, value in args.items():
            if name not in props:
                return f"{where}: unknown parameter {name!r} (known: {', '.join(props) or 'none'})"
            problem = check_args(props[name], value, name)
            if problem:
                return problem
        return None
    if "enum" in schema and args not in schema["enum"]:  # bools were refused above
        return f"{where} must be one of {', '.join(map(repr, schema['enum']))}"
    if "minimum" in schema and args < schema["minimum"]:
        return f"{where} must be >= {schema['minimum']}"
    if "maximum" in schema and args > schema["maximum"]:
        return f"{where} must be <= {schema['maximum']}"
    if kind == "string":
        if "maxLength" in schema and len(args) > schema["maxLength"]:
            return f"{where} is longer than {schema['maxLength']} characters"
        if "\x00" in args:
            return f"{where} must not contain a NUL character"
    return None


# -- specs, declarations --------------------------------------------------------------------


class Action(Protocol):
    """What a tool does (daemon/runtime/actions.py). ``run`` is called on a thread of the
    supervisor's executor; it returns the JSON object the model gets, or raises (the runner
    turns an exception into ``{"error": …}``). ``control`` says when the call was cancelled
    or timed out; an action that starts something it can stop (a process) registers the
    stop with :meth:`CallControl.on_stop`."""

    kind: str

    def run(self, args: Mapping[str, Any], control: CallControl) -> Mapping[str, Any]: ...


@dataclass(frozen=True)
class ToolSpec:
    """One ``[[tools]]`` entry, checked."""

    name: str
    description: str
    parameters: Mapping[str, Any]
    action: Any
    """An :class:`Action` (daemon/runtime/actions.py)."""
    timeout: float = DEFAULT_TIMEOUT
    behavior: str = ""
    """"" (the model's default, made NON_BLOCKING where supported), "BLOCKING" or "NON_BLOCKING"."""
    scheduling: str = ""
    """For NON_BLOCKING results: SILENT, WHEN_IDLE, INTERRUPT; "" for the model's default."""


def declarations(specs: tuple[ToolSpec, ...], model: str) -> tuple[dict[str, Any], ...]:
    """The ``functionDeclarations`` for ``setup.tools`` (wire.SetupConfig.tools): NON_BLOCKING
    where ``model`` supports it unless a tool asks for BLOCKING (FIELD_REPORTS Part 3)."""
    caps = model_tools(model)
    out = []
    for spec in specs:
        decl: dict[str, Any] = {"name": spec.name, "description": spec.description}
        if spec.parameters.get("properties"):
            decl["parameters"] = dict(spec.parameters)
        if caps.non_blocking:
            decl["behavior"] = spec.behavior or "NON_BLOCKING"
        out.append(decl)
    return tuple(out)


def session_tools(specs: tuple[ToolSpec, ...], model: str) -> dict[str, Any]:
    """The core's view of the tools (``SessionSettings.tools`` / ``tools_blocking``): the
    declared names, and whether calls block — exactly as :func:`declarations` declared
    them: blocking on a model without NON_BLOCKING, or when any tool asks for BLOCKING
    (the core then holds the mic for every pending call, which is safe for the others
    too: FIELD_REPORTS F10)."""
    blocking = not model_tools(model).non_blocking or any(s.behavior == "BLOCKING" for s in specs)
    scheduling = tuple(
        (s.name, chosen) for s in specs if (chosen := scheduling_of(s, model)) is not None
    )
    return {
        "tools": tuple(s.name for s in specs),
        "tools_blocking": blocking,
        "tool_scheduling": scheduling,
    }


def scheduling_of(spec: ToolSpec, model: str) -> str | None:
    """The ``scheduling`` the results of ``spec`` carry on ``model``: the tool's own
    choice, else the model's default; None on a model without NON_BLOCKING calls (the
    blocking-only gemini-3.1-flash-live-preview) or for a tool declared BLOCKING — a
    blocking call's result is awaited, there is nothing to schedule (FIELD_REPORTS Part 3)."""
    caps = model_tools(model)
    if not caps.non_blocking or spec.behavior == "BLOCKING":
        return None
    return spec.scheduling or caps.default_scheduling


# -- the runner -----------------------------------------------------------------------------


class ToolHost(Protocol):
    """What the runner borrows from the supervisor (daemon/runtime/supervisor.py ToolPool):
    the design rule is that the supervisor owns every task, timer and thread, so the runner
    makes none of its own. All three are called on the supervisor's loop thread."""

    def post(self, event: Any) -> None:
        """The inbox's post: a ``ToolDone`` goes to the core."""
        ...

    def run_in_thread(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        """Run ``fn(*args)`` on the supervisor's bounded executor; the future resolves on
        the loop. Cancelling it before it started means it never starts."""
        ...

    def call_later(
        self, seconds: float, fn: Callable[..., None], *args: Any
    ) -> asyncio.TimerHandle:
        """A timer on the supervisor's loop, in wall seconds, cancelled at its stop."""
        ...


class CallControl:
    """Given to :meth:`Action.run` (on an executor thread): whether the call was stopped
    (cancelled, timed out, shutting down), and a way to register how to stop what the
    action started — a command's process group is killed from the loop at the deadline,
    so no thread of its own waits to do it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stopped = False
        self._stoppers: list[Callable[[], None]] = []

    @property
    def stopped(self) -> bool:
        return self._stopped

    def on_stop(self, stopper: Callable[[], None]) -> None:
        """Call ``stopper()`` when the call is stopped — at once if it already was. Any
        thread; ``stopper`` must not block (it runs on the loop)."""
        with self._lock:
            if not self._stopped:
                self._stoppers.append(stopper)
                return
        stopper()

    def stop(self) -> None:
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            stoppers, self._stoppers = self._stoppers, []
        for stopper in stoppers:
            try:
                stopper()
            except Exception:
                log.exception("! stopping a tool call failed")


class _Call:
    def __init__(self, call_id: str, name: str, spec: ToolSpec) -> None:
        self.call_id, self.name, self.spec = call_id, name, spec
        self.control = CallControl()
        self.future: asyncio.Future[Any] | None = None
        self.deadline: asyncio.TimerHandle | None = None


class ToolRunner:
    """Runs tool calls on the supervisor's executor and posts their ``ToolDone``.

    The supervisor calls :meth:`start` for ``RunTool``, :meth:`cancel` for ``CancelTool``
    and :meth:`close` when it stops, all on its loop thread, with the :class:`ToolHost` it
    owns (its inbox post, its bounded executor, its timers). The runner keeps no thread
    and no task: each call's deadline is one of the host's timers, and whichever of
    (result, deadline, cancel) comes first decides, on the loop, with nothing to lock.

    Args:
        specs: the configured tools.
        on_change: called (loop thread) with the number of running calls when it changes
            (the Home Assistant "working" state; the LED comes from the core).
    """

    def __init__(
        self, specs: tuple[ToolSpec, ...] = (), *, on_change: Callable[[int], None] | None = None
    ) -> None:
        self.specs = {s.name: s for s in specs}
        self.on_change = on_change
        self._calls: dict[str, _Call] = {}
        self.started = 0
        self.timeouts = 0
        self.cancelled = 0

    @property
    def running(self) -> int:
        return len(self._calls)

    def scheduling(self, name: str, model: str) -> str | None:
        """The ``scheduling`` the result of ``name`` carries on ``model`` (None: none); the
        core sends it (SessionSettings.tool_scheduling, from :func:`session_tools`)."""
        spec = self.specs.get(name)
        if spec is None:
            return model_tools(model).default_scheduling
        return scheduling_of(spec, model)

    def start(self, call_id: str, name: str, args: Mapping[str, Any], host: ToolHost) -> None:
        """Run ``name(args)`` on ``host``'s executor; post ``ToolDone(call_id, name,
        response)`` when it is done or at its deadline. Returns at once."""
        spec = self.specs.get(name)
        if spec is None:
            # The core answers unknown names itself; this is the belt to its braces (F18).
            host.post(ToolDone(call_id, name, {"error": f"there is no tool called {name!r}"}))
            return
        problem = check_args(spec.parameters, dict(args) if isinstance(args, Mapping) else args)
        if problem:
            host.post(ToolDone(call_id, name, {"error": f"bad arguments: {problem}"}))
            return
        call = _Call(call_id, name, spec)
        call.future = host.run_in_thread(spec.action.run, dict(args), call.control)
        call.future.add_done_callback(functools.partial(self._finished, call, host))
        # The deadline is the supervisor's timer, not the worker's: a hung action (or one
        # still queued behind busy workers) is answered at its deadline all the same.
        call.deadline = host.call_later(spec.timeout, self._timed_out, call, host)
        self._calls[call_id] = call
        self.started += 1
        self._changed()
        log.info("tool %s(%s) started (call %s)", name, _brief(args), call_id)

    def cancel(self, call_id: str) -> None:
        """The server cancelled ``call_id``: stop it if possible; no result will be posted."""
        call = self._calls.pop(call_id, None)
        if call is None:
            return
        self.cancelled += 1
        self._stop(call)
        log.info("tool %s cancelled (call %s)", call.name, call_id)
        self._changed()

    def close(self) -> None:
        """Shutting down: stop everything still running (no results are posted)."""
        for call_id in list(self._calls):
            self.cancel(call_id)

    # -- internals (loop thread)

    @staticmethod
    def _stop(call: _Call) -> None:
        if call.deadline is not None:
            call.deadline.cancel()
        call.control.stop()  # kills what the action registered (a command's processes)
        if call.future is not None:
            call.future.cancel()  # a call still queued never starts; a late result is dropped

    def _finished(self, call: _Call, host: ToolHost, future: asyncio.Future[Any]) -> None:
        if self._calls.get(call.call_id) is not call or future.cancelled():
            return  # cancelled or timed out first: answered already, or never to be
        del self._calls[call.call_id]
        if call.deadline is not None:
            call.deadline.cancel()
        exc = future.exception()
        if exc is not None:  # the model hears what went wrong; the daemon carries on
            log.warning("tool %s failed: %s", call.name, exc)
            response: dict[str, Any] = {"error": f"{call.name} failed: {exc}"}
        else:
            result = future.result()
            response = dict(result) if isinstance(result, Mapping) else {"result": result}
        host.post(ToolDone(call.call_id, call.name, response))
        self._changed()

    def _timed_out(self, call: _Call, host: ToolHost) -> None:
        if self._calls.get(call.call_id) is not call:
            return
        del self._calls[call.call_id]
        self.timeouts += 1
        spec = call.spec
        log.warning("tool %s timed out after %g s (call %s)", spec.name, spec.timeout, call.call_id)
        self._stop(call)
        host.post(
            ToolDone(
                call.call_id,
                call.name,
                {"error": f"{spec.name} timed out after {spec.timeout:g} s"},
            )
        )
        self._changed()

    def _changed(self) -> None:
        if self.on_change is not None:
            try:
                self.on_change(self.running)
            except Exception:
                log.exception("! tool on_change listener failed")


def _brief(args: Any, limit: int = 120) -> str:
    text = (
        ", ".join(f"{k}={v!r}" for k, v in args.items())
        if isinstance(args, Mapping)
        else repr(args)
    )
    return text if len(text) <= limit else text[:limit] + "…"
