"""The tool runner and the actions, with the real parts: gpiozero's MockFactory with
MockPWMPin, real processes (no shell), a real http.server on loopback, and the
schema checks of [[tools]] (daemon/runtime/tools.py, daemon/runtime/actions.py)."""

from __future__ import annotations

import http.server
import json
import shutil
import stat
import sys
import textwrap
import threading
import time
import tomllib
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from gpiozero.pins.mock import MockFactory, MockPWMPin
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.app import config
from daemon.errors import ConfigError
from daemon.runtime.actions import ToolContext, VolumeStore, build_tools, close_tools, parse_tools
from daemon.runtime.supervisor import TOOL_WORKERS
from daemon.runtime.tools import ToolRunner, ToolSpec, check_args, declarations, model_tools
from daemon.vocabulary import ToolDone
from tests.runtime.tools.harness import ToolBench

Bench = Callable[[ToolRunner], ToolBench]

WAIT = 10.0  # generous wall bound for a result on a loaded machine; results come in ms


def tools_from(text: str) -> tuple[Any, ...]:
    return parse_tools(tomllib.loads(textwrap.dedent(text))["tools"])


@pytest.fixture
def pins() -> Iterator[MockFactory]:
    factory = MockFactory(pin_class=MockPWMPin)
    yield factory
    factory.close()


# -- configuration ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "snippet, key",
    [
        ('name = "x"\ndescription = "d"\n', "tools[0]"),  # no action
        ('name = "x"\ndescription = "d"\ngpio = {pin = 40}\n', "tools[0].gpio.pin"),
        ('name = "x y"\ndescription = "d"\ngpio = {pin = 4}\n', "tools[0].name"),
        ('name = "x"\ndescription = ""\ngpio = {pin = 4}\n', "tools[0].description"),
        (
            'name = "x"\ndescription = "d"\n'
            'parameters = {type = "object", properties = {a = {type = "date"}}}\n'
            'command = {argv = ["/bin/true"]}\n',
            "tools[0].parameters.properties.a.type",
        ),
        (
            'name = "x"\ndescription = "d"\n'
            ""
            'parameters = {type = "object", properties = {a = {type = "string", pattern = "x"}}}\n'
            'command = {argv = ["/bin/true"]}\n',
            "tools[0].parameters.properties.a.pattern",
        ),
        (
            'name = "x"\ndescription = "d"\n'
            ""
            'parameters = {type = "object", properties = {a = {type = "string", minimum = 1}}}\n'
            'command = {argv = ["/bin/true"]}\n',
            "tools[0].parameters.properties.a.minimum",
        ),
        (
            'name = "x"\ndescription = "d"\nparameters = {type = "object", required = ["b"]}\n'
            'command = {argv = ["/bin/true"]}\n',
            "tools[0].parameters.required",
        ),
        ('name = "x"\ndescription = "d"\ncommand = {argv = "rm -rf /"}\n', "tools[0].command.argv"),
        (
            'name = "x"\ndescription = "d"\n'
            'parameters = {type = "object", properties = {a = {type = "string"}}}\n'
            'command = {argv = ["/bin/echo", "--a={a}"]}\n',
            "tools[0].command.argv[1]",
        ),
        (
            'name = "x"\ndescription = "d"\ncommand = {argv = ["/bin/echo", "{nope}"]}\n',
            "tools[0].command.argv[1]",
        ),
        (
            'name = "x"\ndescription = "d"\nparameters = {type = "object", properties = {a = {type = "string"}}}\n'
            'command = {argv = ["{a}"]}\n',
            "tools[0].command.argv[0]",
        ),
        (
            'name = "x"\ndescription = "d"\nhttp = {url = "file:///etc/passwd"}\n',
            "tools[0].http.url",
        ),
        ('name = "x"\ndescription = "d"\nmqtt = {topic = "home/#"}\n', "tools[0].mqtt.topic"),
        ('name = "x"\ndescription = "d"\ntimeout = 0\ngpio = {pin = 4}\n', "tools[0].timeout"),
        (
            'name = "x"\ndescription = "d"\nscheduling = "LATER"\ngpio = {pin = 4}\n',
            "tools[0].scheduling",
        ),
        ('builtin = "self_destruct"\n', "tools[0].builtin"),
    ],
)
def test_config_error_names_the_key(snippet: str, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        tools_from("[[tools]]\n" + snippet)
    assert err.value.key == key, str(err.value)


def test_config_file_with_tools_and_mqtt_loads(tmp_path: Path) -> None:
    path = tmp_path / "voiced.toml"
    path.write_text(
        textwrap.dedent("""
        [[tools]]
        name = "porch"
        description = "Porch light"
        gpio = { pin = 17 }

        [[tools]]
        builtin = "set_timer"

        [mqtt]
        host = "127.0.0.1"
        topic_prefix = "voiced/kitchen"
    """)
    )
    cfg = config.load(path, environ={})
    assert [t.name for t in cfg.tools] == ["porch", "set_timer"]
    assert cfg.mqtt.enabled and cfg.mqtt.topic_prefix == "voiced/kitchen"
    assert "[[tools]]" in config.to_toml(cfg)


def test_a_gpio_tool_on_a_pin_in_use_is_refused() -> None:
    with pytest.raises(ConfigError) as err:
        config.parse(tomllib.loads('[[tools]]\nname = "x"\ndescription = "d"\ngpio = {pin = 25}\n'))
    assert err.value.key == "tools[0].gpio.pin" and "led.pin" in str(err.value)
    with pytest.raises(ConfigError) as err:
        config.parse(
            tomllib.loads(
                '[button]\npin = 5\n[[tools]]\nname = "x"\ndescription = "d"\n'
                'gpio = {pin = 6}\n[[tools]]\nname = "y"\ndescription = "d"\ngpio = {pin = 6}\n'
            )
        )
    assert err.value.key == "tools[1].gpio.pin" and "tools[0] (x)" in str(err.value)


def test_duplicate_names_are_refused() -> None:
    with pytest.raises(ConfigError, match="already the name"):
        tools_from('[[tools]]\nbuiltin = "stop"\n[[tools]]\nbuiltin = "stop"\n')


def test_declarations_follow_the_model_capabilities() -> None:
    specs = tools_from(
        '[[tools]]\nname = "a"\ndescription = "d"\ngpio = {pin = 4}\n'
        '[[tools]]\nname = "b"\ndescription = "d"\nbehavior = "BLOCKING"\ngpio = {pin = 5}\n'
    )
    new = declarations(specs, "gemini-3.8-live")
    assert [d["behavior"] for d in new] == ["NON_BLOCKING", "BLOCKING"]
    assert new[0]["parameters"]["required"] == ["on"]
    old = declarations(specs, "models/gemini-3.1-flash-live-preview")
    assert all("behavior" not in d for d in old)  # synchronous only: no behavior field
    assert model_tools("gemini-3.8-live").default_scheduling == "INTERRUPT"
    assert model_tools("gemini-3.1-flash-live-preview").non_blocking is False
    assert ToolRunner(specs).scheduling("a", "gemini-3.8-live") == "INTERRUPT"
    assert ToolRunner(specs).scheduling("b", "gemini-3.8-live") is None
    assert ToolRunner(specs).scheduling("a", "gemini-3.1-flash-live-preview") is None


@pytest.mark.parametrize(
    "args, problem",
    [
        ({}, "'n' is required"),
        ({"n": True}, "n must be an integer"),
        ({"n": 11}, "n must be <= 10"),
        ({"n": 3, "s": "x" * 6}, "s is longer than 5"),
        ({"n": 3, "e": "c"}, "e must be one of"),
        ({"n": 3, "zz": 1}, "unknown parameter 'zz'"),
        ({"n": 3, "s": "a\x00b"}, "NUL"),
        ({"n": 3, "s": "ok", "e": "a"}, None),
    ],
)
def test_arguments_are_checked_against_the_schema(
    args: dict[str, Any], problem: str | None
) -> None:
    schema = {
        "type": "object",
        "required": ["n"],
        "properties": {
            "n": {"type": "integer", "minimum": 0, "maximum": 10},
            "s": {"type": "string", "maxLength": 5},
            "e": {"type": "string", "enum": ["a", "b"]},
        },
    }
    found = check_args(schema, args)
    assert (found is None) if problem is None else (problem in (found or "")), found


# -- the runner -------------------------------------------------------------------------------


def test_gpio_tool_drives_a_mock_pin(pins: MockFactory, bench: Bench) -> None:
    specs = build_tools(
        tools_from(
            '[[tools]]\nname = "porch"\ndescription = "d"\ngpio = {pin = 17}\n'
            '[[tools]]\nname = "dimmer"\ndescription = "d"\ngpio = {pin = 18, pwm = true}\n'
        ),
        ToolContext(pin_factory=pins),
    )
    runner = ToolRunner(specs)
    inbox = bench(runner)
    try:
        pin = pins.pin(17)
        assert pin.state == 0
        inbox.start("c1", "porch", {"on": True})
        assert inbox.get() == ToolDone("c1", "porch", {"pin": 17, "on": True})
        assert pin.state == 1
        inbox.start("c2", "dimmer", {"level": 0.25})
        assert inbox.get().response == {"pin": 18, "level": 0.25}
        assert pins.pin(18).state == pytest.approx(0.25)
        inbox.start("c3", "porch", {"on": "yes"})  # refused before the pin moves
        done = inbox.get()
        assert done.call_id == "c3" and "on must be a boolean" in done.response["error"]
        assert pin.state == 1
    finally:
        close_tools(specs)


def script(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "tool.py"
    path.write_text(f"#!{sys.executable}\n" + textwrap.dedent(body))
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_command_arguments_never_reach_a_shell(tmp_path: Path, bench: Bench) -> None:
    record = tmp_path / "argv.json"
    prog = script(
        tmp_path,
        f"""
        import json, sys
        json.dump(sys.argv[1:], open({str(record)!r}, "w"))
        print("ok")
    """,
    )
    specs = tools_from(f'''
        [[tools]]
        name = "note"
        description = "d"
        parameters = {{ type = "object", properties = {{ text = {{ type = "string", maxLength = 200 }}, n = {{ type = "integer" }} }}, required = ["text"] }}
        command = {{ argv = ["{prog}", "--text", "{{text}}", "{{n}}", "fixed"] }}
    ''')
    runner = ToolRunner(specs)
    inbox = bench(runner)
    side_effect = tmp_path / "pwned"
    for i, evil in enumerate(
        [
            f"; touch {side_effect}",
            f"$(touch {side_effect})",
            f"`touch {side_effect}`",
            f"a && touch {side_effect}",
            "../../etc/passwd",
            "| cat /etc/shadow",
            "--text=$HOME",
            "'\"\\",
        ]
    ):
        inbox.start(f"c{i}", "note", {"text": evil})
        done = inbox.get()
        assert done.response == {"exit_code": 0, "output": "ok"}, done
        assert json.loads(record.read_text()) == ["--text", evil, "fixed"]  # one element, verbatim
    inbox.start("n", "note", {"text": "x", "n": 7})
    inbox.get()
    assert json.loads(record.read_text()) == ["--text", "x", "7", "fixed"]
    assert not side_effect.exists()


def test_command_output_is_truncated_and_failures_are_results(tmp_path: Path, bench: Bench) -> None:
    prog = script(
        tmp_path,
        """
        import sys
        print("x" * 5000)
        sys.exit(3)
    """,
    )
    specs = tools_from(
        f'[[tools]]\nname = "loud"\ndescription = "d"\n'
        f'command = {{ argv = ["{prog}"], max_output = 100 }}\n'
        f'[[tools]]\nname = "missing"\ndescription = "d"\n'
        f'command = {{ argv = ["{tmp_path}/no-such-program"] }}\n'
    )
    runner = ToolRunner(specs)
    inbox = bench(runner)
    inbox.start("c1", "loud", {})
    r = inbox.get().response
    assert r["exit_code"] == 3 and r["error"] == "tool.py exited with 3"
    assert r["output"].startswith("x" * 100) and "4900 more characters" in r["output"]
    inbox.start("c2", "missing", {})
    r = inbox.get().response
    assert "missing failed" in r["error"] and "No such file" in r["error"]


def sleeper(tmp_path: Path) -> Path:
    """A copy of /bin/sleep under a unique path: it starts at once (no interpreter) and
    /proc tells whether it still runs."""
    prog = tmp_path / "hang-sleep"
    shutil.copy("/bin/sleep", prog)
    return prog


def test_a_hanging_tool_times_out_and_its_process_is_killed(tmp_path: Path, bench: Bench) -> None:
    prog = sleeper(tmp_path)
    specs = tools_from(
        f'[[tools]]\nname = "hang"\ndescription = "d"\ntimeout = 1\n'
        f'command = {{ argv = ["{prog}", "600"] }}\n'
    )
    runner = ToolRunner(specs)
    inbox = bench(runner)
    inbox.start("c1", "hang", {})
    assert inbox.get() == ToolDone("c1", "hang", {"error": "hang timed out after 1 s"})
    assert runner.timeouts == 1 and runner.running == 0
    assert _wait_for(lambda: not _running(prog))
    assert inbox.empty_after(0.3)  # the killed process's own result is never posted


def test_a_cancelled_call_posts_nothing_and_is_stopped(tmp_path: Path, bench: Bench) -> None:
    prog = sleeper(tmp_path)
    changes: list[int] = []
    specs = tools_from(
        f'[[tools]]\nname = "slow"\ndescription = "d"\ntimeout = 60\n'
        f'command = {{ argv = ["{prog}", "600"] }}\n'
    )
    runner = ToolRunner(specs, on_change=changes.append)
    inbox = bench(runner)
    inbox.start("c1", "slow", {})
    assert _wait_for(lambda: _running(prog))
    inbox.cancel("c1")
    inbox.cancel("c1")  # twice is harmless
    assert _wait_for(lambda: not _running(prog))
    assert inbox.empty_after(0.5)
    assert runner.cancelled == 1 and changes == [1, 0]


def _wait_for(predicate: Any, timeout: float = WAIT) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _running(prog: Path) -> bool:
    """Whether a live (not zombie) process runs ``prog``."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (
                str(prog).encode() in (entry / "cmdline").read_bytes()
                and (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
            ):
                return True
        except OSError:
            continue
    return False


def test_an_unknown_tool_and_a_raising_action_are_answered_with_errors(
    pins: MockFactory, bench: Bench
) -> None:
    runner = ToolRunner(())
    inbox = bench(runner)
    inbox.start("c1", "not_registered", {})
    assert inbox.get() == ToolDone(
        "c1", "not_registered", {"error": "there is no tool called 'not_registered'"}
    )
    specs = tools_from('[[tools]]\nname = "fan"\ndescription = "d"\nmqtt = {topic = "home/fan"}\n')
    runner = ToolRunner(build_tools(specs, ToolContext()))  # no broker configured
    inbox = bench(runner)
    inbox.start("c2", "fan", {})
    assert inbox.get().response == {"error": "no MQTT broker is configured"}

    def publish(*a: Any) -> None:
        raise RuntimeError("the MQTT broker is not connected")

    runner = ToolRunner(build_tools(specs, ToolContext(publish=publish)))
    inbox = bench(runner)
    inbox.start("c3", "fan", {})
    assert inbox.get().response == {"error": "fan failed: the MQTT broker is not connected"}


class _Handler(http.server.BaseHTTPRequestHandler):
    seen: list[tuple[str, str, dict[str, str], Any]] = []

    def _any(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        _Handler.seen.append((self.command, self.path, dict(self.headers), body))
        status = 500 if "broken" in self.path else 200
        data = json.dumps({"result": "fine" if status == 200 else "bad"}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _any

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Handler.seen = []
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_http_tool_sends_the_filled_template(
    http_server: str, tmp_path: Path, bench: Bench
) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    specs = tools_from(f'''
        [[tools]]
        name = "scene"
        description = "d"
        parameters = {{ type = "object", properties = {{ room = {{ type = "string" }}, level = {{ type = "integer" }} }}, required = ["room"] }}
        http = {{ url = "{http_server}/api/{{room}}", body = {{ entity = "{{room}}", brightness = "{{level}}", fixed = [1, "{{level}}"] }}, token_file = "{token}" }}
    ''')
    runner = ToolRunner(specs)
    inbox = bench(runner)
    inbox.start("c1", "scene", {"room": "hall/../x y", "level": 40})
    assert inbox.get().response == {"status": 200, "body": {"result": "fine"}}
    method, path, headers, body = _Handler.seen[-1]
    assert (method, path) == ("POST", "/api/hall%2F..%2Fx%20y")  # one path segment, encoded
    assert body == {"entity": "hall/../x y", "brightness": 40, "fixed": [1, 40]}
    assert headers["Authorization"] == "Bearer s3cret"
    inbox.start("c2", "scene", {"room": "broken"})
    assert inbox.get().response == {"status": 500, "body": {"result": "bad"}, "error": "HTTP 500"}


def test_http_tool_to_nowhere_is_an_error_result(bench: Bench) -> None:
    specs = tools_from(
        '[[tools]]\nname = "x"\ndescription = "d"\ntimeout = 2\n'
        'http = { method = "GET", url = "http://127.0.0.1:9/nothing" }\n'
    )
    runner = ToolRunner(specs)
    inbox = bench(runner)
    inbox.start("c1", "x", {})
    assert inbox.get().response["error"].startswith("request failed")


def test_builtins_check_arguments_before_touching_the_device(bench: Bench) -> None:
    """(The built-ins on the real device are in test_e2e.py.)"""
    text = "".join(f'[[tools]]\nbuiltin = "{b}"\n' for b in ("set_volume", "set_timer"))
    runner = ToolRunner(build_tools(tools_from(text), ToolContext()))
    inbox = bench(runner)
    inbox.start("1", "set_volume", {"percent": 101})
    assert "percent must be <= 100" in inbox.get().response["error"]
    inbox.start("2", "set_timer", {"seconds": 0})
    assert "seconds must be >= 1" in inbox.get().response["error"]
    inbox.start("3", "set_volume", {"percent": 50})  # no device bound (yet)
    assert inbox.get().response == {"error": "set_volume is not available on this device"}


def test_volume_store_round_trip(tmp_path: Path) -> None:
    store = VolumeStore(tmp_path)
    assert store.load() is None
    store.save(0.35)
    assert VolumeStore(tmp_path).load() == 0.35
    (tmp_path / "volume.json").write_text("garbage")
    assert store.load() is None


_KEYS = [
    "name",
    "description",
    "parameters",
    "gpio",
    "command",
    "http",
    "mqtt",
    "builtin",
    "type",
    "properties",
    "required",
    "enum",
    "pin",
    "argv",
    "url",
    "topic",
    "payload",
    "a",
    "timeout",
    "body",
    "minimum",
    "maxLength",
    "pwm",
]
_LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 50),
    st.floats(allow_nan=False),
    st.text(max_size=8),
    st.sampled_from(["gpio", "set_volume", "{a}", "object", "string", "http://x/{a}", "/bin/true"]),
)
_VALUE = st.recursive(
    _LEAF,
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.sampled_from(_KEYS), c, max_size=5),
    max_leaves=20,
)


@settings(max_examples=1500, deadline=None)
@given(st.lists(_VALUE, max_size=3) | _VALUE)
def test_any_tools_value_is_accepted_or_one_config_error(raw: Any) -> None:
    try:
        parse_tools(raw)
    except ConfigError:
        pass


class Hang:
    """An action that blocks its executor thread until released (a Python tool stuck in a
    call that knows nothing of cancellation), then returns a result."""

    kind = "hang"

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered: list[str] = []

    def run(self, args: Any, control: Any) -> dict[str, Any]:
        self.entered.append(args.get("tag", ""))
        self.release.wait(60)
        return {"late": True}


def test_a_hung_action_is_answered_at_its_deadline_and_its_late_result_dropped(
    bench: Bench,
) -> None:
    hang = Hang()
    params = {"type": "object", "properties": {"tag": {"type": "string"}}}
    spec = ToolSpec("stuck", "d", params, hang, timeout=0.5)
    runner = ToolRunner((spec,))
    inbox = bench(runner)
    try:
        inbox.start("c1", "stuck", {"tag": "a"})
        # The deadline is the supervisor's loop timer: answered while the thread still hangs.
        assert inbox.get() == ToolDone("c1", "stuck", {"error": "stuck timed out after 0.5 s"})
        assert runner.timeouts == 1 and runner.running == 0 and hang.entered == ["a"]
    finally:
        hang.release.set()
    assert inbox.empty_after(0.5)  # the result that came after the deadline is dropped


def test_calls_queued_behind_busy_workers_keep_their_deadlines(bench: Bench) -> None:
    hang = Hang()
    params = {"type": "object", "properties": {"tag": {"type": "string"}}}
    spec = ToolSpec("stuck", "d", params, hang, timeout=1.0)
    runner = ToolRunner((spec,))
    inbox = bench(runner)
    try:
        # More calls than the pool has workers: the last ones wait for a thread, and are
        # answered at their deadline anyway; one cancelled while queued never starts.
        ids = [f"c{i}" for i in range(TOOL_WORKERS + 2)]
        for call_id in ids:
            inbox.start(call_id, "stuck", {"tag": call_id})
        inbox.cancel(ids[-1])
        answered = {inbox.get().call_id for _ in ids[:-1]}
        assert answered == set(ids[:-1])
        assert len(hang.entered) == TOOL_WORKERS
    finally:
        hang.release.set()
    assert inbox.empty_after(0.5)
    assert ids[-1] not in hang.entered
