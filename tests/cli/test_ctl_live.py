"""The control commands, as child processes, against a running core: Supervisor + Session
on simulated hardware (hw/sim.py), the daemon's own control target (daemon/app/controls.py
``Controls``) behind the real ControlServer, and the local Live server that shows what
each command changed. (tests/app runs the whole `voiced run`; this is about the CLI.)"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from daemon import wire
from daemon.app.controls import Controls
from daemon.liveserver import LiveServer, ServerLimits
from daemon.liveserver.model import OUTPUT_RATE, synthetic_speech
from daemon.runtime.connection import Endpoint
from daemon.runtime.control import ControlServer
from daemon.runtime.supervisor import Inbox, Supervisor
from daemon.session import Session, SessionSettings
from hw.sim import make_sim_hardware
from tests import timing


def voiced(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "daemon", *argv], capture_output=True, text=True, timeout=30
    )


def test_cli_commands_change_what_the_live_server_sees(tmp_path: Path) -> None:
    rd = ("--runtime-dir", str(tmp_path))
    outputs: dict[str, subprocess.CompletedProcess[str]] = {}
    # ×20 on an idle machine: the daemon's 30 s reply timeout is then 1.5 wall seconds,
    # and each command is a Python child process that a busy machine can take longer to
    # start (a stall, a reconnect, the turn dropped). The scale drops with the measured
    # slowdown, on a loop whose clock stops while this process waits for a CPU.
    scale = timing.scaled(20.0)

    async def body() -> None:
        async with LiveServer(limits=ServerLimits(time_scale=scale), voice="synthetic") as server:
            inbox = Inbox()
            hw = make_sim_hardware(inbox.post, speed=scale)
            sup = Supervisor(
                Session(SessionSettings(), wire.SetupConfig(model="gemini-3.8-live")),
                Endpoint(server.endpoint(), {}),
                inbox=inbox,
                mic=hw.mic,
                speaker=hw.speaker,
                button=hw.button,
                led=hw.led,
                time_scale=scale,
            )
            control = ControlServer(Controls(sup, "local", hw.mic, hw.speaker), tmp_path)

            async def run(name: str, *argv: str) -> None:
                outputs[name] = await asyncio.to_thread(voiced, *argv, *rd)
                assert outputs[name].returncode == 0, (name, outputs[name].stderr)

            async def script() -> None:
                await control.start()
                try:
                    await server.wait_connections(1)
                    await run("say", "say", "what", "time", "is", "it")
                    await server.wait_for(
                        lambda: any(
                            t.text == "what time is it" and t.replies for t in server.user_turns
                        )
                    )
                    await run("ptt-start", "ptt", "start")
                    hw.mic.feed(synthetic_speech("hello there"), OUTPUT_RATE)
                    await asyncio.to_thread(hw.mic.wait_heard, 10)
                    await run("ptt-stop", "ptt", "stop")
                    await server.wait_for(
                        lambda: any(
                            t.source == "activity" and t.audio_seconds > 0.5 and t.replies
                            for t in server.user_turns
                        )
                    )
                    await run("context", "context", "I am in the kitchen")
                    await server.wait_for(
                        lambda: ("user", "I am in the kitchen") in server.sessions[0].history
                    )
                    await run("instruct", "instruct", "Answer in French.")
                    await server.wait_for(
                        lambda: server.sessions[0].system_instruction == "Answer in French."
                    )
                    await run("status", "status")
                    await run("new", "new-session")
                    await server.wait_for(
                        lambda: (
                            len(server.sessions) == 2
                            and server.sessions[1].connections[0].setup_completed_at
                        )
                    )
                finally:
                    await control.stop()
                    sup.stop()

            try:
                async with asyncio.timeout(60):
                    await sup.run(script())
            finally:
                hw.close()
            # The new session starts empty: the conversation was forgotten.
            assert server.sessions[1].history == []

    timing.run(body())
    status = outputs["status"].stdout
    assert "state        idle" in status and "endpoint     local" in status
    assert "devices      mic sim, speaker sim" in status
    assert "counts       turns 1, replies 2" in status, status
    assert "new conversation" in outputs["new"].stdout
