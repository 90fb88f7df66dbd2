"""The supervisor's tool hook end to end: the local Live server calls a declared function,
the core asks for it (RunTool), a tiny real runner (a function table on a thread) runs it
and posts ToolDone, and the answer goes back as toolResponse (issue 10 item 5)."""

from __future__ import annotations

import asyncio
import random
import shutil
import threading
from pathlib import Path
from typing import Any, Callable, Mapping

from daemon import wire
from daemon.events import DeviceState
from daemon.liveserver import LiveServer, ServerLimits
from daemon.runtime.actions import parse_tools
from daemon.runtime.connection import Endpoint
from daemon.runtime.supervisor import Inbox, Supervisor, ToolPool
from daemon.runtime.tools import ToolRunner, declarations, session_tools
from daemon.session import Play, Session, SessionSettings, ToolDone
from tests.core.harness import MODEL
from tests.runtime.harness import run, until

LIGHTS = {
    "name": "lights",
    "description": "Switch the kitchen lights.",
    "parameters": {"type": "object", "properties": {"on": {"type": "boolean"}}},
}


class TableRunner:
    """Runs ``table[name](**args)`` on the supervisor's tool pool and posts the result."""

    def __init__(self, table: Mapping[str, Callable[..., Any]]) -> None:
        self.table = table
        self.started: list[tuple[str, str, dict]] = []
        self.cancelled: list[str] = []
        self.threads: list[str] = []

    def start(self, call_id: str, name: str, args: Mapping[str, Any], host: ToolPool) -> None:
        self.started.append((call_id, name, dict(args)))

        def work() -> Any:
            self.threads.append(threading.current_thread().name)
            return self.table[name](**args)

        def done(future: asyncio.Future[Any]) -> None:
            exc = future.exception()
            # A failed tool is an answer too (F18).
            response = {"error": str(exc)} if exc else {"result": future.result()}
            host.post(ToolDone(call_id, name, response))

        host.run_in_thread(work).add_done_callback(done)

    def cancel(self, call_id: str) -> None:
        self.cancelled.append(call_id)


def test_a_declared_tool_runs_off_the_loop_and_its_result_is_spoken() -> None:
    async def body() -> None:
        scale = 10.0  # slow enough for a loaded machine: setup timeout 1.5 s wall
        switched: list[bool] = []
        runner = TableRunner({"lights": lambda on: switched.append(on) or ("on" if on else "off")})
        async with LiveServer(limits=ServerLimits(time_scale=scale), voice="synthetic") as server:
            settings = SessionSettings(tools=frozenset({"lights"}))
            session = Session(
                settings,
                wire.SetupConfig(model=MODEL, tools=(LIGHTS,)),
                "gemini",
                0.0,
                rng=random.Random(1).random,
            )
            inbox = Inbox()
            sup = Supervisor(
                session,
                Endpoint(server.endpoint(), {"x-goog-api-key": "k"}),
                inbox=inbox,
                time_scale=scale,
                tool_runner=runner,
            )
            seen: list[frozenset[DeviceState]] = []
            sup.subscribe(lambda e: seen.append(e.states) if hasattr(e, "states") else None)
            task = asyncio.get_running_loop().create_task(sup.run())
            try:
                await until(lambda: session.phase.value == "live", timeout=30.0, what="live")
                sup.send_text('call lights {"on": true}')
                turns = await server.wait_turns(1, timeout=30.0)
                assert turns[0].replies == 1, turns[0]
                assert "lights returned" in turns[0].reply_text and '"on"' in turns[0].reply_text
                assert switched == [True]
                assert [s[1] for s in runner.started] == ["lights"]
                assert runner.threads[0].startswith("voiced-tool")  # the supervisor's pool
                assert any(DeviceState.WORKING in s for s in seen), "WORKING never shown"
                await until(
                    lambda: session.stats(sup.now()).asks_answered == 1,
                    timeout=30.0,
                    what="answered",
                )
                assert session.stats(sup.now()).tools_run == 1
            finally:
                sup.stop()
                await asyncio.wait_for(task, 10)

    run(body, timeout=120.0)


def test_without_a_runner_a_call_is_answered_with_an_error_not_silence() -> None:
    async def body() -> None:
        scale = 10.0  # slow enough for a loaded machine: setup timeout 1.5 s wall
        async with LiveServer(limits=ServerLimits(time_scale=scale), voice="synthetic") as server:
            settings = SessionSettings(tools=frozenset({"lights"}))
            session = Session(
                settings,
                wire.SetupConfig(model=MODEL, tools=(LIGHTS,)),
                "gemini",
                0.0,
                rng=random.Random(1).random,
            )
            sup = Supervisor(
                session, Endpoint(server.endpoint(), {"x-goog-api-key": "k"}), time_scale=scale
            )
            task = asyncio.get_running_loop().create_task(sup.run())
            try:
                await until(lambda: session.phase.value == "live", timeout=30.0, what="live")
                sup.send_text('call lights {"on": false}')
                turns = await server.wait_turns(1, timeout=30.0)
                assert "no tool runner" in turns[0].reply_text
            finally:
                sup.stop()
                await asyncio.wait_for(task, 10)

    run(body, timeout=120.0)


def _tool_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("voiced-tool")]


def _alive(prog: Path) -> bool:
    """Whether a live (not zombie) process runs ``prog``."""
    for entry in Path("/proc").iterdir():
        try:
            if (
                entry.name.isdigit()
                and str(prog).encode() in (entry / "cmdline").read_bytes()
                and (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
            ):
                return True
        except OSError:
            continue
    return False


def _tool_supervisor(
    server: LiveServer, specs: Any, scale: float, runner: ToolRunner
) -> Supervisor:
    """A supervisor with no hardware whose session declares ``specs`` to ``server``."""
    session = Session(
        SessionSettings(**session_tools(specs, MODEL)),
        wire.SetupConfig(model=MODEL, tools=declarations(specs, MODEL)),
        "gemini",
        0.0,
        rng=random.Random(1).random,
    )
    endpoint = Endpoint(server.endpoint(), {"x-goog-api-key": "k"})
    return Supervisor(session, endpoint, time_scale=scale, tool_runner=runner)


def test_no_tool_thread_or_process_outlives_the_supervisors_stop(tmp_path: Path) -> None:
    """A command still running when the daemon stops: its process group is killed, the
    pool's threads are joined, and none of them is left once run() returned (issue 11:
    the supervisor owns every thread)."""
    prog = tmp_path / "hang-sleep"
    shutil.copy("/bin/sleep", prog)  # a unique path: /proc says whether it still runs
    specs = parse_tools(
        [
            {
                "name": "lights",
                "description": "Switch the kitchen lights.",
                "timeout": 600,
                "command": {"argv": [str(prog), "600"]},
            }
        ]
    )
    runner = ToolRunner(specs)

    async def body() -> None:
        scale = 10.0  # slow enough for a loaded machine: setup timeout 1.5 s wall
        async with LiveServer(limits=ServerLimits(time_scale=scale), voice="synthetic") as server:
            sup = _tool_supervisor(server, specs, scale, runner)
            session = sup.session
            task = asyncio.get_running_loop().create_task(sup.run())
            try:
                await until(lambda: session.phase.value == "live", timeout=30.0, what="live")
                sup.send_text("call lights")
                await until(lambda: _alive(prog), timeout=30.0, what="the command running")
                assert runner.running == 1 and _tool_threads()
            finally:
                sup.stop()
                await asyncio.wait_for(task, 30)
            # run() has returned: nothing of the tool is left, and no result was posted.
            assert _tool_threads() == []
            assert not _alive(prog)
            assert runner.running == 0 and runner.cancelled == 1

    run(body, timeout=120.0)


def test_a_silent_tools_result_is_not_spoken_and_a_default_ones_is() -> None:
    """A tool declared ``scheduling = "SILENT"``: the daemon sends its result with that
    scheduling, the server adds it to the context, and nothing plays; the same question of
    a tool with the default (INTERRUPT) is answered aloud (FIELD_REPORTS Part 3)."""
    specs = parse_tools(
        [
            {
                "name": "note",
                "description": "Take a note.",
                "scheduling": "SILENT",
                "command": {"argv": ["/bin/echo", "noted"]},
            },
            {"name": "lights", "description": "Lights.", "command": {"argv": ["/bin/true"]}},
        ]
    )

    async def body() -> None:
        scale = 10.0  # slow enough for a loaded machine: setup timeout 1.5 s wall
        async with LiveServer(limits=ServerLimits(time_scale=scale), voice="synthetic") as server:
            sup = _tool_supervisor(server, specs, scale, ToolRunner(specs))
            session = sup.session
            played: list[int] = []
            sup.subscribe(lambda e: played.append(len(e.pcm)) if isinstance(e, Play) else None)
            task = asyncio.get_running_loop().create_task(sup.run())
            try:
                await until(lambda: session.phase.value == "live", timeout=30.0, what="live")
                sup.send_text("call note")
                turns = await server.wait_turns(1, timeout=30.0)
                await until(
                    lambda: session.stats(sup.now()).asks_answered == 1,
                    timeout=30.0,
                    what="the silent ask answered",
                )
                assert (turns[0].silent_results, turns[0].reply_text) == (1, "")
                assert [r[1:] for r in server.connections[0].tool_responses] == [("note", "SILENT")]
                entries = [e.text for e in server.sessions[0].entries]
                assert any(t.startswith("[note returned") and "noted" in t for t in entries)
                assert played == []
                sup.send_text("call lights")
                turns = await server.wait_turns(2, timeout=30.0)
                assert "lights returned" in turns[1].reply_text
                await until(lambda: sum(played) > 0, timeout=30.0, what="the reply played")
                assert server.connections[0].tool_responses[1][1:] == ("lights", "INTERRUPT")
            finally:
                sup.stop()
                await asyncio.wait_for(task, 30)

    run(body, timeout=120.0)
