"""
The tools and Home Assistant part of ``voiced demo`` (issue 11), after the main script.

A fresh session on the same embedded Live server, with one GPIO tool (``porch``, pin 17
on gpiozero mock pins) declared: a typed question asks for it, the server calls it, the
runner switches the pin (the timeline shows it go high), and the result is spoken.
When Debian's ``mosquitto`` is installed, a private broker runs on a loopback port, the
Home Assistant bridge publishes its discovery (the timeline lists the entities) and an
announcement sent the way Home Assistant sends it comes back spoken.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

__all__ = ["run_tools_segment"]

_PORCH = {"name": "porch", "description": "Switch the porch light on or off.", "gpio": {"pin": 17}}


async def run_tools_segment(
    server: Any, model: str, scale: float, line: Callable[[str, str], None]
) -> dict[str, Any]:
    """Run the segment; ``line(kind, text)`` prints a timeline line. Returns its totals
    (``tool_turns``, ``pin_went_high``, ``ha_entities``, ``announce_round_trip``,
    ``errors``: a list of what failed)."""
    from gpiozero.pins.mock import MockFactory, MockPWMPin

    from daemon import wire
    from daemon.app.controls import Controls, top_state
    from daemon.cli.demo.mqttbroker import PASSWORD, Broker, have_mosquitto
    from daemon.runtime.actions import ToolContext, build_tools, close_tools, parse_tools
    from daemon.runtime.connection import Endpoint
    from daemon.runtime.control import ControlServer
    from daemon.runtime.homeassistant import ENTITIES, HomeAssistant, MqttSettings
    from daemon.runtime.supervisor import Supervisor
    from daemon.runtime.tools import ToolRunner, declarations, session_tools
    from daemon.session import Session, SessionSettings
    from daemon.vocabulary import RunTool, ShowStates

    totals: dict[str, Any] = {
        "tool_turns": 0,
        "pin_went_high": False,
        "ha_entities": None,
        "announce_round_trip": None,
        "errors": [],
    }
    pins = MockFactory(pin_class=MockPWMPin)
    specs = build_tools(parse_tools([_PORCH]), ToolContext(pin_factory=pins))
    runner = ToolRunner(specs)
    setup = wire.SetupConfig(
        model=model,
        system_instruction="You control the porch light.",
        tools=declarations(specs, model),
    )
    session = Session(SessionSettings(**session_tools(specs, model)), setup, "gemini", 0.0)
    sup = Supervisor(session, Endpoint(server.endpoint(), {}), time_scale=scale, tool_runner=runner)
    controls = Controls(sup, "demo")
    pin = pins.pin(17)
    broker: Any = None
    tmp = tempfile.TemporaryDirectory()

    def on_effect(effect: Any) -> None:
        if isinstance(effect, RunTool):
            line("tool", f"the model calls {effect.name}({json.dumps(dict(effect.args))})")

    sup.subscribe(on_effect)

    def reply_to(needle: str) -> str | None:
        return next(
            (
                t.reply_text
                for t in reversed(server.user_turns)
                if needle in (t.text or "") and t.replies
            ),
            None,
        )

    async def wait(pred: Callable[[], Any], nominal: float, what: str) -> Any:
        end = time.monotonic() + nominal / scale + 30  # patient: a busy machine is slow, not wrong
        while not (got := pred()):
            if time.monotonic() > end:
                totals["errors"].append(f"tools demo: no {what}")
                line("ERROR", f"no {what}")
                return None
            await asyncio.sleep(0.01)
        return got

    async def script() -> None:
        try:
            await wait(lambda: sup.session.phase.value == "live", 60, "connection")
            question = 'call porch {"on": true}'
            line("you", f"type '{question}'")
            sup.send_text(question)
            if await wait(lambda: pin.state == 1, 60, "GPIO 17 high"):
                totals["pin_went_high"] = True
                line("GPIO", "pin 17 low → high (porch light on)")
            said = await wait(lambda: reply_to("call porch"), 60, "reply to the tool turn")
            if said:
                totals["tool_turns"] = 1
                line("reply", said)
            if home is not None:
                await _home_part(home, broker, server, wait, line, totals, ENTITIES, PASSWORD)
        finally:
            sup.stop()

    home = None
    companions = [script()]
    if have_mosquitto():
        broker = Broker(Path(tmp.name)).start()
        dispatch = ControlServer(controls, tmp.name).dispatch
        home = HomeAssistant(
            MqttSettings(
                host="127.0.0.1",
                port=broker.port,
                username="dev1",
                topic_prefix="voiced/dev1",
                reconnect_max=0.5,
            ),
            password=PASSWORD,
            device=controls,
            status=controls.status,
            dispatch=lambda req: dispatch(json.dumps(req).encode()),
        )
        companions.append(home.run())
        bridge = home

        def feed_state(effect: Any) -> None:  # what daemon/app/toolsandhome.py ToolsAndHome does
            if isinstance(effect, ShowStates):
                bridge.update("state", top_state(effect.states).value)

        sup.subscribe(feed_state)
    else:
        line("HA", "mosquitto is not installed: the Home Assistant part is skipped")
    try:
        async with asyncio.timeout(300 / scale + 120):
            await sup.run(*companions)
    except TimeoutError:
        totals["errors"].append("tools demo did not finish")
    finally:
        runner.close()
        close_tools(specs)
        pins.close()
        if broker is not None:
            broker.stop()
        tmp.cleanup()
    return totals


async def _home_part(
    home: Any,
    broker: Any,
    server: Any,
    wait: Any,
    line: Any,
    totals: dict[str, Any],
    entities: Any,
    password: str,
) -> None:
    import paho.mqtt.client as mqtt

    from daemon.runtime.homeassistant import announce_prompt

    seen: dict[str, bytes] = {}
    lock = threading.Lock()
    ha = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="demo-home-assistant")
    ha.username_pw_set("ha", password)

    def on_message(client: Any, userdata: Any, msg: Any) -> None:
        with lock:
            seen[msg.topic] = bytes(msg.payload)

    ha.on_message = on_message
    ha.on_connect = lambda c, *a: c.subscribe([("homeassistant/#", 1), ("voiced/dev1/#", 1)])
    ha.connect("127.0.0.1", broker.port)
    ha.loop_start()
    try:

        def configs() -> list[str]:
            with lock:
                return sorted(
                    t for t in seen if t.startswith("homeassistant/") and t.endswith("/config")
                )

        found = await wait(lambda: len(configs()) >= len(entities) and configs(), 60, "discovery")
        if found:
            totals["ha_entities"] = len(found)
            names = ", ".join(f"{t.split('/')[1]}.{t.split('/')[3]}" for t in found)
            line("HA", f"discovery: {len(found)} entities ({names})")
        text = "Dinner is ready"
        line("HA", f"announce: '{text}' (text entity, voiced/dev1/announce/set)")
        ha.publish("voiced/dev1/announce/set", text.encode(), qos=1)
        said = await wait(
            lambda: next(
                (
                    t.reply_text
                    for t in server.user_turns
                    if t.text == announce_prompt(text) and t.replies
                ),
                None,
            ),
            60,
            "announcement reply",
        )
        totals["announce_round_trip"] = bool(said)
        if said:
            line("reply", said)
        state = await wait(lambda: seen.get("voiced/dev1/state"), 10, "state topic")
        if state:
            line("HA", f"state entity: {state.decode()}")
    finally:
        ha.loop_stop()
        ha.disconnect()
