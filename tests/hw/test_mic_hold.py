"""The mic's idle hold (issue 13): between ``hold`` and ``release`` the capture framer
keeps raw device audio only, and resamples the pre-roll when released. Every frame it
ever gives out must be, bit for bit, the frame at the same place of the stream that
resampling everything all along gives: then the pre-roll/live boundary cannot click.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from hw.mic import CaptureFramer

FRAME = 640
PRE_ROLL = 300 * 32  # the core's default pre-roll in bytes: 15 frames
KEEP = PRE_ROLL // FRAME


def _device_audio(rate: int, seconds: float, channels: int = 1) -> bytes:
    # A tone plus noise up to the device's Nyquist: every filter tap matters.
    n = int(rate * seconds)
    rng = np.random.default_rng(rate)
    t = np.arange(n) / rate
    mono = 8000 * np.sin(2 * np.pi * 440 * t) + rng.normal(0, 3000, n)
    pcm = np.clip(mono, -32768, 32767).astype("<i2")
    if channels > 1:
        pcm = np.stack([pcm[::-1]] * (channels - 1) + [pcm], axis=1).ravel()
    return pcm.tobytes()


def _chunks(pcm: bytes, sizes: list[int]) -> list[bytes]:
    out, i, k = [], 0, 0
    while i < len(pcm):
        out.append(pcm[i : i + sizes[k % len(sizes)]])
        i += sizes[k % len(sizes)]
        k += 1
    return out


def _reference(rate: int, pcm: bytes, channels: int, channel: int) -> list[bytes]:
    frames: list[bytes] = []
    framer = CaptureFramer(lambda e: frames.append(e.pcm), FRAME)  # type: ignore[attr-defined]
    framer.configure(rate, channels, channel)
    framer.feed(pcm)
    return frames


def _drive(
    rate: int, chunks: list[bytes], plan: dict[int, str], channels: int = 1, channel: int = 0
) -> tuple[list[bytes], list[list[bytes]], CaptureFramer]:
    """Feed ``chunks``, holding/releasing before the chunk indexes in ``plan``; check
    every frame given out against the reference as it comes."""
    reference = _reference(rate, b"".join(chunks), channels, channel)
    posted: list[bytes] = []
    framer = CaptureFramer(lambda e: posted.append(e.pcm), FRAME)  # type: ignore[attr-defined]
    framer.configure(rate, channels, channel)
    releases: list[list[bytes]] = []
    for i, chunk in enumerate(chunks):
        for step in plan.get(i, "").split():
            if step == "hold":
                framer.hold(PRE_ROLL)
            else:
                got = [f.pcm for f in framer.release()]
                end = framer.frames_posted
                assert got == reference[end - len(got) : end], f"released pre-roll at chunk {i}"
                releases.append(got)
        before = len(posted)
        framer.feed(chunk)
        new = posted[before:]
        if framer._holding:
            assert not new, "a frame was posted while holding"
        end = framer.frames_posted
        assert new == reference[end - len(new) : end], f"live frames after chunk {i}"
    return posted, releases, framer


@pytest.mark.parametrize("rate", [48000, 44100, 16000, 24000])
@pytest.mark.parametrize("sizes", [[1920], [1764, 2000, 98, 3000]])
def test_held_pre_roll_and_live_frames_equal_resampling_all_along(rate: int, sizes: Any) -> None:
    pcm = _device_audio(rate, 6.0)
    chunks = _chunks(pcm, [s // 2 * 2 for s in sizes])
    n = len(chunks)
    # Long holds, a hold shorter than the pre-roll, one of a single chunk, one released
    # before any audio came, one held again while holding.
    plan = {
        3: "hold",
        n // 4: "release",
        n // 4 + 2: "hold",
        n // 4 + 5: "release",
        n // 4 + 6: "hold",
        n // 4 + 7: "release",
        n // 2: "hold release",
        n // 2 + 1: "hold",
        n // 2 + 2: "hold",
        n - 10: "release",
    }
    posted, releases, framer = _drive(rate, chunks, plan)
    assert len(releases) == 5
    assert len(releases[0]) == KEEP and len(releases[-1]) == KEEP  # long holds: whole pre-roll
    assert 0 < len(releases[1]) < KEEP and len(releases[2]) < KEEP  # short holds: what came since
    assert releases[3] == []  # released before any audio came: nothing was held
    assert framer.frames_posted == len(_reference(rate, pcm, 1, 0))


def test_held_audio_stays_bounded_by_the_pre_roll() -> None:
    rate = 48000
    chunks = _chunks(_device_audio(rate, 20.0), [1920])
    _, releases, framer = _drive(rate, chunks, {1: "hold", len(chunks) - 1: "release"})
    assert len(releases[0]) == KEEP


def test_a_hold_keeps_little_raw_audio_however_long_it_lasts() -> None:
    rate = 48000
    framer = CaptureFramer(lambda e: None, FRAME)
    framer.configure(rate, 1, 0)
    framer.hold(PRE_ROLL)
    for chunk in _chunks(_device_audio(rate, 30.0), [1920]):
        framer.feed(chunk)
        held = sum(len(c) for c in framer._raw) - framer._raw_skip
        # The pre-roll's device audio, the filter's history, and one callback's worth.
        assert held <= (KEEP + 1) * FRAME * 3 + 2 * framer._resampler.history + 1920 + 2 * 96
    assert len(framer.release()) == KEEP


def test_held_frames_of_a_multichannel_device_take_the_chosen_channel() -> None:
    chunks = _chunks(_device_audio(48000, 3.0, channels=4), [1920 * 4])
    _, releases, _ = _drive(48000, chunks, {2: "hold", 60: "release"}, channels=4, channel=3)
    assert len(releases[0]) == KEEP


def test_a_reopened_stream_drops_what_was_held_of_the_old_one() -> None:
    posted: list[bytes] = []
    framer = CaptureFramer(lambda e: posted.append(e.pcm), FRAME)  # type: ignore[attr-defined]
    framer.configure(48000, 1, 0)
    framer.hold(PRE_ROLL)
    for chunk in _chunks(_device_audio(48000, 1.0), [1920]):
        framer.feed(chunk)
    framer.configure(16000, 1, 0)  # the device came back at another rate
    new = _device_audio(16000, 0.2)
    framer.feed(new)
    got = [f.pcm for f in framer.release()]
    assert b"".join(got) == new[: len(got) * FRAME] and len(got) == 10
