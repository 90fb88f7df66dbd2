"""Turn taking: push-to-talk, energy VAD, text, clientContent, barge-in,
roles (LIVE_PROTOCOL.md §3–§4)."""

from __future__ import annotations

import hashlib

import pytest

from daemon import wire
from daemon.liveserver import LiveServer, ServerLimits
from tests.liveserver.harness import (
    RawClient,
    audio_of,
    handle_of,
    no_message,
    run,
    silence,
    text_of,
    tone,
)

FAST = ServerLimits(time_scale=600.0)
# Realtime clock, replies streamed 8x faster than realtime: a reply lasts long enough to barge in.
SLOW_REPLY = ServerLimits(time_scale=1.0, reply_pace=8.0)


def kinds(messages, usage: bool = False):
    """Message kinds in order; serverContent is split into its fields."""
    out = []
    for m in messages:
        for key, value in m.items():
            if key != "usageMetadata" or usage:
                out.extend(value if key == "serverContent" else [key])
    return out


async def stream(client: RawClient, pcm: bytes, chunk: int = 640) -> None:
    for i in range(0, len(pcm), chunk):
        await client.send(wire.encode_audio(pcm[i : i + chunk]))


def test_vad_turn_is_cut_by_energy_and_silence():
    pcm = silence(0.3) + tone(1.0) + silence(0.8)

    async def body():
        async with LiveServer(limits=FAST, voice="synthetic") as server:
            client = await RawClient.open(server.endpoint())
            await client.setup(push_to_talk=False)
            await stream(client, pcm)
            msgs = await client.until_turn_complete()
            # Speech from 0.3 s; the turn ends after 500 ms of silence (default silenceDurationMs).
            heard = pcm[int(0.3 * 32000) : int(1.8 * 32000)]
            digest = hashlib.sha256(heard).hexdigest()
            assert text_of(msgs) == f"Turn 1: I heard 1.50 seconds of audio, digest {digest[:6]}."
            turn = server.sessions[0].user_turns[0]
            assert (turn.source, turn.audio_digest) == ("vad", digest)
            assert server.sessions[0].audio_digest == hashlib.sha256(pcm).hexdigest()

    run(body)


def test_vad_audio_stream_end_ends_the_turn_at_once():
    pcm = silence(0.2) + tone(0.6)

    async def body():
        async with LiveServer(limits=FAST, voice="synthetic") as server:
            client = await RawClient.open(server.endpoint())
            await client.setup(push_to_talk=False)
            await stream(client, pcm)
            await no_message(client, 0.2)  # still speaking: no turn yet
            await client.send(wire.audio_stream_end_message())
            msgs = await client.until_turn_complete()
            assert "I heard 0.60 seconds of audio" in text_of(msgs)

    run(body)


def test_vad_speech_interrupts_the_reply():
    async def body():
        async with LiveServer(limits=SLOW_REPLY, voice="synthetic") as server:
            client = await RawClient.open(server.endpoint())
            await client.setup(push_to_talk=False)
            await stream(client, tone(0.5) + silence(0.6))
            await client.recv_until(lambda m: "modelTurn" in m.get("serverContent", {}))
            await stream(client, tone(0.2))
            msgs = await client.until_turn_complete()
            assert kinds(msgs)[-2:] == ["interrupted", "turnComplete"]
            assert "generationComplete" not in kinds(msgs)
            assert server.sessions[0].user_turns[0].interrupted == 1

    run(body)


def test_activity_start_with_vad_on_closes_1007():
    async def body():
        async with LiveServer(limits=FAST, voice="synthetic") as server:
            client = await RawClient.open(server.endpoint())
            await client.setup(push_to_talk=False)
            await client.send(wire.activity_start_message())
            closed = await client.expect_close()
            assert (closed.code, closed.reason) == (1007, "Request contains an invalid argument.")

    run(body)


def test_ptt_audio_outside_activity_is_received_but_not_a_turn():
    async def body():
        async with LiveServer(limits=FAST, voice="synthetic") as server:
            client = await RawClient.open(server.endpoint())
            await client.setup()
            await stream(client, tone(0.4))
            await no_message(client, 0.2)
            msgs = await client.ptt_turn(tone(0.3, freq=440))
            assert "I heard 0.30 seconds" in text_of(msgs)
            session = server.sessions[0]
            assert session.audio_bytes_received == int(0.7 * 32000)
            assert len(session.user_turns) == 1
            # Audio outside a turn is in audio_digest only, not in turn_audio_digest.
            assert (
                session.audio_digest == hashlib.sha256(tone(0.4) + tone(0.3, freq=440)).hexdigest()
            )
            assert session.turn_audio_digest == hashlib.sha256(tone(0.3, freq=440)).hexdigest()

    run(body)


def test_activity_start_mid_reply_sends_interrupted_then_turn_complete():
    async def body():
        async with LiveServer(limits=SLOW_REPLY, voice="synthetic") as server:
            client = await RawClient.open(server.endpoint())
            await client.setup()
            await client.send(wire.activity_start_message())
            await stream(client, tone(0.5))
            await client.send(wire.activity_end_message())
            before = await client.recv_until(lambda m: "modelTurn" in m.get("serverContent", {}))
            await client.send(wire.activity_start_message())
            msgs = await client.until_turn_complete()
            assert kinds(msgs)[-2:] == ["interrupted", "turnComplete"]
            assert "generationComplete" not in kinds(before + msgs)
            # The update after an interrupted turn is a boundary: a fresh handle.
            assert handle_of([await client.recv()])
            turn = server.sessions[0].user_turns[0]
            assert (turn.replies, turn.interrupted) == (0, 1)
            # The second press continues as a new turn and is answered in full.
            await stream(client, tone(0.3))
            await client.send(wire.activity_end_message())
            msgs = await client.until_turn_complete()
            assert "generationComplete" in kinds(msgs) and text_of(msgs).startswith("Turn 2:")
            roles = [r for r, _ in server.sessions[0].history]
            assert roles == ["user", "model", "user", "model"]  # the cut reply is kept, cut

    run(body)


def test_no_interruption_lets_the_reply_finish_then_answers_the_next_turn():
    async def body():
        async with LiveServer(limits=SLOW_REPLY, voice="synthetic") as server:
            client = await RawClient.open(server.endpoint())
            await client.setup(activity_handling="NO_INTERRUPTION")
            await client.send(wire.activity_start_message())
            await stream(client, tone(0.5))
            await client.send(wire.activity_end_message())
            await client.recv_until(lambda m: "modelTurn" in m.get("serverContent", {}))
            await client.send(wire.activity_start_message())
            await stream(client, tone(0.4))
            await client.send(wire.activity_end_message())
            first = await client.until_turn_complete()
            second = await client.until_turn_complete()
            assert "interrupted" not in kinds(first + second)
            assert text_of(second).startswith("Turn 2: I heard 0.40")
            assert [t.replies for t in server.sessions[0].user_turns] == [1, 1]

    run(body)


def test_realtime_text_is_a_turn():
    async def body():
        async with LiveServer(limits=FAST, voice="synthetic") as server:
            client = await RawClient.open(server.endpoint())
            await client.setup()
            await client.send(wire.text_message("hello there"))
            msgs = await client.until_turn_complete()
            assert text_of(msgs) == "Turn 1: you wrote \u201chello there\u201d."
            assert len(audio_of(msgs)) > 0
            assert server.sessions[0].history[0] == ("user", "hello there")
            assert server.sessions[0].user_turns[0].source == "text"

    run(body)


def test_client_content_without_turn_complete_is_history_only():
    async def body():
        async with LiveServer(limits=FAST, voice="synthetic") as server:
            client = await RawClient.open(server.endpoint())
            await client.setup()
            await client.send(
                wire.client_content_message(
                    [wire.Turn("user", "remember 42"), wire.Turn("model", "ok, 42")],
                    turn_complete=False,
                )
            )
            await no_message(client, 0.3)
            session = server.sessions[0]
            assert session.history == [("user", "remember 42"), ("model", "ok, 42")]
            assert session.user_turns == []
            assert session.tokens == 3 + 2
            await client.send(
                wire.client_content_message([wire.Turn("user", "which number?")], True)
            )
            msgs = await client.until_turn_complete()
            assert text_of(msgs) == "Turn 1: you wrote \u201cwhich number?\u201d."
            assert msgs[-1]["usageMetadata"]["promptTokenCount"] == 5 + 4
            assert [r for r, _ in session.history] == ["user", "model", "user", "model"]
            assert session.user_turns[0].source == "client_content"

    run(body)


def test_system_role_turns_are_refused_on_the_gemini_api():
    async def body():
        async with LiveServer(limits=FAST, voice="synthetic") as server:
            client = await RawClient.open(server.endpoint())
            await client.setup()
            await client.send(
                wire.client_content_message([wire.Turn("system", "Speak French.")], False)
            )
            closed = await client.expect_close()
            assert (closed.code, closed.reason) == (1007, "Request contains an invalid argument.")
            assert server.sessions[0].history == []

    run(body)


def test_system_role_turns_are_accepted_on_vertex():
    async def body():
        async with LiveServer(limits=FAST, voice="synthetic") as server:
            client = await RawClient.open(server.endpoint(api="vertex"))
            await client.setup(
                model="projects/p/locations/l/publishers/google/models/gemini-3.8-live"
            )
            await client.send(
                wire.client_content_message([wire.Turn("system", "Speak French.")], False)
            )
            await client.send(wire.text_message("bonjour"))
            await client.until_turn_complete()
            assert server.sessions[0].history[:2] == [
                ("system", "Speak French."),
                ("user", "bonjour"),
            ]

    run(body)


@pytest.mark.parametrize(
    "model,accepted",
    [
        ("gemini-3.8-live", True),
        ("gemini-3.8-live-extended-thinking", True),
        ("gemini-2.5-flash-native-audio-preview-12-2025", False),
        ("gemini-3.1-flash-live-preview", False),
    ],
)
def test_context_update_only_for_the_38_live_family(model, accepted):
    async def body():
        async with LiveServer(limits=FAST, voice="synthetic") as server:
            client = await RawClient.open(server.endpoint())
            await client.setup(model=model, system_instruction="Be brief.")
            await client.send(wire.context_update_message("Be verbose."))
            if accepted:
                await client.send(wire.text_message("hi"))
                await client.until_turn_complete()
                assert server.sessions[0].system_instruction == "Be verbose."
            else:
                closed = await client.expect_close()
                assert (closed.code, closed.reason) == (
                    1007,
                    "Request contains an invalid argument.",
                )
                assert server.sessions[0].system_instruction == "Be brief."

    run(body)


def test_transcriptions_only_when_asked():
    async def body():
        async with LiveServer(limits=FAST, voice="synthetic") as server:
            client = await RawClient.open(server.endpoint())
            await client.setup(
                input_transcription=False, output_transcription=False, resumable=False
            )
            msgs = await client.ptt_turn(tone(0.3))
            assert set(kinds(msgs, usage=True)) == {
                "modelTurn",
                "generationComplete",
                "turnComplete",
                "usageMetadata",
            }
            await no_message(client, 0.2)  # no sessionResumptionUpdate without sessionResumption

    run(body)


def test_video_frames_are_counted():
    async def body():
        async with LiveServer(limits=FAST, voice="synthetic") as server:
            client = await RawClient.open(server.endpoint())
            await client.setup()
            await client.send(wire.video_message(b"\xff\xd8\xff\xe0 fake jpeg"))
            await server.wait_for(lambda: server.sessions[0].video_received == 1)

    run(body)


def test_vertex_transparent_mode_reports_last_consumed_index():
    async def body():
        async with LiveServer(limits=FAST, voice="synthetic") as server:
            client = await RawClient.open(server.endpoint(api="vertex"))
            await client.send(
                {
                    "setup": {
                        "model": "projects/p/locations/l/publishers/google/models/gemini-3.8-live",
                        "realtimeInputConfig": {"automaticActivityDetection": {"disabled": True}},
                        "sessionResumption": {"transparent": True},
                    }
                }
            )
            assert await client.recv() == {"setupComplete": {}}
            msgs = await client.ptt_turn(tone(0.1, freq=300), chunk=1600)  # start, 2 audio, end
            msgs.append(await client.recv())
            last = msgs[-1]["sessionResumptionUpdate"]
            assert last["resumable"] is True and last["lastConsumedClientMessageIndex"] == "4"

    run(body)


def test_audio_at_another_rate_is_timed_by_its_mime_type():
    async def body():
        async with LiveServer(limits=FAST, voice="synthetic") as server:
            client = await RawClient.open(server.endpoint())
            await client.setup()
            pcm = tone(0.5, rate=24_000)
            await client.send(wire.activity_start_message())
            await client.send(wire.encode_audio(pcm, rate=24_000))
            await client.send(wire.activity_end_message())
            assert "I heard 0.50 seconds" in text_of(await client.until_turn_complete())
            vad = await RawClient.open(server.endpoint())
            await vad.setup(push_to_talk=False)
            audio = tone(0.6, rate=48_000) + silence(0.7, rate=48_000)
            for i in range(0, len(audio), 1920):
                await vad.send(wire.encode_audio(audio[i : i + 1920], rate=48_000))
            assert "I heard 1.10 seconds" in text_of(await vad.until_turn_complete())

    run(body)


def test_server_stop_closes_open_connections_with_1001():
    async def body():
        async with LiveServer(limits=FAST, voice="synthetic") as server:
            client = await RawClient.open(server.endpoint())
            await client.setup()
        closed = await client.expect_close()
        assert closed.code == 1001
        rec = server.connections[0]
        assert (rec.close_code, rec.closed_by) == (1001, "server")

    run(body)
