"""Fault "mic device vanishes", with the real thing: hw.mic.Mic on a private PulseAudio,
its source unloaded and its stream killed mid-turn (what a USB unplug does), then
plugged back. The daemon must keep its connection, show ERROR on the real LED while
the mic is gone, go back to LISTENING, and get the turn answered exactly once with
every frame the mic delivered. (bench/faults.py has the simulated variant.)"""

from __future__ import annotations

import asyncio

from daemon.events import DeviceState
from hw.mic import Mic, MicSettings
from testing.faultrig import FaultRig, until
from tests.hw.harness import tone


def test_mic_unplugged_mid_turn_and_plugged_back(pulse) -> None:
    def make_mic(post):
        return Mic(
            MicSettings(
                device="vmic",
                device_rate=48000,
                stall_timeout=0.5,
                reopen_initial=0.1,
                reopen_max=0.3,
            ),
            post,
        )

    async def body() -> None:
        async with FaultRig(mic=make_mic) as r:
            assert r.sup is not None and r.mic.device_name == "vmic"
            connections = len(r.server.connections)
            r.soft_button.press()
            feed = pulse.play_into_mic(tone(440, 48000, 0.6, 0.5), 48000)
            await asyncio.to_thread(feed.wait, 10)
            module = next(
                line.split()[0]
                for line in pulse.pactl("list", "short", "modules").splitlines()
                if "source_name=vmic" in line
            )
            pulse.pactl("unload-module", module)
            for line in pulse.pactl("list", "short", "source-outputs").splitlines():
                pulse.cli(f"kill-source-output {line.split()[0]}")
            await until(lambda: r.led.shown is DeviceState.ERROR, 5, "LED error")
            pulse.pactl(
                "load-module", "module-remap-source", "source_name=vmic", "master=micfeed.monitor"
            )
            await until(lambda: r.led.shown is DeviceState.LISTENING, 10, "LED listening again")
            feed = pulse.play_into_mic(tone(660, 48000, 0.4, 0.5), 48000)
            await asyncio.to_thread(feed.wait, 10)
            r.soft_button.release()
            await until(
                lambda: r.server.user_turns and r.server.user_turns[-1].replies, 20, "the answer"
            )
            await until(r.is_idle, 20, "IDLE")
            st = r.sup.stats()
            turn = r.server.user_turns[-1]
            assert len(r.server.user_turns) == 1 and turn.replies == 1
            assert turn.audio_bytes == st.frames_captured * 640 > 0, (turn.audio_bytes, st)
            assert st.retries == 0 and len(r.server.connections) == connections
            assert r.led.shown is DeviceState.IDLE

    async def main() -> None:
        async with asyncio.timeout(60):
            await body()

    asyncio.run(main())
