"""Announcements (Home Assistant's announce, a timer that is due): "through the model told
to say it verbatim, espeak-ng when offline" (issue 11). The core decides which, from what
it knows about the connection; the supervisor only synthesises and plays."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import pytest

from daemon import wire
from daemon.app.localvoice import local_voice
from daemon.liveserver.protocol import UNAVAILABLE
from daemon.runtime.connection import Endpoint
from daemon.runtime.homeassistant import announce_prompt
from daemon.runtime.supervisor import Supervisor
from daemon.session import Announce, ConnectionClosed, Session, SessionSettings, SpeakLocally, Start
from tests.app.conftest import live_server, write_config
from tests.core.harness import Harness, come_back, live
from tests.runtime.tools.harness import PREFIX, Broker, Subscriber, _until, mqtt_config

SPEAKS = SessionSettings(local_speech=True, backoff_base=0.1)
TEXT = "Dinner is ready"


def asked(h: Harness) -> list[str]:
    """Every text the model was asked (typed questions go out as realtimeInput text or
    clientContent, depending on the model)."""
    out = []
    for m in h.sent():
        if "realtimeInput" in m and "text" in m["realtimeInput"]:
            out.append(m["realtimeInput"]["text"])
        for turn in m.get("clientContent", {}).get("turns", []):
            out.extend(p.get("text", "") for p in turn.get("parts", []))
    return out


def announce(h: Harness) -> list:
    return h.feed(Announce(TEXT, announce_prompt(TEXT)))


def test_while_connected_the_model_is_asked_to_say_it_verbatim() -> None:
    h = live(SPEAKS)
    h.clear()
    effects = announce(h)
    assert h.of(SpeakLocally, effects) == []
    assert asked(h) == [announce_prompt(TEXT)]


def test_while_offline_the_device_says_it_itself_at_once() -> None:
    h = live(SPEAKS)
    h.feed(ConnectionClosed(h.conn, 1011, "The service is currently unavailable."))
    assert h.session.phase.value == "backoff"
    h.clear()
    effects = announce(h)
    assert h.of(SpeakLocally, effects) == [SpeakLocally(TEXT)]
    # …and only there: once connected again, the model is not asked to say it a second time.
    come_back(h)
    h.advance(1.0)
    assert announce_prompt(TEXT) not in asked(h)
    # Online again: through the model.
    h.clear()
    assert h.of(SpeakLocally, announce(h)) == []
    assert asked(h) == [announce_prompt(TEXT)]


def test_a_due_timer_rings_first_whichever_voice_says_it() -> None:
    from daemon.session import Earcon

    h = live(SPEAKS)
    effects = h.feed(Announce("Your timer tea is done.", "p", "new"))
    assert h.of(Earcon, effects) == [Earcon("new")] and h.of(SpeakLocally, effects) == []
    h.feed(ConnectionClosed(h.conn, 1011, "The service is currently unavailable."))
    effects = h.feed(Announce("Your timer tea is done.", "p", "new"))
    assert h.of(Earcon, effects) == [Earcon("new")]
    assert h.of(SpeakLocally, effects) == [SpeakLocally("Your timer tea is done.")]


def test_at_boot_it_waits_for_the_first_connection_and_the_model_says_it() -> None:
    """The first seconds after boot, the network fine: the connection is a moment away, so
    espeak-ng is not needed — the model says it once the connection is ready."""
    h = Harness(SPEAKS)
    h.feed(Start())  # opening, no setupComplete yet
    assert h.session.phase.value == "connecting"
    assert h.of(SpeakLocally, announce(h)) == []
    h.advance(SPEAKS.announce_wait / 2)
    assert announce_prompt(TEXT) not in asked(h)
    come_back(h)  # ready within announce_wait
    h.advance(SPEAKS.announce_wait)
    assert announce_prompt(TEXT) in asked(h)
    assert h.of(SpeakLocally, h.effects) == []


def test_at_boot_it_is_said_on_the_device_when_the_connection_is_not_ready_in_time() -> None:
    h = Harness(SPEAKS)
    h.feed(Start())
    announce(h)
    assert h.session.deadline() == pytest.approx(SPEAKS.announce_wait)
    h.clear()
    h.advance(SPEAKS.announce_wait)  # still connecting: the wait is bounded
    assert h.session.phase.value == "connecting"
    assert h.of(SpeakLocally, h.effects) == [SpeakLocally(TEXT)]
    come_back(h)
    h.advance(1.0)
    assert announce_prompt(TEXT) not in asked(h)  # said once, not twice


def test_at_boot_it_is_said_on_the_device_at_once_when_the_connection_fails() -> None:
    h = Harness(SPEAKS)
    h.feed(Start())
    announce(h)
    h.clear()
    h.feed(ConnectionClosed(h.conn, 1011, UNAVAILABLE))
    assert h.session.phase.value == "backoff"
    assert h.of(SpeakLocally, h.effects) == [SpeakLocally(TEXT)]


def test_during_a_planned_switch_it_waits_for_the_model() -> None:
    """A resume takes moments: the announcement stays in the device's model voice."""
    h = live(SPEAKS)
    h.server(wire.GoAway(1.0))
    h.advance(2.0)
    assert h.session.phase.value in ("closing", "connecting")
    assert h.of(SpeakLocally, announce(h)) == []
    assert announce_prompt(TEXT) not in asked(h)
    come_back(h)
    h.advance(1.0)
    assert announce_prompt(TEXT) in asked(h)


def test_without_a_local_voice_it_waits_for_the_connection() -> None:
    h = live(SessionSettings(backoff_base=0.1))
    h.feed(ConnectionClosed(h.conn, 1011, "The service is currently unavailable."))
    assert h.of(SpeakLocally, announce(h)) == []
    come_back(h)
    h.advance(1.0)
    assert announce_prompt(TEXT) in asked(h)


class _Speaker:
    def __init__(self) -> None:
        self.played: list[tuple[bytes, int]] = []

    def play(self, pcm: bytes, rate: int) -> None:
        self.played.append((pcm, rate))


def test_the_supervisor_speaks_with_espeak_ng_when_offline() -> None:
    """Real espeak-ng through the supervisor's own task; no Live server at all (a closed
    port): the core is offline, so the announcement is synthesised and played."""
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is not installed (bash tools/bootstrap.sh test installs it)")
    voice = local_voice()
    assert voice is not None
    speaker = _Speaker()
    session = Session(
        SessionSettings(local_speech=True), wire.SetupConfig(model="gemini-3.8-live"), "gemini", 0.0
    )
    sup = Supervisor(
        session, Endpoint("ws://127.0.0.1:9/", {}), speaker=speaker, time_scale=1.0, speech=voice
    )

    async def script() -> None:
        sup.announce(TEXT, announce_prompt(TEXT))
        for _ in range(600):
            if speaker.played:
                break
            await asyncio.sleep(0.05)
        sup.stop()

    asyncio.run(asyncio.wait_for(sup.run(script()), 60))
    [(pcm, rate)] = speaker.played
    assert rate == 24_000 and len(pcm) > 24_000  # more than half a second of speech


def test_home_assistant_announce_offline_is_spoken_on_the_device_then_online_by_the_model(
    broker: Broker, spawn: Any, tmp_path: Path
) -> None:
    """The real daemon, a real broker, espeak-ng: Home Assistant announces while the Live
    service is down (every setup refused 1011, F9) → the sim speaker plays it at once and
    the server never hears it; once the service is back an announcement goes through the
    model, asked to say it verbatim."""
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is not installed (bash tools/bootstrap.sh test installs it)")
    sub = Subscriber(broker)
    wav = tmp_path / "speaker.wav"
    with live_server() as server:
        cfg = write_config(tmp_path / "voiced.toml", tmp_path, extra=mqtt_config(broker, tmp_path))
        d = spawn(cfg, server.endpoint(), extra_args=("--speaker-wav", str(wav)))
        try:
            d.wait_control(timeout=60)
            # Subscribed to its command topics (logged once they are acknowledged).
            _until(lambda: "MQTT connected" in d.log(), what="the bridge's subscriptions")
            d.wait_status(lambda st: st["state"] == "idle", timeout=60)
            server.thread.call(server.faults.backend_down, 1e9)
            server.thread.call(server.faults.close_now, 1011, UNAVAILABLE)
            d.wait_status(lambda st: st["phase"] == "backoff", timeout=60)
            before = wav.stat().st_size
            sub.publish(f"{PREFIX}/announce/set", "Dinner is ready")
            _until(
                lambda: "saying the announcement on the device: 'Dinner is ready'" in d.log(),
                what="the offline announcement",
            )
            # espeak-ng's speech reaches the speaker: well over half a second of 24 kHz s16le.
            _until(lambda: wav.stat().st_size - before > 24_000, what="speech in the speaker")
            server.thread.call(server.faults.backend_down, 0.0)  # the service is back
            d.wait_status(lambda st: st["state"] == "idle", timeout=60)
            sub.publish(f"{PREFIX}/announce/set", "Lights out")
            _until(
                lambda: any(
                    t.text == announce_prompt("Lights out") and t.replies
                    for s in server.sessions
                    for t in s.user_turns
                ),
                what="the online announcement answered by the model",
            )
            assert not any(
                t.text == announce_prompt("Dinner is ready")
                for s in server.sessions
                for t in s.user_turns
            )
        finally:
            sub.close()
