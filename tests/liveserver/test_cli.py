"""``voiced live-server`` as a process, and the thread runner for synchronous callers."""

from __future__ import annotations

import os
import signal
import time

from daemon import wire
from daemon.liveserver import LiveServerThread, ServerLimits
from tests.liveserver.harness import RawClient, run, text_of, tone

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_cli_prints_endpoints_serves_and_stops_on_ctrl_c(server_process):
    proc = server_process(
        "--port",
        "0",
        "--time-scale",
        "600",
        "--voice",
        "synthetic",
        "--api-key",
        "k1",
        "--log-level",
        "WARNING",
    )
    lines = []
    deadline = time.monotonic() + 20
    while not any(line.strip().startswith("gemini ") for line in lines):
        assert time.monotonic() < deadline and proc.poll() is None, lines
        lines.append(proc.stdout.readline())
    url = next(line.split()[-1] for line in lines if line.strip().startswith("gemini "))
    assert url.startswith("ws://127.0.0.1:") and url.endswith(
        "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"
    )

    async def talk():
        client = await RawClient.open(url, {"x-goog-api-key": "k1"})
        await client.setup()
        msgs = await client.ptt_turn(tone(0.5))
        await client.close()
        return text_of(msgs)

    assert run(talk).startswith("Turn 1: I heard 0.50 seconds of audio")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert "stopped after 1 connections, 1 sessions, 1 turns" in out
    assert "Traceback" not in err


def test_cli_rejects_bad_options(server_process):
    proc = server_process("--time-scale", "0")
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 2 and "must be greater than 0" in err


def test_cli_port_in_use_is_a_clear_error(server_process):
    with LiveServerThread(voice="synthetic") as server:
        proc = server_process("--port", str(server.port))
        out, err = proc.communicate(timeout=20)
        assert proc.returncode == 1 and "cannot listen on 127.0.0.1" in err


def test_thread_runner_for_synchronous_callers():
    thread = LiveServerThread(limits=ServerLimits(time_scale=600), voice="synthetic")
    with thread as server:

        async def talk():
            client = await RawClient.open(server.endpoint())
            await client.setup()
            await client.send(wire.text_message("hi"))
            said = text_of(await client.until_turn_complete())
            await client.close()
            return said

        assert run(talk) == "Turn 1: you wrote \u201chi\u201d."
        assert server.sessions[0].user_turns[0].replies == 1

        async def closed_by_fault():
            client = await RawClient.open(server.endpoint())
            await client.setup()
            assert thread.call(server.faults.close_now, 1011, "Internal error occurred.") == 1
            return (await client.expect_close()).code

        assert run(closed_by_fault) == 1011


def test_cli_demo_runs_a_scripted_conversation(server_process):
    proc = server_process(
        "--demo",
        "--port",
        "0",
        "--time-scale",
        "600",
        "--voice",
        "synthetic",
        "--log-level",
        "WARNING",
    )
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, out + err
    assert "Turn 1: I heard" in out and "Turn 3: you wrote" in out
    assert "goAway: timeLeft 60 s" in out
    assert "closed by server: 1011 Deadline expired before operation could complete." in out
    assert "server saw: 2 connections, 3 turns" in out and out.rstrip().endswith("demo: OK")
