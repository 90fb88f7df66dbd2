"""Resumption, handle expiry and refusal, session caps, compression and the context window
(LIVE_PROTOCOL.md §5, §8.4–5; PITFALLS.md "Live session lifecycle")."""

from __future__ import annotations

import asyncio
import time

from daemon import wire
from daemon.liveserver import LiveServer, ServerLimits
from daemon.liveserver.turns import CONTEXT_EXHAUSTED
from tests.liveserver.harness import Closed, RawClient, handle_of, no_message, run, text_of, tone

# ×60: none of the tests on FAST waits for a cap, and at ×600 the 1 s connection (goAway
# at 0.9 s) is shorter than the CPU two synthesised replies take on a busy machine (1011).
FAST = ServerLimits(time_scale=60.0)
NOT_FOUND = (1008, "BidiGenerateContent session not found")
DEADLINE = (1011, "Deadline expired before operation could complete.")


async def one_turn_handle(server: LiveServer, **setup) -> tuple[RawClient, str]:
    client = await RawClient.open(server.endpoint())
    await client.setup(**setup)
    msgs = await client.ptt_turn(tone(0.3))
    msgs.append(await client.recv())
    handle = handle_of(msgs)
    assert handle
    return client, handle


def session_age(server: LiveServer) -> float:
    session = server.sessions[0]
    return session.connections[-1].closed_at - session.created_at


async def resume_refused(server: LiveServer, handle: str, **setup) -> Closed:
    client = await RawClient.open(server.endpoint())
    await client.setup(handle=handle, expect_complete=False, **setup)
    return await client.expect_close()


def test_each_turn_boundary_brings_a_new_handle():
    async def body():
        async with LiveServer(limits=FAST, voice="synthetic") as server:
            client, first = await one_turn_handle(server)
            msgs = await client.ptt_turn(tone(0.2))
            msgs.append(await client.recv())
            second = handle_of(msgs)
            assert second and second != first
            # One after setupComplete, one per turn boundary.
            assert server.sessions[0].handles[1:] == [first, second]

    run(body)


def test_unknown_handle_is_refused_like_the_real_api():
    async def body():
        async with LiveServer(limits=FAST, voice="synthetic") as server:
            closed = await resume_refused(server, "h-never-issued")
            assert (closed.code, closed.reason) == NOT_FOUND

    run(body)


def test_handle_expires_after_ttl_from_last_disconnect():
    limits = ServerLimits(time_scale=600.0, handle_ttl=60.0)  # 0.1 s of wall time

    async def body():
        async with LiveServer(limits=limits, voice="synthetic") as server:
            client, handle = await one_turn_handle(server)
            await asyncio.sleep(0.3)  # still open: the handle stays valid while connected
            await client.close()
            await server.wait_closed(1)
            resumed = await RawClient.open(server.endpoint())
            await resumed.setup(handle=handle)  # within the TTL after the disconnect
            await resumed.close()
            await server.wait_closed(2)
            await asyncio.sleep(0.2)
            closed = await resume_refused(server, handle)
            assert (closed.code, closed.reason) == NOT_FOUND

    run(body)


def test_resume_while_previous_socket_open_is_1011():
    async def body():
        async with LiveServer(limits=FAST, voice="synthetic") as server:
            client, handle = await one_turn_handle(server)
            closed = await resume_refused(server, handle)
            assert closed.code == 1011
            # The first connection is unharmed.
            msgs = await client.ptt_turn(tone(0.2))
            assert text_of(msgs).startswith("Turn 2:")

    run(body)


def test_refuse_next_resume_fault_then_resume_works():
    async def body():
        async with LiveServer(limits=FAST, voice="synthetic") as server:
            client, handle = await one_turn_handle(server)
            await client.close()
            server.faults.refuse_next_resume()
            closed = await resume_refused(server, handle)
            assert (closed.code, closed.reason) == NOT_FOUND
            again = await RawClient.open(server.endpoint())
            await again.setup(handle=handle)
            assert server.connections[-1].resumed

    run(body)


def test_expire_all_handles_fault():
    async def body():
        async with LiveServer(limits=FAST, voice="synthetic") as server:
            client, handle = await one_turn_handle(server)
            await client.close()
            assert server.faults.expire_all_handles() == 2  # after setup and after the turn
            closed = await resume_refused(server, handle)
            assert (closed.code, closed.reason) == NOT_FOUND

    run(body)


def test_model_cannot_change_on_resume():
    async def body():
        async with LiveServer(limits=FAST, voice="synthetic") as server:
            client, handle = await one_turn_handle(server)
            await client.close()
            closed = await resume_refused(server, handle, model="gemini-3.1-flash-live-preview")
            assert (closed.code, closed.reason) == (1007, "Request contains an invalid argument.")

    run(body)


# 900 s session cap = 1.5 s wall; the connection cap is pushed out of the way.
CAPS = ServerLimits(time_scale=600.0, connection_cap=6000.0)


def test_session_cap_without_compression_spans_connections_and_ends_the_session():
    async def body():
        async with LiveServer(limits=CAPS, voice="synthetic") as server:
            start = time.monotonic()
            client, handle = await one_turn_handle(server)
            await client.close()
            resumed = await RawClient.open(server.endpoint())
            await resumed.setup(handle=handle)
            closed = await resumed.expect_close(timeout=3)
            elapsed = time.monotonic() - start
            assert (closed.code, closed.reason) == DEADLINE
            assert elapsed >= 1.49, elapsed  # 900 nominal seconds from the session's start
            assert 900 <= session_age(server) < 900 + 300
            session = server.sessions[0]
            assert session.ended and "session cap 900s" in session.ended_why
            closed = await resume_refused(server, handle)
            assert (closed.code, closed.reason) == NOT_FOUND

    run(body)


def test_video_shrinks_the_session_cap_to_two_minutes():
    async def body():
        async with LiveServer(limits=CAPS, voice="synthetic") as server:
            start = time.monotonic()
            client = await RawClient.open(server.endpoint())
            await client.setup()
            await client.send(wire.video_message(b"\xff\xd8fake"))
            closed = await client.expect_close(timeout=3)
            assert (closed.code, closed.reason) == DEADLINE
            assert time.monotonic() - start >= 0.19  # 120 s = 0.2 s wall, not 900 s = 1.5 s
            assert 120 <= session_age(server) < 900

    run(body)


def test_compression_lifts_the_session_cap():
    async def body():
        async with LiveServer(limits=CAPS, voice="synthetic") as server:
            client = await RawClient.open(server.endpoint())
            await client.setup(compression=wire.Compression())
            await no_message(client, 2.0)  # past 900 nominal seconds: still open
            assert not server.sessions[0].ended

    run(body)


def test_compression_trims_at_a_user_turn_boundary():
    async def body():
        async with LiveServer(limits=FAST, voice="synthetic") as server:
            client = await RawClient.open(server.endpoint())
            await client.setup(compression=wire.Compression(trigger_tokens=200, target_tokens=100))
            prompts = []
            for _ in range(4):
                msgs = await client.ptt_turn(tone(1.0))
                prompts.append(msgs[-1]["usageMetadata"]["promptTokenCount"])
            session = server.sessions[0]
            assert session.trims >= 1
            assert session.history[0][0] == "user"  # cut at the start of a user turn
            assert [t.replies for t in session.user_turns] == [1, 1, 1, 1]
            # Context never grows past trigger + one turn; after a trim it starts again low.
            assert max(prompts) <= 200 + 25 and min(prompts[1:]) <= 100 + 25, prompts

    run(body)


def test_context_overflow_without_compression_ends_the_session():
    limits = ServerLimits(time_scale=600.0, context_window=300)

    async def body():
        async with LiveServer(limits=limits, voice="synthetic") as server:
            client = await RawClient.open(server.endpoint())
            await client.setup()
            closed = None
            for _ in range(10):
                try:
                    await client.ptt_turn(tone(1.0))
                except Closed as exc:
                    closed = exc
                    break
            assert closed is not None and (closed.code, closed.reason) == (1011, CONTEXT_EXHAUSTED)
            session = server.sessions[0]
            assert session.ended and "context window" in session.ended_why
            assert session.tokens > 300

    run(body)


def test_drop_mid_reply_then_resume_with_the_last_handle_loses_that_turn():
    """A handle is the state it was issued for: mid-generation updates say resumable
    false because a resume would lose the turn being answered (LIVE_PROTOCOL.md §4)."""
    limits = ServerLimits(time_scale=1.0, reply_pace=8.0)

    async def body():
        async with LiveServer(limits=limits, voice="synthetic") as server:
            client = await RawClient.open(server.endpoint())
            await client.setup()
            handle = client.handle  # issued right after setupComplete: empty history
            await client.send(wire.activity_start_message())
            await client.send(wire.encode_audio(tone(0.4)))
            await client.send(wire.activity_end_message())
            msgs = await client.recv_until(lambda m: "modelTurn" in m.get("serverContent", {}))
            assert {"sessionResumptionUpdate": {}} in msgs  # resumable false while generating
            await client.close()
            await server.wait_closed(1)
            session = server.sessions[0]
            assert session.user_turns[0].dropped == 1 and session.user_turns[0].replies == 0
            resumed = await RawClient.open(server.endpoint())
            await resumed.setup(handle=handle)
            assert session.history == [] and session.user_turns[0].rolled_back
            msgs = await resumed.ptt_turn(tone(0.4))
            assert "I heard 0.40 seconds" in text_of(msgs)
            assert [r for r, _ in session.history] == ["user", "model"]

    run(body)
