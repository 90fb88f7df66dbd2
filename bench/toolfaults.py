"""The fault matrix's tool and MQTT rows (issue 11): registered into
:data:`bench.faults.FAULTS` (imported at the end of bench/faults.py).

* ``tool_hangs`` — the press asks for a tool that never finishes: its timeout is
  answered as ``{"error": "… timed out …"}`` and spoken; the process is killed.
* ``tool_cancelled`` — a press barges in on a NON_BLOCKING call: the server cancels it,
  the running process is killed, no late result is sent (the server would close 1008
  "Requested entity was not found." for one), the barge-in turn is answered.
* ``tool_across_goaway`` — a goAway arrives while a call runs: the result is answered
  on the connection that asked, or the resumed one, and the turn is answered once.
* ``broker_down_and_back`` — the MQTT broker (a real mosquitto) goes away mid-turn and
  comes back: the turn is answered as if nothing happened; the bridge reconnects and
  republishes.

Each runs the real :class:`testing.faultrig.FaultRig` (Supervisor, Session, Connection,
LED and button on mock pins) with a :class:`daemon.runtime.tools.ToolRunner` handed to the
supervisor, and the local server's ``tool_script`` making the pressed turn call the tool.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import tempfile
from pathlib import Path
from typing import Any

from bench.faults import FaultResult, fault, recover
from daemon import wire
from daemon.liveserver import ServerLimits
from daemon.runtime.actions import parse_tools
from daemon.runtime.connection import Endpoint
from daemon.runtime.supervisor import Supervisor
from daemon.runtime.tools import ToolRunner, declarations, session_tools
from daemon.session import Session, SessionSettings
from testing import faultrig
from testing.faultrig import FaultRig, until

TOOL_SCALE = 5.0
"""Nominal seconds per wall second for these rows (the rig's own is 20)."""

_PATIENCE = 40.0
"""Wall seconds a turn may take to be answered: generous, for a loaded machine (the rows
measure outcomes, not speed; bench.faults.run_fault allows 60 s per row)."""


def _digest(audio: bytes) -> str:
    return hashlib.sha256(audio).hexdigest()


_SLEEPER = {"name": "wait", "description": "Waits.", "command": {"argv": ["/bin/sleep", "600"]}}


class ToolRig(FaultRig):
    """:class:`FaultRig` whose supervisor runs ``tools`` (``[[tools]]`` tables)."""

    def __init__(self, tools: list[dict[str, Any]], model: str = faultrig.MODEL, **kw: Any) -> None:
        self.specs = parse_tools(tools)
        self.runner = ToolRunner(self.specs)
        self.model = model
        # A gentler clock than the rig's 20: these rows run real processes and threads
        # beside the loop, and the core's 15 s setup / 30 s reply guards must still hold in
        # wall time on a loaded machine.
        kw.setdefault("limits", ServerLimits(time_scale=TOOL_SCALE))
        super().__init__(settings=SessionSettings(**session_tools(self.specs, model)), **kw)

    async def __aenter__(self) -> "ToolRig":
        await self.server.start()
        path = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"
        setup = wire.SetupConfig(
            model=self.model,
            system_instruction="Be brief.",
            tools=declarations(self.specs, self.model),
        )
        session = Session(self.settings, setup, "gemini", rng=self.rng.random)
        self.sup = Supervisor(
            session,
            Endpoint(self.server.url + path, {"x-goog-api-key": "k"}),
            inbox=self.inbox,
            speaker=self.speaker,
            button=self.button,
            led=self.led,
            time_scale=TOOL_SCALE,
            tool_runner=self.runner,
        )
        self.sup.subscribe(self.effects.append)
        self._task = asyncio.get_running_loop().create_task(self.sup.run())
        await until(self.is_idle, what="the first IDLE")
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.runner.close()
        await super().__aexit__(*exc)

    def spoken(self, needle: str) -> int:
        return sum(1 for t in self.server.user_turns if needle in (t.reply_text or ""))


@fault("tool_hangs", "the press asks for a tool that hangs (timeout answered, process killed)")
async def tool_hangs(res: FaultResult) -> None:
    async with ToolRig([{**_SLEEPER, "timeout": 0.5}]) as r:
        await recover(
            r, res, lambda: r.server.tool_script.answer_next("wait", {}), timeout=_PATIENCE
        )
        res.extra["timeouts"] = r.runner.timeouts
        res.extra["spoken_timeout"] = r.spoken("timed out after 0.5 s")


@fault(
    "tool_cancelled", "a press barges in on a NON_BLOCKING tool call (cancelled, no late result)"
)
async def tool_cancelled(res: FaultResult) -> None:
    # gemini-2.5-flash-native-audio takes NON_BLOCKING declarations (FIELD_REPORTS Part 3).
    async with ToolRig([{**_SLEEPER, "timeout": 60}]) as r:
        first = await r.turn(fault=lambda: r.server.tool_script.answer_next("wait", {}))
        await until(lambda: r.runner.running == 1, 10, "the call to run")
        await asyncio.sleep(1.0)  # past the first turn's release tail (the rig's pre-roll is exact)
        # The barge-in turn is the one that must come through whole.
        await recover(r, res, lambda: None, warm=False, timeout=_PATIENCE)
        await until(lambda: r.runner.running == 0, 10, "the call to stop")
        res.extra["cancelled"] = r.runner.cancelled
        res.extra["late_results"] = r.sent('"toolResponse"')
        res.extra["first_turn_interrupted"] = sum(
            t.interrupted for t in r.server.user_turns if t.audio_digest == _digest(first)
        )


@fault("tool_across_goaway", "a goAway arrives while a tool call runs")
async def tool_across_goaway(res: FaultResult) -> None:
    slow = {
        "name": "slow",
        "description": "Takes 10 nominal seconds.",
        "command": {"argv": ["/bin/sleep", str(10 / TOOL_SCALE)]},
        "timeout": 30,
    }
    async with ToolRig([slow]) as r:

        async def go_away_while_it_runs() -> None:
            await until(lambda: r.runner.running == 1, 15, "the call to run")
            r.server.faults.go_away_now(30)
            res.extra["goaway_while_running"] = float(r.runner.running == 1)

        def inject() -> None:
            r.server.tool_script.answer_next("slow", {})
            background.append(asyncio.get_running_loop().create_task(go_away_while_it_runs()))

        background: list[asyncio.Task[None]] = []
        await recover(r, res, inject, timeout=_PATIENCE)
        await asyncio.gather(*background)
        res.extra["spoken_results"] = r.spoken("slow returned")


@fault("broker_down_and_back", "the MQTT broker goes away mid-turn and comes back")
async def broker_down_and_back(res: FaultResult) -> None:
    from daemon.runtime.homeassistant import HomeAssistant, MqttSettings

    if shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists():
        res.outcome = "not run: mosquitto is not installed"
        return
    from daemon.cli.demo.mqttbroker import PASSWORD, Broker

    with tempfile.TemporaryDirectory() as tmp:
        broker = Broker(Path(tmp)).start()
        try:
            async with ToolRig([]) as r:
                assert r.sup is not None
                home = HomeAssistant(
                    MqttSettings(
                        host="127.0.0.1",
                        port=broker.port,
                        username="dev1",
                        topic_prefix="voiced/dev1",
                        reconnect_max=0.2,
                    ),
                    password=PASSWORD,
                    dispatch=lambda req: {"ok": True},
                    device=None,
                    status=lambda: {},
                )
                bridge = asyncio.get_running_loop().create_task(home.run())
                await asyncio.wait_for(home.connected.wait(), 15)
                await recover(r, res, broker.stop, timeout=_PATIENCE)
                broker.start()
                await until(lambda: home.connects >= 2, 15, "the bridge to reconnect")
                res.extra["mqtt_connects"] = home.connects
                bridge.cancel()
        finally:
            broker.stop()
