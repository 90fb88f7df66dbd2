"""``voiced demo`` end to end, as a user runs it: a child process, its output, its WAV."""

from __future__ import annotations

import json
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from daemon.app import config
from daemon.cli.demo.demo import external_target
from daemon.errors import ConfigError
from tests.cli.harness import free_port, wait_listening
from tests.timing import cap, scaled


def test_demo_json_totals_show_every_limit_crossed_with_nothing_lost(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "daemon", "demo", "--json", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=150,
    )
    lines = proc.stdout.strip().splitlines()
    print(proc.stdout[-3000:], proc.stderr[-2000:])
    totals = json.loads(lines[-1])
    assert proc.returncode == 0, totals
    assert totals["turns"] >= 6 and totals["replies"] == totals["turns"]
    assert totals["frames_captured"] > 0
    assert totals["frames_lost"] == 0
    assert totals["frames_delivered"] == totals["frames_captured"]
    assert totals["digests_match"] is True
    assert totals["goaways"] >= 1 and totals["resumes"] >= 1 and totals["rollovers"] >= 1
    assert totals["errors"] == 0
    assert {"idle", "listening", "thinking", "speaking", "going_away"} <= set(
        totals["led_states_seen"]
    )
    assert totals["speech"] == "espeak-ng"  # installed here; the output says which
    # The tools part (issue 11): a tool turn with the pin high in the timeline, and with
    # mosquitto (installed by the test bootstrap) the entities and an announcement.
    assert totals["tool_turns"] == 1 and totals["pin_went_high"] is True
    assert "pin 17 low → high (porch light on)" in proc.stdout
    assert totals["ha_entities"] == 11 and totals["announce_round_trip"] is True
    assert "speech:  espeak-ng" in proc.stdout
    # The timeline names the session events in words a person reads.
    for words in (
        "goAway:",
        "resumed session",
        "rolling over to a new session",
        "barge-in",
        "pressed while closing",
        "result: PASS",
    ):
        assert words in proc.stdout, words
    # The reply audio: a real WAV, long enough, not silence.
    wav = Path(totals["reply_wav"])
    assert wav.parent == tmp_path
    with wave.open(str(wav), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth()) == (1, 2)
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64)
        seconds = w.getnframes() / w.getframerate()
    assert seconds > 10
    assert np.sqrt(np.mean(pcm * pcm)) > 300, "the reply WAV is (nearly) silent"
    print("demo wall seconds:", totals["wall_seconds"], "nominal:", totals["nominal_seconds"])


@pytest.mark.parametrize(
    "url, reason",
    [
        ("ws://example.com/x", "plain ws:// is allowed only for loopback hosts"),
        ("ws://10.0.0.5:8765", "plain ws:// is allowed only for loopback hosts"),
        ("http://127.0.0.1:1", "or a ws:// / wss:// URL"),
        ("ws:///nohost", "needs a host"),
    ],
)
def test_endpoint_rules_refuse_with_a_reason(url: str, reason: str) -> None:
    conf = config.parse({}, {})
    with pytest.raises(ConfigError, match=reason):
        external_target(url, conf)


def test_endpoint_rules_accept_loopback_and_tls() -> None:
    conf = config.parse({}, {})
    assert external_target("ws://127.0.0.1:9", conf).endpoint.url == (
        "ws://127.0.0.1:9/ws/google.ai.generativelanguage.v1beta.GenerativeService."
        "BidiGenerateContent"
    )
    assert external_target("ws://localhost:9/", conf).endpoint.url.startswith(
        "ws://localhost:9/ws/"
    )
    assert (
        external_target("wss://live.example.org/ws/x", conf).endpoint.url
        == "wss://live.example.org/ws/x"
    )
    assert external_target("local", conf).local


def test_demo_refuses_a_remote_plain_ws_endpoint_before_starting() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "daemon", "demo", "--endpoint", "ws://192.0.2.7:8765"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2
    assert "plain ws:// is allowed only for loopback hosts" in proc.stderr
    assert proc.stdout == ""


@pytest.mark.timeout(1800)  # only ends a hang: the scale is lowered under load
def test_demo_against_an_external_live_server(tmp_path: Path) -> None:
    """--endpoint: the same script against `voiced live-server` in another process (no
    inspection there: replies are checked, delivery is reported as unknown)."""
    port = free_port()
    # Two processes on their own clocks: ×50 lowered by the measured slowdown
    # (tests/timing.py), so neither's deadlines race the CPU on a busy machine.
    scale = str(round(scaled(50.0), 2))
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "daemon",
            "live-server",
            "--port",
            str(port),
            "--time-scale",
            scale,
            "--voice",
            "synthetic",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_listening(port, timeout=10.0)
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "daemon",
                "demo",
                "--json",
                "--endpoint",
                f"ws://127.0.0.1:{port}",
                "--time-scale",
                scale,
                "--synthetic-speech",
                "--out",
                str(tmp_path),
            ],
            # The demo's budget is (900 + 400) / S + 60 s; this only
            # ends a hang.
            capture_output=True,
            text=True,
            timeout=cap(120 + 1300 / float(scale)),
        )
    finally:
        server.kill()
        server.wait(10)
    print(proc.stdout[-2500:], proc.stderr[-1500:])
    totals = json.loads(proc.stdout.strip().splitlines()[-1])
    assert proc.returncode == 0
    assert totals["endpoint"].startswith(f"ws://127.0.0.1:{port}/ws/google.ai.")
    assert totals["replies"] == totals["turns"] >= 6
    assert totals["frames_delivered"] is None and totals["frames_lost"] is None
    assert totals["resumes"] >= 1 and totals["rollovers"] >= 1
    assert totals["speech"] == "synthetic"
    assert "speech-shaped synthetic signal" in proc.stdout


def test_tap_rebuilds_turns_with_the_cores_pre_roll_ring() -> None:
    from daemon.cli.demo.trace import Tap
    from daemon.events import ButtonPressed, ButtonReleased, MicFrame

    seen: list[object] = []
    tap = Tap(seen.append)
    frames = [bytes([i]) * 640 for i in range(40)]  # 20 ms frames, distinguishable
    for f in frames[:20]:
        tap.post(MicFrame(f))
    tap.post(ButtonPressed())
    for f in frames[20:25]:
        tap.post(MicFrame(f))
    tap.post(ButtonReleased(0.1))
    for f in frames[25:27]:  # fewer than the pre-roll
        tap.post(MicFrame(f))
    tap.post(ButtonPressed())
    tap.post(MicFrame(frames[27]))  # still talking: an open turn
    assert len(seen) == 31, "every event is forwarded, in order"
    first, second = tap.turns(pre_roll_ms=300)  # 300 ms = 15 frames
    assert first == b"".join(frames[5:25])
    assert second == b"".join(frames[25:28])
    assert tap.turns(pre_roll_ms=0)[0] == b"".join(frames[20:25])  # no pre-roll at all
    assert tap.turns(pre_roll_ms=30)[0] == b"".join(frames[18:25])  # 30 ms: two 20 ms frames


def test_exit_rule() -> None:
    from daemon.cli.demo.demo import passed

    good = {"turns": 8, "replies": 8, "frames_lost": 0, "errors": 0, "endpoint": "embedded"}
    assert passed(good)
    assert not passed({**good, "replies": 7})
    assert not passed({**good, "frames_lost": 3})
    assert not passed({**good, "frames_lost": None})  # embedded: delivery must be known
    assert not passed({**good, "errors": 1})
    assert passed({**good, "frames_lost": None, "endpoint": "ws://127.0.0.1:9/ws/x"})
