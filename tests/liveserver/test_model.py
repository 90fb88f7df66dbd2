"""The fake model's pure parts: VAD, words, voices, resampling, limits, store."""

from __future__ import annotations

import hashlib
import shutil

import numpy as np
import pytest

from daemon.liveserver.limits import ServerLimits, audio_tokens, text_tokens
from daemon.liveserver.model import (
    EnergyVad,
    Voice,
    _wav_pcm,
    describe_audio,
    input_text,
    reply_text,
    resample,
    synthetic_speech,
)
from daemon.liveserver.store import HandleRefused, Store
from tests.liveserver.harness import silence, tone


def test_vad_finds_start_and_end_offsets():
    vad = EnergyVad(silence_ms=500, min_speech_ms=60)
    pcm = silence(0.3) + tone(1.0) + silence(0.6)
    events = []
    for i in range(0, len(pcm), 1000):  # odd chunk size: windows straddle chunks
        events += vad.feed(pcm[i : i + 1000])
    assert [(e.kind, e.offset) for e in events] == [("start", 9600), ("end", 41600 + 16000)]


def test_vad_ignores_short_clicks_and_quiet_noise():
    vad = EnergyVad(min_speech_ms=60)
    rng = np.random.default_rng(1)
    noise = (rng.normal(0, 100, 16000)).astype("<i2").tobytes()  # about -50 dBFS
    click = tone(0.04)  # 40 ms < 60 ms
    assert vad.feed(noise + click + silence(1.0)) == []


def test_describe_audio_and_words():
    pcm = tone(1.4)
    summary = describe_audio(pcm)
    assert summary.seconds == pytest.approx(1.4)
    assert summary.digest == hashlib.sha256(pcm).hexdigest()
    assert (
        reply_text(3, summary) == f"Turn 3: I heard 1.40 seconds of audio, digest {summary.short}."
    )
    assert input_text(summary) == f"[1.40 seconds of audio, digest {summary.short}]"
    assert reply_text(2, None, "hi  there") == "Turn 2: you wrote \u201chi there\u201d."
    assert reply_text(1, None) == "Turn 1: I heard nothing."


def speechiness(pcm: bytes, rate: int = 24_000) -> dict:
    x = np.frombuffer(pcm, dtype="<i2").astype(float)
    frame = rate // 50
    frames = x[: len(x) // frame * frame].reshape(-1, frame)
    energy = np.sqrt((frames**2).mean(axis=1))
    voiced = energy > energy.max() * 0.1
    spectrum = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / rate)
    return {
        "seconds": len(x) / rate,
        "voiced_fraction": voiced.mean(),
        "pauses": int(np.sum(np.diff(voiced.astype(int)) == -1)),
        "centroid": float((freqs * spectrum).sum() / spectrum.sum()),
    }


def test_synthetic_voice_is_speech_shaped():
    text = "Turn 3: I heard 1.40 seconds of audio, digest 3fa2c1."
    pcm = synthetic_speech(text)
    s = speechiness(pcm)
    assert 2.0 < s["seconds"] < 8.0  # ~14 characters per second
    assert 0.4 < s["voiced_fraction"] < 0.95  # syllables with gaps, not a tone
    assert s["pauses"] >= 5
    assert 150 < s["centroid"] < 3000  # energy where voices are
    assert synthetic_speech(text) == pcm  # deterministic


def test_espeak_voice_when_installed():
    assert shutil.which("espeak-ng"), "espeak-ng must be installed (tools/bootstrap.sh installs it)"
    voice = Voice("auto")
    assert voice.kind == "espeak"
    text = "Turn 1: I heard 0.50 seconds of audio, digest abcdef."
    pcm = voice.speak(text)
    s = speechiness(pcm)
    assert 2.0 < s["seconds"] < 8.0 and s["pauses"] >= 3
    assert 150 < s["centroid"] < 3000
    assert voice.speak(text) is pcm  # cached by text


def test_voice_rejects_unknown_kind():
    with pytest.raises(ValueError, match="must be auto, espeak or synthetic"):
        Voice("robot")


def test_wav_parser_ignores_espeaks_streaming_length():
    fmt = (
        b"fmt "
        + (16).to_bytes(4, "little")
        + (1).to_bytes(2, "little")
        + (1).to_bytes(2, "little")
        + (22050).to_bytes(4, "little")
        + (44100).to_bytes(4, "little")
        + (2).to_bytes(2, "little")
        + (16).to_bytes(2, "little")
    )
    body = bytes(range(10))
    wav = (
        b"RIFF"
        + (0x7FFFFFFF).to_bytes(4, "little")
        + b"WAVE"
        + fmt
        + b"data"
        + (0x7FFFFFFF).to_bytes(4, "little")
        + body
        + b"\x01"
    )
    assert _wav_pcm(wav) == (body, 22050)  # odd trailing byte dropped
    with pytest.raises(ValueError):
        _wav_pcm(b"not a wav")


def test_resample_keeps_a_tone_and_the_duration():
    rate_in, rate_out = 22050, 24000
    t = np.arange(rate_in) / rate_in
    out = resample(np.sin(2 * np.pi * 440 * t), rate_in, rate_out)
    assert len(out) == rate_out
    spectrum = np.abs(np.fft.rfft(out))
    assert abs(np.argmax(spectrum) - 440) <= 1


def test_limits_scale_and_tokens():
    limits = ServerLimits(time_scale=600)
    assert limits.wall(600) == 1.0 and limits.nominal(1.0) == 600
    assert limits.reply_wall_seconds(1.66 * 600) == pytest.approx(1.0)
    assert limits.session_cap(False) == 900 and limits.session_cap(True) == 120
    assert limits.default_trigger_tokens() == int(131072 * 0.8)
    assert audio_tokens(1.4, limits) == 35 and audio_tokens(0, limits) == 0
    assert text_tokens("abcde", limits) == 2 and text_tokens("", limits) == 0
    with pytest.raises(ValueError, match="goaway_before"):
        ServerLimits(goaway_before=700)
    with pytest.raises(ValueError, match="time_scale"):
        ServerLimits(time_scale=0)


def test_store_trims_only_at_user_turn_starts():
    store = Store(ServerLimits())
    session = store.new_session("gemini-3.8-live", "gemini", now=0.0)
    for i in range(3):
        session.append("user", f"u{i}", 10, user_turn_start=True)
        session.append("model", f"m{i}", 30)
    session.append("model", "extra", 5)  # continues turn 2
    assert session.tokens == 125
    dropped = session.trim(60)
    assert dropped == 4 and session.history[0] == ("user", "u2") and session.tokens == 45
    assert session.trims == 1


def test_store_handles_expire_from_last_disconnect():
    limits = ServerLimits(handle_ttl=100)
    store = Store(limits)
    session = store.new_session("m", "gemini", now=0.0)
    handle = store.issue_handle(session, now=0.0)
    conn = store.new_connection("/p", now=0.0)
    session.connections.append(conn)
    assert store.resume(handle, now=500.0)[0] is session  # open connection: valid
    conn.closed_at = 400.0
    assert store.resume(handle, now=499.0)[0] is session
    with pytest.raises(HandleRefused, match="expired"):
        store.resume(handle, now=501.0)
    with pytest.raises(HandleRefused, match="unknown"):
        store.resume("nope", now=0.0)
    session.end("test", now=1.0)
    with pytest.raises(HandleRefused, match="ended"):
        store.resume(handle, now=401.0)


def test_store_resume_restores_the_state_the_handle_stands_for():
    from daemon.liveserver.store import UserTurn

    store = Store(ServerLimits())
    session = store.new_session("m", "gemini", now=0.0)
    session.append("user", "one", 5, user_turn_start=True)
    session.add_turn(UserTurn(1, "text", 1, text="one"), b"")
    handle = store.issue_handle(session, now=0.0)
    session.append("user", "two", 5, user_turn_start=True)
    session.add_turn(UserTurn(2, "text", 1, text="two"), b"")
    restored, snapshot = store.resume(handle, now=1.0)
    restored.restore(snapshot)
    assert restored.history == [("user", "one")] and restored.tokens == 5
    assert [t.rolled_back for t in restored.user_turns] == [False, True]
