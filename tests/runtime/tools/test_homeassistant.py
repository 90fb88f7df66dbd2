"""Home Assistant over MQTT with the real parts: Debian's mosquitto (password file, ACL
per device), a paho subscriber playing Home Assistant, and the real daemon
(``voiced run --hw sim``) against the local Live server (daemon/runtime/homeassistant.py)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from daemon.runtime.actions import ToolContext, build_tools, parse_tools
from daemon.runtime.homeassistant import ENTITIES, HomeAssistant, MqttSettings, announce_prompt
from daemon.runtime.supervisor import ToolPool
from daemon.runtime.tools import ToolRunner
from daemon.vocabulary import ToolDone
from tests.app.conftest import write_config
from tests.runtime.tools.harness import PASSWORD, PREFIX, Broker, Subscriber, mqtt_config

NODE = "voiced_dev1"


def bridge(broker: Broker, cls: type[HomeAssistant] = HomeAssistant, **settings: Any) -> Any:
    """A bridge of ``cls`` for device dev1 on ``broker`` (password given, commands
    answered ok, no device, empty status); ``settings`` go to :class:`MqttSettings`."""
    return cls(
        MqttSettings(
            host="127.0.0.1", port=broker.port, username="dev1", topic_prefix=PREFIX, **settings
        ),
        password=PASSWORD,
        dispatch=lambda r: {"ok": True},
        device=None,
        status=lambda: {},
    )


def discovery(sub: Subscriber) -> dict[str, dict[str, Any]]:
    def configs(ms: list[tuple[str, bytes, bool]]) -> dict[str, dict[str, Any]] | None:
        found = {
            t: json.loads(p)
            for t, p, _ in ms
            if t.startswith("homeassistant/") and t.endswith("/config") and NODE in t
        }
        return found if len(found) == len(ENTITIES) else None

    return sub.wait(configs, what="every discovery config")


def test_discovery_state_and_every_command_entity(
    broker: Broker, live: Any, spawn: Any, tmp_path: Path
) -> None:
    sub = Subscriber(broker)
    cfg = write_config(tmp_path / "voiced.toml", tmp_path, extra=mqtt_config(broker, tmp_path))
    d = spawn(cfg, live.endpoint())
    try:
        d.wait_control(timeout=60)
        configs = discovery(sub)
        for topic, c in configs.items():
            component, node, object_id = topic.split("/")[1:4]
            assert node == NODE and component == ENTITIES[object_id][0]
            assert c["unique_id"] == f"{NODE}_{object_id}"
            assert c["device"]["identifiers"] == [NODE] and c["device"]["manufacturer"] == "voiced"
            assert c["availability_topic"] == f"{PREFIX}/availability"
            assert c["payload_available"] == "online" and c["payload_not_available"] == "offline"
            assert "name" in c
            for key in ("state_topic", "command_topic"):
                if key in c:
                    assert c[key].startswith(PREFIX + "/")
            if component in ("number", "switch", "button", "text"):
                assert "command_topic" in c
            else:
                assert "state_topic" in c
        assert (
            configs[f"homeassistant/sensor/{NODE}/connection_age/config"]["entity_category"]
            == "diagnostic"
        )
        # Retained, so Home Assistant sees them whenever it (re)starts: a late subscriber
        # gets every one with the retain flag.
        late = Subscriber(broker, topics=("homeassistant/#",))
        try:
            late.wait(
                lambda ms: {t for t, _, r in ms if r} >= set(configs), what="retained configs"
            )
        finally:
            late.close()
        sub.wait_value(f"{PREFIX}/availability", "online")
        sub.wait_value(f"{PREFIX}/state", "idle")
        diag = json.loads(
            sub.wait(
                lambda ms: next(
                    (
                        p
                        for t, p, _ in ms
                        if t == f"{PREFIX}/diagnostics"
                        and json.loads(p)["connection_age"] is not None
                    ),
                    None,
                )
            )
        )
        assert diag["session_age"] is not None

        # volume (number): applied, reported back, kept in the state directory
        sub.publish(f"{PREFIX}/volume/set", "30")
        sub.wait_value(f"{PREFIX}/volume", "30")
        assert json.loads((tmp_path / "state" / "volume.json").read_text()) == {"volume": 0.3}

        # mute (switch): state muted, presses refused, then unmuted
        sub.publish(f"{PREFIX}/mute/set", "ON")
        sub.wait_value(f"{PREFIX}/mute", "ON")
        sub.wait_value(f"{PREFIX}/state", "muted")
        assert d.control("status")["status"]["muted"] is True
        assert d.control("ptt", action="start")["ok"] is False  # the control socket agrees
        sub.publish(f"{PREFIX}/talk/set", "ON")  # and so does the talk switch
        sub.wait_value(f"{PREFIX}/talk", "OFF")
        sub.publish(f"{PREFIX}/mute/set", "OFF")
        sub.wait_value(f"{PREFIX}/mute", "OFF")
        d.wait_status(lambda st: st["state"] == "idle" and not st["muted"])

        # talk (switch) = voiced ptt start/stop: a turn, answered, transcripts published
        turns_before = len(live.sessions[-1].user_turns)
        sub.publish(f"{PREFIX}/talk/set", "ON")
        sub.wait_value(f"{PREFIX}/state", "listening")
        time.sleep(0.3)  # some audio from the simulated mic
        sub.publish(f"{PREFIX}/talk/set", "OFF")
        sub.wait_value(f"{PREFIX}/talk", "OFF")
        sub.wait(
            lambda ms: any(
                t == f"{PREFIX}/transcript_out" and p.startswith(b"Turn ") for t, p, _ in ms
            ),
            what="the reply's transcript",
        )
        assert len(live.sessions[-1].user_turns) == turns_before + 1
        assert live.sessions[-1].user_turns[-1].source == "activity"

        # announce (text): the model is asked to say it verbatim
        sub.publish(f"{PREFIX}/announce/set", "Dinner is ready")
        sub.wait_value(f"{PREFIX}/announce", "Dinner is ready")
        _until(
            lambda: any(
                t.text == announce_prompt("Dinner is ready")
                for s in live.sessions
                for t in s.user_turns
            )
        )

        # instruct (text): the system instruction is replaced mid-conversation
        sub.publish(f"{PREFIX}/instruct/set", "Answer like a pirate.")
        sub.wait_value(f"{PREFIX}/instruct", "Answer like a pirate.")
        _until(lambda: any("Answer like a pirate." in s.system_instruction for s in live.sessions))

        # new conversation (button)
        sessions = len(live.sessions)
        sub.publish(f"{PREFIX}/new_conversation/press", "PRESS")
        _until(lambda: len(live.sessions) > sessions)

        # availability through the retained last will when the daemon dies
        d.signal(signal.SIGKILL)
        sub.wait_value(f"{PREFIX}/availability", "offline")
        assert "voiced-voiced_dev1" not in _denied(broker)  # the daemon kept to its ACL
    finally:
        sub.close()


def _denied(broker: Broker) -> str:
    return "\n".join(line for line in broker.log_text().splitlines() if "denied" in line.lower())


def _until(predicate: Callable[[], Any], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.05)


def test_broker_down_and_back_never_touches_the_voice_path(
    broker: Broker, live: Any, spawn: Any, tmp_path: Path
) -> None:
    cfg = write_config(tmp_path / "voiced.toml", tmp_path, extra=mqtt_config(broker, tmp_path))
    d = spawn(cfg, live.endpoint())
    sub = Subscriber(broker)
    try:
        d.wait_control(timeout=60)
        discovery(sub)
        sub.close()
        broker.stop()
        # The voice path carries on: a question by text is answered while the broker is gone.
        replies = d.control("status")["status"]["replies"]
        assert d.control("say", text="are you there")["ok"]
        d.wait_status(lambda st: st["replies"] > replies and st["state"] == "idle")
        broker.start()  # same port; no persistence: every retained message is gone
        sub = Subscriber(broker)
        configs = discovery(sub)  # republished on reconnect
        assert len(configs) == len(ENTITIES)
        sub.wait_value(f"{PREFIX}/availability", "online")
        sub.wait_value(f"{PREFIX}/state", "idle")
        assert "MQTT broker" in d.log()  # the outage was logged, once per attempt
        # A clean stop (SIGTERM) says offline itself (no last will is sent then).
        d.signal(signal.SIGTERM)
        assert d.wait() == 0
        sub.wait_value(f"{PREFIX}/availability", "offline")
    finally:
        sub.close()


def test_acl_confines_a_device_to_its_prefix(broker: Broker, tmp_path: Path) -> None:
    """dev2 may not publish into dev1's topics: the broker drops it (MQTT 3.1.1 has no
    error for that), so dev1's state stays what dev1 said."""
    sub = Subscriber(broker)
    intruder = Subscriber(broker, topics=(), user="dev2")
    try:
        intruder.publish(f"{PREFIX}/state", "hacked")
        intruder.publish("voiced/dev2/state", "mine")
        sub.wait_value("voiced/dev2/state", "mine")
        assert sub.last(f"{PREFIX}/state") is None
    finally:
        sub.close()
        intruder.close()


def test_mqtt_tool_publishes_through_the_bridge(broker: Broker, tmp_path: Path) -> None:
    """An ``mqtt`` tool publishes through the running bridge from the tool's thread; the
    subscriber sees it (the same bridge the daemon runs; the press that asks for it is in
    test_e2e)."""
    (tmp_path / "pw").write_text(PASSWORD)
    specs = parse_tools(
        [
            {
                "name": "fan",
                "description": "fan",
                "parameters": {
                    "type": "object",
                    "properties": {"on": {"type": "boolean"}},
                    "required": ["on"],
                },
                "mqtt": {"topic": "home/dev1/fan/set", "payload": "{on}"},
            }
        ]
    )
    sub = Subscriber(broker)
    done: list[ToolDone] = []
    got = threading.Event()

    async def body() -> None:
        home = bridge(broker, password_file=str(tmp_path / "pw"), reconnect_max=0.5)
        runner = ToolRunner(build_tools(specs, ToolContext(publish=home.publish_threadsafe)))
        loop = asyncio.get_running_loop()
        pool = ToolPool(loop, lambda e: (done.append(e), got.set()))  # the supervisor's
        task = loop.create_task(home.run())
        try:
            await asyncio.wait_for(home.connected.wait(), 15)
            runner.start("c1", "fan", {"on": True}, pool)
            await asyncio.to_thread(got.wait, 15)
        finally:
            task.cancel()
            assert await pool.shutdown(grace=15)

    asyncio.run(body())
    try:
        assert done == [
            ToolDone("c1", "fan", {"published": "home/dev1/fan/set", "payload": "true"})
        ]
        sub.wait_value("home/dev1/fan/set", "true")
    finally:
        sub.close()


def test_a_stop_while_announcing_still_says_offline(broker: Broker, tmp_path: Path) -> None:
    """SIGTERM can land while the bridge is still announcing itself on a (re)connect:
    "online" is out, the clean DISCONNECT sends no last will, so the bridge must say
    "offline" itself then too (else Home Assistant shows a stopped device as online)."""
    sub = Subscriber(broker)
    announcing = threading.Event()

    class Slow(HomeAssistant):
        async def _on_connect(self, client: Any) -> None:
            await client.publish(self.topic("availability"), b"online", qos=1, retain=True)
            announcing.set()
            await asyncio.Event().wait()  # still subscribing when the stop comes

    async def body() -> None:
        home = bridge(broker, Slow)
        task = asyncio.get_running_loop().create_task(home.run())
        await asyncio.to_thread(announcing.wait, 15)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    try:
        asyncio.run(body())
        sub.wait_value(f"{PREFIX}/availability", "online")
        sub.wait_value(f"{PREFIX}/availability", "offline")
        assert sub.last(f"{PREFIX}/availability") == b"offline"
    finally:
        sub.close()


def test_state_updates_and_tool_messages_make_no_tasks_of_their_own(
    broker: Broker, tmp_path: Path
) -> None:
    """One supervisor owns every task: the bridge is one companion, and what it publishes
    goes out through its own publisher — a burst of state changes or tool messages starts
    no task per message (it used to: ``loop.create_task`` for every update)."""
    (tmp_path / "pw").write_text(PASSWORD)
    sub = Subscriber(broker)
    counts: list[int] = []

    async def body() -> None:
        home = bridge(broker, password_file=str(tmp_path / "pw"), reconnect_max=0.5)
        task = asyncio.get_running_loop().create_task(home.run())
        try:
            await asyncio.wait_for(home.connected.wait(), 15)
            counts.append(len(asyncio.all_tasks()))
            for i in range(50):
                home.update("state", f"s{i}")
            tool = asyncio.to_thread(
                home.publish_threadsafe, "home/dev1/fan/set", b"on", 1, False, 10.0
            )
            counts.append(len(asyncio.all_tasks()))
            await tool
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(body())
    try:
        # Before: this test's task, the bridge, its publisher and ticker; after the burst:
        # the same (to_thread's coroutine is not started yet when counted).
        assert counts[1] == counts[0], counts
        sub.wait_value(f"{PREFIX}/state", "s49")
        sub.wait_value("home/dev1/fan/set", "on")
    finally:
        sub.close()


@pytest.mark.parametrize("how", ["frozen", "killed during the stop"])
def test_a_stop_while_the_broker_is_gone_ends_the_bridge(broker: Broker, how: str) -> None:
    """A stop (SIGTERM → the supervisor cancels its companions) must end the bridge even
    when the broker cannot take part: frozen (SIGSTOP) when the stop comes, or killed
    while the bridge says "offline" and disconnects. aiomqtt can raise MqttError out of
    ``async with`` on that path, replacing the CancelledError, and a retry loop that
    catches it would keep a stopping daemon waiting for its companion (e64bda8: CI hung
    300 s at the broker_down_and_back fault row's close). This test does not reproduce
    that hang's exact timing (it passes on the code before e64bda8 too); it holds the
    behaviour: cancelled, and ended, within 30 s."""

    async def body() -> None:
        home = bridge(broker, reconnect_max=0.2)
        task = asyncio.get_running_loop().create_task(home.run())
        await asyncio.wait_for(home.connected.wait(), 30)
        proc = broker.proc
        assert proc is not None
        if how == "frozen":
            os.kill(proc.pid, signal.SIGSTOP)
            task.cancel()
        else:
            task.cancel()
            await asyncio.sleep(0)  # the stop has begun: offline is being published
            proc.kill()
        try:
            done, _ = await asyncio.wait({task}, timeout=30)
        finally:
            if how == "frozen":
                os.kill(proc.pid, signal.SIGCONT)  # the fixture's stop needs it running
        assert done, "the bridge ran on after the stop"
        assert task.cancelled()

    asyncio.run(body())
