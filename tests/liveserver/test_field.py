"""The field fault modes (FIELD_REPORTS.md F1–F25), seen from a raw client on a real socket.

Every close is checked against the exact code and text the field reports; timings are
lower bounds measured on the wall clock (a busy machine can only make them later).
"""

from __future__ import annotations

import asyncio
import json

import pytest

from daemon import wire
from daemon.liveserver import LiveServer, ServerLimits
from daemon.liveserver import protocol as p
from daemon.liveserver.faults import FIELD_MODES
from tests.liveserver.harness import RawClient, audio_of, no_message, run, text_of, tone

FAST = ServerLimits(time_scale=600.0)  # 10-minute cap = 1 s
SLOW = ServerLimits(time_scale=100.0)  # for timings: 1 nominal second = 10 ms
STEADY = ServerLimits(time_scale=10.0)  # no timing at stake: caps far away on a busy machine

DEADLINE = "Deadline expired before operation could complete."


def sc(msg: dict) -> dict:
    return msg.get("serverContent", {})


async def resumed_client(server: LiveServer, handle: str) -> RawClient:
    client = await RawClient.open(server.endpoint())
    await client.setup(handle=handle)
    return client


async def answered_turn(server: LiveServer) -> tuple[RawClient, list[dict]]:
    client = await RawClient.open(server.endpoint())
    await client.setup()
    got = await client.ptt_turn(tone(0.4))
    return client, got


# --------------------------------------------------------------------------- F1, F2, F25


def test_f2_goaway_then_total_silence_until_the_deadline_close():
    async def body():
        async with LiveServer(limits=SLOW, voice="synthetic") as server:
            client = await RawClient.open(server.endpoint())
            await client.setup()
            t0 = asyncio.get_running_loop().time()
            assert server.faults.go_away_then_silence(time_left=30) == 1
            assert await client.recv() == {"goAway": {"timeLeft": "30s"}}
            await client.send(wire.text_message("hello?"))
            pong = await client.ws.ping()
            await no_message(client, 0.15)  # 15 of the 30 nominal seconds
            assert not pong.done()  # no pongs either
            closed = await client.expect_close(timeout=2)
            assert (closed.code, closed.reason) == (1011, DEADLINE)
            assert asyncio.get_running_loop().time() - t0 >= 0.3 * 0.95
            rec = server.connections[0]
            assert rec.faults == ["go_away:30:mute"] and rec.closed_by == "server"
            assert not server.user_turns  # the text was never read

    run(body)


def test_f2_armed_for_the_next_connection_at_its_scheduled_goaway():
    async def body():
        async with LiveServer(limits=FAST, voice="synthetic") as server:
            server.faults.arm("goaway_then_silence")
            client = await RawClient.open(server.endpoint())
            await client.setup()
            assert await client.recv(timeout=10) == {"goAway": {"timeLeft": "60s"}}
            pong = await client.ws.ping()
            closed = await client.expect_close(timeout=10)
            assert (closed.code, closed.reason) == (1011, DEADLINE)
            assert pong.done() and pong.exception() is not None  # ended by the close, unanswered
            rec = server.connections[0]
            assert rec.faults == ["goaway_then_silence"] and rec.closed_at - rec.opened_at >= 599

    run(body)


@pytest.mark.parametrize(
    "variant, goaway, close",
    [
        ("cap_time_left_1_5", {"goAway": {"timeLeft": "1.5s"}}, (1011, DEADLINE)),
        (
            "cap_cancelled_1000",
            {"goAway": {"timeLeft": "50s"}},
            (1000, "The operation was cancelled."),
        ),
        ("cap_no_goaway", None, (1011, DEADLINE)),
    ],
)
def test_f1_connection_cap_variants(variant, goaway, close):
    async def body():
        async with LiveServer(limits=FAST, voice="synthetic") as server:
            server.faults.arm(variant)
            client = await RawClient.open(server.endpoint())
            await client.setup()
            if goaway is not None:
                assert await client.recv(timeout=10) == goaway
            closed = await client.expect_close(timeout=10)
            assert (closed.code, closed.reason) == close
            assert [m for m in client.received if "goAway" in m] == ([goaway] if goaway else [])
            rec = server.connections[0]
            assert rec.closed_at - rec.opened_at >= 599  # at the cap, not before
            other = await RawClient.open(server.endpoint())  # only one was armed
            await other.setup()
            assert await other.recv(timeout=10) == {"goAway": {"timeLeft": "60s"}}

    run(body)


@pytest.mark.parametrize("mid_turn", [False, True])
def test_f25_close_1000_with_an_empty_reason(mid_turn):
    async def body():
        async with LiveServer(limits=SLOW, voice="synthetic") as server:
            client = await RawClient.open(server.endpoint())
            await client.setup()
            if mid_turn:
                await client.send(wire.activity_start_message())
                await client.send(wire.encode_audio(tone(0.1)))
            assert server.faults.close_now(1000, "") == 1
            closed = await client.expect_close()
            assert (closed.code, closed.reason) == (1000, "")

    run(body)


# --------------------------------------------------------------------------- F4, F6, F7


def test_f4_unknown_and_expired_handles_get_session_not_found():
    async def body():
        async with LiveServer(limits=STEADY, voice="synthetic") as server:
            client = await RawClient.open(server.endpoint())
            await client.setup()
            handle = client.handle
            await client.close()
            for h in ("h-never-issued", handle):
                if h == handle:
                    assert server.faults.expire_all_handles() >= 1
                other = await RawClient.open(server.endpoint())
                await other.setup(handle=h, expect_complete=False)
                closed = await other.expect_close()
                assert (closed.code, closed.reason) == (
                    1008,
                    "BidiGenerateContent session not found",
                )

    run(body)


def test_f6_resume_accepted_but_the_history_silently_dropped():
    async def body():
        async with LiveServer(limits=STEADY, voice="synthetic") as server:
            client, _ = await answered_turn(server)
            await client.recv()  # the handle after turnComplete
            first = await client.ptt_turn(tone(0.4, freq=250))
            before = first[-1]["usageMetadata"]["promptTokenCount"]  # turns 1 and 2 and a reply
            await client.recv()
            handle = client.received[-1]["sessionResumptionUpdate"]["newHandle"]
            await client.close()
            server.faults.forget_on_resume()
            again = await resumed_client(server, handle)  # setupComplete + a handle
            second = await again.ptt_turn(tone(0.4, freq=330))
            after = second[-1]["usageMetadata"]["promptTokenCount"]
            assert after < before / 2  # the collapse a client can watch for
            said = text_of(second)
            assert said.startswith("Turn 3:") and "I remember nothing before turn 3." in said
            session = server.sessions[0]
            assert len(server.sessions) == 1 and session.connections[1].faults == [
                "forget_on_resume"
            ]
            assert not any(text.startswith(("Turn 1", "Turn 2")) for _, text in session.history)

    run(body)


def test_f7_phantom_turn_after_a_resume_only():
    async def body():
        async with LiveServer(limits=SLOW, voice="synthetic") as server:
            client = await RawClient.open(server.endpoint())
            await client.setup()
            await client.close()
            server.faults.phantom_turn_after_resume(delay=2.5, tool_call="save_meeting_note")
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            again = await resumed_client(server, client.handle)
            got = await again.until_turn_complete(timeout=5)
            assert loop.time() - t0 >= 0.025 * 0.95  # 2.5 nominal seconds after setup
            assert got[0]["toolCall"]["functionCalls"][0]["name"] == "save_meeting_note"
            assert audio_of(got) and any(sc(m).get("generationComplete") for m in got)
            assert text_of(got) == "I'm back. Is there anything else I can help you with?"
            assert server.sessions[0].phantom_turns == 1
            assert not server.user_turns  # nobody asked
            fresh = await RawClient.open(server.endpoint())  # a new session: no phantom
            await fresh.setup()
            await no_message(fresh, 0.1)

    run(body)


def test_f7_restored_history_with_turn_complete_true_is_answered_again_verbatim():
    async def body():
        async with LiveServer(limits=STEADY, voice="synthetic") as server:
            server.faults.reanswer_history()
            client = await RawClient.open(server.endpoint())
            await client.setup()
            await client.send(
                wire.client_content_message(
                    [
                        wire.Turn("user", "What is the capital of France?"),
                        wire.Turn("model", "Paris is the capital of France."),
                    ],
                    turn_complete=True,
                )
            )
            got = await client.until_turn_complete()
            assert text_of(got) == "Paris is the capital of France."
            assert server.user_turns[0].misbehaved == "reanswer_history"

    run(body)


# --------------------------------------------------------------------------- F9, F10, F11


def test_f9_backend_down_refuses_new_and_resumed_sessions_then_recovers():
    async def body():
        async with LiveServer(limits=SLOW, voice="synthetic") as server:
            client = await RawClient.open(server.endpoint())
            await client.setup()
            await client.close()
            server.faults.backend_down(seconds=30)
            for handle in (None, client.handle):
                c = await RawClient.open(server.endpoint())
                await c.setup(handle=handle, expect_complete=False)
                closed = await c.expect_close()
                assert (closed.code, closed.reason) == (
                    1011,
                    "The service is currently unavailable.",
                )
            await asyncio.sleep(0.3)  # past the 30 nominal seconds
            ok = await resumed_client(server, client.handle)
            assert ok.handle

    run(body)


def test_f9_internal_error_in_the_middle_of_the_model_audio():
    async def body():
        async with LiveServer(limits=SLOW, voice="synthetic") as server:
            client = await RawClient.open(server.endpoint())
            await client.setup()
            server.faults.misbehave_next_reply("close_mid_audio", chunks=2)
            await client.send(wire.activity_start_message())
            await client.send(wire.encode_audio(tone(0.3)))
            await client.send(wire.activity_end_message())
            closed = await client.expect_close()
            assert (closed.code, closed.reason) == (1011, "Internal error occurred.")
            assert sum(1 for m in client.received if "modelTurn" in sc(m)) == 2
            assert server.user_turns[0].dropped == 1 and server.user_turns[0].replies == 0

    run(body)


@pytest.mark.parametrize(
    "code, reason",
    [
        (1008, "Operation is not implemented, or supported, or enabled."),
        (
            1007,
            "The audio content type (CONTENT_TYPE_AUDIO) is not supported for this model "
            "configuration.",
        ),
    ],
)
def test_f10_f11_mid_session_close_of_a_healthy_session(code, reason):
    async def body():
        async with LiveServer(limits=SLOW, voice="synthetic") as server:
            server.faults.close_after(100, code, reason)
            client = await RawClient.open(server.endpoint())
            await client.setup()  # a healthy session
            closed = await client.expect_close(timeout=10)
            assert (closed.code, closed.reason) == (code, reason)
            rec = server.connections[0]
            assert rec.closed_at - rec.setup_completed_at >= 99.9

    run(body)


def test_f11_expired_key_at_setup():
    async def body():
        async with LiveServer(limits=STEADY, voice="synthetic") as server:
            server.faults.arm("key_expired")
            client = await RawClient.open(server.endpoint())
            await client.setup(expect_complete=False)
            closed = await client.expect_close()
            assert (closed.code, closed.reason) == (
                1007,
                "API key expired. Please renew the API key.",
            )
            assert client.received == []  # no setupComplete

    run(body)


# --------------------------------------------------------------------------- F12


def test_f12_concurrent_session_cap_per_key_counts_abandoned_sockets():
    async def body():
        async with LiveServer(limits=SLOW, voice="synthetic") as server:
            server.faults.session_cap(3, abandoned_timeout=30)
            url = server.endpoint()
            key = {"x-goog-api-key": "k1"}
            clients = [await RawClient.open(url, key) for _ in range(3)]
            for c in clients:
                await c.setup()
            fourth = await RawClient.open(url, key)
            await fourth.setup(expect_complete=False)
            closed = await fourth.expect_close()
            assert (closed.code, closed.reason) == (1011, p.RESOURCE_EXHAUSTED)
            assert closed.reason.startswith("RESOURCE_EXHAUSTED")
            other = await RawClient.open(url, {"x-goog-api-key": "k2"})  # another key
            await other.setup()
            # A clean close frees a slot at once ...
            await clients[0].close()
            await server.wait_closed(2)
            ok = await RawClient.open(url, key)
            await ok.setup()
            # ... a socket dropped without a close frame does not, until the timeout.
            clients[1].ws.transport.abort()
            await server.wait_for(lambda: server.connections[1].closed_at is not None)
            assert server.connections[1].close_code == 1006
            held = await RawClient.open(url, key)
            await held.setup(expect_complete=False)
            assert (await held.expect_close()).code == 1011
            await asyncio.sleep(0.35)  # 35 nominal seconds: abandoned, forgotten
            late = await RawClient.open(url, key)
            await late.setup()

    run(body)


def test_f12_daily_budget():
    async def body():
        async with LiveServer(limits=STEADY, voice="synthetic") as server:
            server.faults.daily_budget(2)
            for _ in range(2):
                c = await RawClient.open(server.endpoint())
                await c.setup()
                await c.close()
            c = await RawClient.open(server.endpoint())
            await c.setup(expect_complete=False)
            closed = await c.expect_close()
            assert (closed.code, closed.reason) == (1011, p.RESOURCE_EXHAUSTED)
            assert server.connections[-1].faults == ["daily_budget"]

    run(body)


# --------------------------------------------------------------------------- F13


def test_f13_pongs_late_and_never_while_the_session_stays_healthy():
    async def body():
        async with LiveServer(limits=SLOW, voice="synthetic") as server:
            client = await RawClient.open(server.endpoint())
            await client.setup()
            loop = asyncio.get_running_loop()
            assert server.faults.pongs(25) == 1
            t0 = loop.time()
            await asyncio.wait_for(await client.ws.ping(), 3)
            assert loop.time() - t0 >= 0.25 * 0.95  # 25 nominal seconds late
            server.faults.pongs(None)
            pong = await client.ws.ping()
            got = await client.ptt_turn(tone(0.3))  # otherwise healthy
            assert any(sc(m).get("generationComplete") for m in got)
            await asyncio.sleep(0.5)
            assert not pong.done()
            rec = server.connections[0]
            assert rec.pings_received == 2 and rec.pongs_sent == 1
            later = await RawClient.open(server.endpoint())  # a mode: new connections too
            await later.setup()
            assert not (await later.ws.ping()).done()

    run(body)


# --------------------------------------------------------------------------- F14–F18


def test_f14_input_transcription_then_nothing():
    async def body():
        async with LiveServer(limits=SLOW, voice="synthetic") as server:
            client = await RawClient.open(server.endpoint())
            await client.setup()
            server.faults.arm("stall_after_activity_end")
            await client.send(wire.activity_start_message())
            await client.send(wire.encode_audio(tone(0.3)))
            await client.send(wire.activity_end_message())
            got = await client.recv_until(lambda m: "inputTranscription" in sc(m))
            assert sc(got[-1])["inputTranscription"]["text"].startswith("[0.30 seconds of audio")
            await no_message(client, 0.3)  # 30 nominal seconds of nothing
            assert server.user_turns[0].misbehaved == "stall_after_activity_end"
            again = await client.ptt_turn(tone(0.3, freq=440))  # the next turn is answered
            assert any(sc(m).get("generationComplete") for m in again)

    run(body)


def test_f14_turn_complete_response_rejected_without_audio():
    async def body():
        async with LiveServer(limits=SLOW, voice="synthetic") as server:
            client = await RawClient.open(server.endpoint())
            await client.setup()
            server.faults.misbehave_next_reply("reject_response")
            got = await client.ptt_turn(tone(0.3))
            assert got[-1]["serverContent"] == {
                "turnComplete": True,
                "turnCompleteReason": "RESPONSE_REJECTED",
            }
            assert not audio_of(got)
            assert not any(sc(m).get("generationComplete") for m in got)
            assert server.user_turns[0].replies == 0
            events = wire.decode_server_message(json.dumps(got[-1]))
            assert wire.TurnComplete("RESPONSE_REJECTED") in events

    run(body)


def test_f15_two_chunks_then_turn_complete_without_generation_complete():
    async def body():
        async with LiveServer(limits=SLOW, voice="synthetic") as server:
            client = await RawClient.open(server.endpoint())
            await client.setup()
            server.faults.arm("premature_turn_complete")
            got = await client.ptt_turn(tone(0.3))
            assert sum(1 for m in got if "modelTurn" in sc(m)) == 2
            assert not any(sc(m).get("generationComplete") for m in got)
            assert sc(got[-1]) == {"turnComplete": True}

    run(body)


def test_f16_interrupted_in_the_same_frame_as_audio():
    async def body():
        async with LiveServer(limits=SLOW, voice="synthetic") as server:
            client = await RawClient.open(server.endpoint())
            await client.setup()
            server.faults.arm("interrupted_with_audio")
            got = await client.ptt_turn(tone(0.3))
            both = [m for m in got if sc(m).get("interrupted") and "modelTurn" in sc(m)]
            assert len(both) == 1
            assert sc(got[-1]).get("turnComplete") and not any(
                sc(m).get("generationComplete") for m in got
            )
            assert server.user_turns[0].interrupted == 1

    run(body)


def test_f16_spurious_interrupted_after_the_next_activity_start():
    async def body():
        async with LiveServer(limits=SLOW, voice="synthetic") as server:
            client, _ = await answered_turn(server)
            await client.recv()  # the handle after turnComplete
            server.faults.spurious_interrupt()
            await client.send(wire.activity_start_message())
            assert sc(await client.recv()) == {"interrupted": True}
            assert sc(await client.recv()) == {"turnComplete": True}
            await client.send(wire.encode_audio(tone(0.3)))
            await client.send(wire.activity_end_message())
            got = await client.until_turn_complete()
            assert text_of(got).startswith("Turn 2:")  # the real reply follows

    run(body)


def test_f17_burst_then_a_late_turn_complete():
    async def body():
        async with LiveServer(limits=SLOW, voice="synthetic") as server:
            client = await RawClient.open(server.endpoint())
            await client.setup()
            server.faults.misbehave_next_reply("burst", seconds=10, within=0.3)
            loop = asyncio.get_running_loop()
            await client.send(wire.activity_start_message())
            await client.send(wire.encode_audio(tone(0.3)))
            t0 = loop.time()
            await client.send(wire.activity_end_message())
            audio = await client.recv_until(lambda m: sc(m).get("generationComplete"))
            tail = await client.until_turn_complete()
            assert len(audio_of(audio)) >= 10 * 48_000 and not audio_of(tail)
            # 0.3 s of burst + 9.7 s until turnComplete, at the earliest
            assert loop.time() - t0 >= 0.1 * 0.95
            rec = server.connections[0]
            assert rec.faults == ["reply:burst"]
            assert server.user_turns[0].replies == 1

    run(body)


def test_f17_trickle_slower_than_realtime():
    async def body():
        async with LiveServer(limits=SLOW, voice="synthetic") as server:
            client = await RawClient.open(server.endpoint())
            await client.setup()
            server.faults.misbehave_next_reply("trickle", pace=0.7, gap=1.5, every=1.0)
            loop = asyncio.get_running_loop()
            await client.send(wire.activity_start_message())
            await client.send(wire.encode_audio(tone(0.3)))
            t0 = loop.time()
            await client.send(wire.activity_end_message())
            got = await client.until_turn_complete()
            seconds = len(audio_of(got)) / 48_000
            # 0.7x realtime plus a 1.5 s gap per second of audio, at the earliest
            assert seconds > 1
            assert loop.time() - t0 >= (seconds / 0.7 + 1.5 * int(seconds)) / 100 * 0.95

    run(body)


def test_f18_undeclared_tool_call_then_nothing_until_answered():
    async def body():
        async with LiveServer(limits=SLOW, voice="synthetic") as server:
            client = await RawClient.open(server.endpoint())
            await client.setup()
            server.faults.arm("undeclared_tool_call")
            await client.send(wire.activity_start_message())
            await client.send(wire.encode_audio(tone(0.3)))
            await client.send(wire.activity_end_message())
            got = await client.recv_until(lambda m: "toolCall" in m)
            call = got[-1]["toolCall"]["functionCalls"][0]
            assert call["name"] == "not_registered" and call["id"]
            await no_message(client, 0.5)  # 50 nominal seconds of dead air
            await client.send(
                wire.tool_response_message(
                    [wire.FunctionResponse(call["id"], "not_registered", {"error": "unknown tool"})]
                )
            )
            spoken = await client.until_turn_complete()
            assert "not_registered returned" in text_of(spoken)

    run(body)


# --------------------------------------------------------------------------- selection


def test_every_field_mode_is_armable_by_name_and_unknown_names_are_refused():
    async def body():
        async with LiveServer(limits=STEADY, voice="synthetic") as server:
            for name in FIELD_MODES:
                server.faults.arm(name)
            with pytest.raises(ValueError, match="unknown fault 'nope'"):
                server.faults.arm("nope")
            with pytest.raises(ValueError, match="unknown reply fault"):
                server.faults.misbehave_next_reply("nope")

    run(body)


def test_fault_parameters_are_checked_with_a_clear_error():
    async def body():
        async with LiveServer(limits=STEADY, voice="synthetic") as server:
            with pytest.raises(ValueError, match=r"fault 'session_cap' .* refused bogus=1"):
                server.faults.arm("session_cap", bogus="1")
            with pytest.raises(ValueError, match=r"fault 'backend_down' .* refused seconds=soon"):
                server.faults.arm("backend_down", seconds="soon")

    run(body)


def test_cli_fault_flag_arms_a_mode_and_refuses_unknown_names():
    import os
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    listed = subprocess.run(
        [sys.executable, "-m", "daemon", "live-server", "--fault", "list"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listed.returncode == 0 and all(name in listed.stdout for name in FIELD_MODES)
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "daemon",
            "live-server",
            "--port",
            "0",
            "--fault",
            "session_cap:sessions=many",
        ],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2
    assert (
        "--fault session_cap: fault 'session_cap'" in bad.stderr and "sessions=many" in bad.stderr
    )


def test_cli_armed_fault_reaches_the_clients(server_process):  # noqa: F811 (fixture)
    import time

    proc = server_process(
        "--port",
        "0",
        "--time-scale",
        "600",
        "--voice",
        "synthetic",
        "--log-level",
        "WARNING",
        "--fault",
        "key_expired:count=2",
    )
    lines: list[str] = []
    deadline = time.monotonic() + 30
    while not any(line.strip().startswith("gemini ") for line in lines):
        assert time.monotonic() < deadline and proc.poll() is None, lines
        lines.append(proc.stdout.readline())
    assert any("faults armed: key_expired" in line for line in lines)
    url = next(line.split()[-1] for line in lines if line.strip().startswith("gemini "))

    async def connect() -> tuple[int | None, str]:
        client = await RawClient.open(url)
        await client.setup(expect_complete=False)
        closed = await client.expect_close(timeout=10)
        return closed.code, closed.reason

    assert run(connect) == (1007, "API key expired. Please renew the API key.")
    assert run(connect) == (1007, "API key expired. Please renew the API key.")
