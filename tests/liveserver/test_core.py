"""Core behaviour of the local Live server: turns, replies, resumption, caps (raw websockets)."""

from __future__ import annotations

import hashlib
import time

from daemon.liveserver import LiveServer, ServerLimits
from tests.liveserver.harness import RawClient, audio_of, handle_of, run, text_of, tone

FAST = ServerLimits(time_scale=600.0)


def test_ptt_turn_reply_names_the_audio_heard():
    async def body():
        async with LiveServer(limits=FAST, voice="synthetic") as server:
            client = await RawClient.open(server.endpoint())
            await client.setup()
            pcm = tone(1.4)
            msgs = await client.ptt_turn(pcm)
            digest = hashlib.sha256(pcm).hexdigest()
            said = text_of(msgs)
            assert said == f"Turn 1: I heard 1.40 seconds of audio, digest {digest[:6]}."
            assert (
                text_of(msgs, "inputTranscription")
                == f"[1.40 seconds of audio, digest {digest[:6]}]"
            )
            reply = audio_of(msgs)
            assert len(reply) > 24_000 * 2 // 2  # at least half a second of 24 kHz s16le
            # generationComplete, then turnComplete with usageMetadata in the same message.
            kinds = [next(iter(m.get("serverContent", {"x": 0}))) for m in msgs]
            assert kinds[-2:] == ["generationComplete", "turnComplete"]
            usage = msgs[-1]["usageMetadata"]
            assert usage["promptTokenCount"] == 35  # 1.4 s × 25 tokens/s
            assert usage["responseTokenCount"] == -(
                -len(reply) // 1920
            )  # 25 tokens per 48 000 bytes
            assert (
                usage["totalTokenCount"] == usage["promptTokenCount"] + usage["responseTokenCount"]
            )
            # Every frame the server sends is binary UTF-8 JSON (LIVE_PROTOCOL.md §4).
            assert set(client.frame_types) == {bytes}
            session = server.sessions[0]
            assert session.audio_digest == digest
            assert session.audio_bytes_received == len(pcm)
            turn = session.user_turns[0]
            assert (turn.audio_bytes, turn.audio_digest, turn.replies, turn.source) == (
                len(pcm),
                digest,
                1,
                "activity",
            )
            assert session.history == [
                ("user", f"[1.40 seconds of audio, digest {digest[:6]}]"),
                ("model", said),
            ]
            await client.close()

    run(body)


def test_resumption_handle_restores_history_and_tokens():
    async def body():
        async with LiveServer(limits=FAST, voice="synthetic") as server:
            first = await RawClient.open(server.endpoint())
            await first.setup()
            msgs = await first.ptt_turn(tone(0.8))
            msgs.append(await first.recv())  # the update after turnComplete
            # Right after setup and at each turn boundary: a handle; mid-reply: resumable
            # false with no handle (proto3 JSON omits both defaults: {}).
            updates = [m["sessionResumptionUpdate"] for m in msgs if "sessionResumptionUpdate" in m]
            assert first.handle  # the one right after setupComplete
            assert len(updates) == 2 and updates[0] == {}
            assert updates[1]["resumable"] is True and updates[1]["newHandle"] != first.handle
            handle = handle_of(msgs)
            assert handle
            tokens = server.sessions[0].tokens
            await first.close()
            second = await RawClient.open(server.endpoint())
            await second.setup(handle=handle)
            msgs = await second.ptt_turn(tone(0.6))
            assert text_of(msgs).startswith("Turn 2: I heard 0.60 seconds")
            assert msgs[-1]["usageMetadata"]["promptTokenCount"] == tokens + 15
            assert len(server.sessions) == 1
            session = server.sessions[0]
            assert [c.resumed for c in session.connections] == [False, True]
            assert session.audio_digest == hashlib.sha256(tone(0.8) + tone(0.6)).hexdigest()
            assert session.turn_audio_digest == session.audio_digest  # all audio was in turns
            assert [r for r, _ in session.history] == ["user", "model", "user", "model"]
            await second.close()

    run(body)


def test_goaway_before_connection_cap_then_1011():
    async def body():
        limits = ServerLimits(time_scale=600.0, connection_cap=600, goaway_before=60)
        async with LiveServer(limits=limits, voice="synthetic") as server:
            client = await RawClient.open(server.endpoint())
            start = time.monotonic()
            await client.setup()
            msg = await client.recv(timeout=3)
            goaway_at = time.monotonic() - start
            assert msg == {"goAway": {"timeLeft": "60s"}}
            closed = await client.expect_close(timeout=3)
            close_at = time.monotonic() - start
            assert (closed.code, closed.reason) == (
                1011,
                "Deadline expired before operation could complete.",
            )
            # 540 and 600 nominal seconds at ×600 are 0.9 s and 1.0 s of wall time
            # (timers never fire early; under load they may fire late).
            assert 0.89 <= goaway_at < close_at and close_at >= 0.99, (goaway_at, close_at)
            rec = server.connections[0]
            assert (rec.close_code, rec.closed_by) == (1011, "server")
            assert 540 <= rec.goaway_at - rec.opened_at < 600 <= rec.closed_at - rec.opened_at

    run(body)


def test_fault_close_now_with_code_and_reason():
    async def body():
        async with LiveServer(limits=FAST, voice="synthetic") as server:
            client = await RawClient.open(server.endpoint())
            await client.setup()
            await server.wait_connections(1)
            assert server.faults.close_now(1011, "The service is currently unavailable.") == 1
            closed = await client.expect_close()
            assert (closed.code, closed.reason) == (1011, "The service is currently unavailable.")
            assert server.connections[0].faults == ["close:1011"]

    run(body)


def test_fault_close_now_1006_drops_tcp():
    async def body():
        async with LiveServer(limits=FAST, voice="synthetic") as server:
            client = await RawClient.open(server.endpoint())
            await client.setup()
            server.faults.close_now(1006)
            closed = await client.expect_close()
            assert closed.code == 1006  # no close frame received

    run(body)
