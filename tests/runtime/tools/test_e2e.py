"""Tools end to end: the real daemon (``voiced run --hw sim``) against the local Live
server, a press (or a typed question) that asks for a tool, the server's toolCall, the
daemon's runner, the toolResponse, and the result spoken back.

Needs the core's tool handling (branch ``core``: RunTool/ToolDone in daemon/session.py,
``Supervisor(tool_runner=…)``)."""

from __future__ import annotations

import http.server
import json
import stat
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.app.conftest import live_server, write_config
from tests.runtime.tools.harness import PASSWORD, Broker, Subscriber, _until


def replies(server: Any) -> list[str]:
    return [t.reply_text for s in server.sessions for t in s.user_turns if t.reply_text]


class _Recorder(http.server.BaseHTTPRequestHandler):
    bodies: list[Any] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        _Recorder.bodies.append((self.path, json.loads(self.rfile.read(length) or b"null")))
        data = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def http_url() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Recorder.bodies = []
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def tools_config(tmp: Path, http_url: str, broker: Broker) -> str:
    record = tmp / "argv.json"
    prog = tmp / "note.py"
    prog.write_text(
        f"#!{sys.executable}\nimport json, sys\n"
        f"json.dump(sys.argv[1:], open({str(record)!r}, 'w'))\nprint('noted')\n"
    )
    prog.chmod(prog.stat().st_mode | stat.S_IXUSR)
    pw = tmp / "mqtt-password"
    pw.write_text(PASSWORD)
    return textwrap.dedent(f'''
        [[tools]]
        name = "porch"
        description = "Switch the porch light."
        gpio = {{ pin = 17 }}

        [[tools]]
        name = "note"
        description = "Write a note."
        parameters = {{ type = "object", properties = {{ text = {{ type = "string", maxLength = 100 }} }}, required = ["text"] }}
        command = {{ argv = ["{prog}", "{{text}}"] }}

        [[tools]]
        name = "scene"
        description = "Set a scene."
        parameters = {{ type = "object", properties = {{ scene = {{ type = "string" }} }}, required = ["scene"] }}
        http = {{ url = "{http_url}/scene", body = {{ entity_id = "{{scene}}" }} }}

        [[tools]]
        name = "fan"
        description = "Switch the fan."
        scheduling = "WHEN_IDLE"
        parameters = {{ type = "object", properties = {{ on = {{ type = "boolean" }} }}, required = ["on"] }}
        mqtt = {{ topic = "home/dev1/fan/set", payload = "{{on}}" }}

        [[tools]]
        builtin = "set_volume"

        [mqtt]
        host = "127.0.0.1"
        port = {broker.port}
        username = "dev1"
        password_file = "{pw}"
        topic_prefix = "voiced/dev1"
        reconnect_max = 0.5
    ''')


def test_every_action_end_to_end(broker: Broker, spawn: Any, tmp_path: Path, http_url: str) -> None:
    sub = Subscriber(broker)
    with live_server() as server:
        cfg = write_config(
            tmp_path / "voiced.toml", tmp_path, extra=tools_config(tmp_path, http_url, broker)
        )
        d = spawn(cfg, server.endpoint())
        try:
            d.wait_control(timeout=60)
            sub.wait_value("voiced/dev1/availability", "online")

            # GPIO, asked for by a *press*: the server answers the pressed audio turn with
            # the scripted toolCall; the mock pin goes high; the result is spoken.
            server.tool_script.answer_next("porch", {"on": True})
            assert d.control("ptt", action="start")["ok"]
            time.sleep(0.3)
            assert d.control("ptt", action="stop")["ok"]
            said = _until(
                lambda: [r for r in replies(server) if "porch returned" in r], what="porch"
            )
            assert said == ['Turn 1: porch returned {"on":true,"pin":17}.']
            assert server.tool_script.issued[0][1:] == ("porch", {"on": True})

            # command: the argument arrives as one argv element, never through a shell
            evil = "hello; touch /tmp/pwned-by-voiced $(id) `id` ../../etc"
            d.control("say", text="call note " + json.dumps({"text": evil}))
            _until(lambda: [r for r in replies(server) if "note returned" in r], what="note")
            assert json.loads((tmp_path / "argv.json").read_text()) == [evil]
            assert not Path("/tmp/pwned-by-voiced").exists()

            # http: the local http.server gets the filled body
            d.control("say", text='call scene {"scene": "scene.evening"}')
            _until(lambda: _Recorder.bodies, what="the HTTP request")
            assert _Recorder.bodies == [("/scene", {"entity_id": "scene.evening"})]
            _until(
                lambda: [
                    r
                    for r in replies(server)
                    if 'scene returned {"body":{"ok":true},"status":200}' in r
                ],
                what="scene spoken",
            )

            # mqtt: the subscriber sees the publish
            d.control("say", text='call fan {"on": false}')
            sub.wait_value("home/dev1/fan/set", "false")
            _until(lambda: [r for r in replies(server) if "fan returned" in r], what="fan spoken")

            # built-in: volume, kept in the state directory
            d.control("say", text='call set_volume {"percent": 25}')
            _until(
                lambda: [
                    r for r in replies(server) if 'set_volume returned {"volume_percent":25}' in r
                ],
                what="volume spoken",
            )
            assert json.loads((tmp_path / "state" / "volume.json").read_text()) == {"volume": 0.25}
            sub.wait_value("voiced/dev1/volume", "25")

            st = d.control("status")["status"]
            assert st["tools_run"] == 5 and st["tools_running"] == 0
            # gemini-3.8-live (the default model): every result carries its scheduling.
            sent = [(r[1], r[2]) for c in server.connections for r in c.tool_responses]
            assert sent == [
                ("porch", "INTERRUPT"),
                ("note", "INTERRUPT"),
                ("scene", "INTERRUPT"),
                ("fan", "WHEN_IDLE"),
                ("set_volume", "INTERRUPT"),
            ]
            assert "1008" not in str(st.get("last_error"))
        finally:
            sub.close()


def test_bad_arguments_and_a_hanging_tool_are_answered(spawn: Any, tmp_path: Path) -> None:
    """The model always gets an answer: schema errors and timeouts are spoken results (F18)."""
    with live_server() as server:
        cfg = write_config(
            tmp_path / "voiced.toml",
            tmp_path,
            extra=textwrap.dedent("""
            [[tools]]
            name = "hang"
            description = "Never finishes."
            timeout = 0.5
            command = { argv = ["/bin/sleep", "600"] }

            [[tools]]
            builtin = "set_volume"
        """),
        )
        d = spawn(cfg, server.endpoint())
        d.wait_control(timeout=60)
        d.control("say", text="call hang")
        _until(
            lambda: [
                r
                for r in replies(server)
                if 'hang returned {"error":"hang timed out after 0.5 s"}' in r
            ],
            what="timeout spoken",
        )
        d.control("say", text='call set_volume {"percent": "loud"}')
        _until(
            lambda: [r for r in replies(server) if "percent must be an integer" in r],
            what="bad args",
        )


def test_press_during_a_blocking_call_is_held_not_refused(spawn: Any, tmp_path: Path) -> None:
    """gemini-3.1-flash-live-preview calls synchronously: mic audio while the call is
    pending would be closed 1008 "The operation was aborted." (F10). The press is held
    and sent after the toolResponse; nothing is lost, the connection survives."""
    with live_server() as server:
        cfg = write_config(
            tmp_path / "voiced.toml",
            tmp_path,
            extra=textwrap.dedent("""
            [live]
            model = "gemini-3.1-flash-live-preview"

            [[tools]]
            name = "slow"
            description = "Takes a while."
            timeout = 20
            command = { argv = ["/bin/sleep", "1.5"] }
        """),
        )
        d = spawn(cfg, server.endpoint())
        d.wait_control(timeout=60)
        d.control("say", text="call slow")
        d.wait_status(lambda st: st["tools_running"] == 1)
        assert d.control("ptt", action="start")["ok"]
        time.sleep(0.3)
        assert d.control("ptt", action="stop")["ok"]
        assert d.control("status")["status"]["tools_running"] == 1  # still pending: audio held
        _until(lambda: [r for r in replies(server) if "slow returned" in r], what="slow spoken")
        _until(
            lambda: [r for r in replies(server) if "seconds of audio" in r],
            what="held press answered",
        )
        assert len(server.sessions) == 1 and len(server.sessions[0].connections) == 1
        # Synchronous only: nothing to schedule, so no scheduling on the wire.
        assert [r[1:] for c in server.connections for r in c.tool_responses] == [("slow", "")]
        assert "1008" not in str(d.control("status")["status"].get("last_error"))


def test_builtins_end_to_end(spawn: Any, tmp_path: Path) -> None:
    """The device's own tools through the real daemon: volume (kept), mute (presses
    refused while muted), new conversation, and a timer that comes back spoken."""
    with live_server() as server:
        cfg = write_config(
            tmp_path / "voiced.toml",
            tmp_path,
            extra="".join(
                f'[[tools]]\nbuiltin = "{b}"\n'
                for b in (
                    "set_volume",
                    "get_volume",
                    "stop",
                    "mute",
                    "new_conversation",
                    "set_timer",
                )
            ),
        )
        d = spawn(cfg, server.endpoint())
        d.wait_control(timeout=60)

        def ask(text: str, needle: str) -> None:
            d.control("say", text=text)
            _until(lambda: [r for r in replies(server) if needle in r], what=needle)

        ask('call set_volume {"percent": 40}', 'set_volume returned {"volume_percent":40}')
        ask("call get_volume", 'get_volume returned {"volume_percent":40}')
        assert json.loads((tmp_path / "state" / "volume.json").read_text()) == {"volume": 0.4}
        ask('call mute {"muted": true}', 'mute returned {"muted":true}')
        d.wait_status(lambda st: st["muted"] and st["state"] == "muted")
        assert d.control("ptt", action="start")["ok"] is False  # presses are ignored
        ask('call mute {"muted": false}', 'mute returned {"muted":false}')
        d.wait_status(lambda st: not st["muted"] and st["state"] == "idle")
        ask("call stop", 'stop returned {"stopped":true}')
        ask(
            'call set_timer {"seconds": 8, "label": "tea"}',
            'set_timer returned {"due_in_seconds":8,"timer":"tea"}',
        )
        # Due 8 nominal seconds later (2 wall seconds at the test's time scale): the model is
        # told to say it.
        _until(
            lambda: any(
                "Your timer tea is done." in (t.text or "") and t.replies
                for s in server.sessions
                for t in s.user_turns
            ),
            what="the timer spoken",
        )
        sessions = len(server.sessions)
        # The call's own session is the one forgotten: its result goes to the next one as
        # context, nothing is spoken about it.
        d.control("say", text="call new_conversation")
        _until(lambda: len(server.sessions) > sessions, what="a new session")
        # The volume survives a restart of the daemon.
        d.signal(15)
        assert d.wait() == 0
        d2 = spawn(cfg, server.endpoint())
        d2.wait_control(timeout=60)
        assert "volume 40% (kept from the last run)" in d2.log()
