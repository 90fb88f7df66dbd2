"""The supervisor and the websockets adapter against the real local Live server."""

from __future__ import annotations

import asyncio
import logging
import random
import threading
from typing import Any

from daemon import wire
from daemon.events import ButtonPressed, ButtonReleased, DeviceState
from daemon.liveserver import LiveServer, ServerLimits
from daemon.runtime.connection import Endpoint
from daemon.runtime.supervisor import Inbox, Supervisor
from daemon.session import Session, SessionSettings
from tests.core.harness import MODEL
from tests.core.standins import sha
from tests.runtime.harness import Rig, run, until

SCALE = 50.0


def test_supervisor_talks_a_turn_through_the_live_server() -> None:
    async def body() -> None:
        async with LiveServer(
            limits=ServerLimits(time_scale=SCALE), voice="synthetic", api_keys={"k1"}
        ) as server:
            async with Rig(server, SessionSettings(pre_roll_ms=300), SCALE) as rig:
                await until(lambda: rig.phase == "live", what="live")
                assert DeviceState.IDLE in rig.led.shown[-1]
                idle = rig.mic.feed(20)
                rig.inbox.post(ButtonPressed())
                spoken = rig.mic.feed(50)
                rig.inbox.post(ButtonReleased(1.0))
                turns = await server.wait_turns(1)
                await until(
                    lambda: (
                        rig.speaker.played
                        and rig.sup.states() >= {DeviceState.IDLE}
                        or DeviceState.IDLE in rig.sup.states()
                    ),
                    what="reply played",
                )
                captured = b"".join(idle[-15:] + spoken)
                assert turns[0].audio_digest == sha(captured)
                assert turns[0].replies == 1
                assert server.sessions[0].audio_digest == sha(captured)
                assert rig.speaker.played, "no reply audio reached the speaker"
                assert rig.speaker.earcons == ["press", "release"]
                st = rig.sup.stats()
                assert (st.turns, st.frames_captured, st.frames_sent) == (1, 65, 65)
                assert rig.sup.heartbeat.last_mic_frame is not None
            assert rig.mic.closed and rig.phase == "stopped"
            await server.wait_closed(1)
            assert server.connections[0].close_code == 1000

    run(body)


def test_hardware_posts_from_other_threads_are_delivered_in_order() -> None:
    async def body() -> None:
        async with LiveServer(limits=ServerLimits(time_scale=SCALE), voice="synthetic") as server:
            async with Rig(server, SessionSettings(pre_roll_ms=0), SCALE) as rig:
                await until(lambda: rig.phase == "live")
                frames: list[bytes] = []

                def thread() -> None:  # as PyAudio's callback thread would
                    rig.inbox.post(ButtonPressed())
                    frames.extend(rig.mic.feed(40))
                    rig.inbox.post(ButtonReleased(0.8))

                t = threading.Thread(target=thread)
                t.start()
                t.join()
                turns = await server.wait_turns(1)
                assert turns[0].audio_digest == sha(b"".join(frames))

    run(body)


def test_wrong_key_is_fatal_and_never_retried() -> None:
    async def body() -> None:
        scale = 1000.0
        async with LiveServer(
            limits=ServerLimits(time_scale=scale), voice="synthetic", api_keys={"right"}
        ) as server:
            async with Rig(server, SessionSettings(), scale, api_key="wrong") as rig:
                await until(lambda: rig.phase == "failed", what="failed")
                assert "API key not valid" in (rig.sup.stats().last_error or "")
                await asyncio.sleep(600 / scale)  # ten nominal minutes
                assert len(server.connections) == 1
                assert DeviceState.ERROR in rig.led.shown[-1]

    run(body)


def test_unreachable_server_backs_off_without_a_storm(caplog: Any) -> None:
    async def body() -> None:
        settings = SessionSettings(backoff_base=1.0, backoff_cap=20.0)
        scale = 500.0
        rig_server = LiveServer(limits=ServerLimits(time_scale=scale))
        await rig_server.start()
        endpoint_url = rig_server.endpoint()
        await rig_server.stop()  # nothing listens there any more
        inbox = Inbox()
        session = Session(
            settings, wire.SetupConfig(model=MODEL), "gemini", 0.0, rng=random.Random(2).random
        )
        sup = Supervisor(session, Endpoint(endpoint_url, {}), inbox=inbox, time_scale=scale)
        task = asyncio.get_running_loop().create_task(sup.run())
        await asyncio.sleep(300 / scale)  # five nominal minutes
        st = sup.stats()
        sup.stop()
        await asyncio.wait_for(task, 5)
        print(f"\nretries in 300 nominal s with base 1 s, cap 20 s: {st.retries}")
        assert 3 <= st.retries <= 60, st.retries
        assert st.phase in ("backoff", "connecting")

    with caplog.at_level(logging.WARNING):
        run(body)
    assert any("reconnecting in" in r.getMessage() for r in caplog.records)


def test_typed_input_instruction_and_new_session_through_the_api() -> None:
    """Items 5 and 6 end to end: context (history only), a typed question (answered),
    an instruction change (a rollover on this model, which has no contextUpdate), and a
    new conversation (fresh session, nothing restored)."""

    async def body() -> None:
        scale = 200.0
        async with LiveServer(limits=ServerLimits(time_scale=scale), voice="synthetic") as server:
            async with Rig(server, SessionSettings(), scale) as rig:
                await until(lambda: rig.phase == "live")
                rig.sup.context("The user's name is Ana.")
                rig.sup.send_text("What is my name?")
                turns = await server.wait_turns(1)
                assert turns[0].replies == 1 and "What is my name?" in turns[0].text
                first = server.sessions[0]
                assert ("user", "The user's name is Ana.") in first.history
                await until(lambda: DeviceState.IDLE in rig.sup.states(), what="idle")
                rig.sup.instruct("Answer in French.")
                await until(
                    lambda: len(server.sessions) == 2 and rig.phase == "live",
                    what="rollover for the instruction",
                )
                second = server.sessions[1]
                assert second.system_instruction == "Answer in French."
                await until(
                    lambda: any(
                        "The user's name is Ana." in text and role == "user"
                        for role, text in second.history
                    ),
                    what="context restored",
                )
                rig.sup.new_session()
                await until(
                    lambda: len(server.sessions) == 3 and rig.phase == "live",
                    what="new conversation",
                )
                await asyncio.sleep(0.05)
                assert server.sessions[2].history == []
                assert server.sessions[2].system_instruction == "Answer in French."
                assert rig.sup.stats().rollovers == 2

    run(body)


def test_heartbeat_moves_while_idle_and_stops_with_the_loop() -> None:
    async def body() -> None:
        async with LiveServer(limits=ServerLimits(time_scale=SCALE), voice="synthetic") as server:
            rig = Rig(server, SessionSettings(), SCALE)
            rig.sup.wake_interval = 0.02
            async with rig:
                await until(lambda: rig.phase == "live")
                n = rig.sup.heartbeat.iterations
                await asyncio.sleep(0.2)
                assert rig.sup.heartbeat.iterations >= n + 5, "loop did not wake while idle"
                assert rig.sup.heartbeat.last_mic_frame is None
                rig.mic.feed(1)
                await until(lambda: rig.sup.heartbeat.last_mic_frame is not None)

    run(body)
