"""Resampler (pure): frequency, alias rejection, passband, streaming continuity, flush."""

from __future__ import annotations

import numpy as np
import pytest

from hw.resample import Resampler
from tests.hw.harness import samples, spectrum_db, tone

PAIRS = [(48000, 16000), (44100, 16000), (24000, 48000), (24000, 44100)]


def run(rs: Resampler, pcm: bytes, chunk: int) -> bytes:
    return b"".join(rs.process(pcm[i : i + chunk]) for i in range(0, len(pcm), chunk)) + rs.flush()


def level_db(x: np.ndarray, freq: float, rate: int) -> float:
    """Amplitude of ``freq`` in ``x`` in dB full scale (single-bin DFT, Hann window)."""
    n = len(x)
    w = np.hanning(n)
    t = np.arange(n) / rate
    amp = 2 * abs(np.sum(x * w * np.exp(-2j * np.pi * freq * t))) / w.sum()
    return 20 * np.log10(max(amp, 1e-12))


@pytest.mark.parametrize("rate_in,rate_out", PAIRS)
def test_resample_tone_keeps_its_frequency_and_length(rate_in, rate_out):
    pcm = tone(440, rate_in, 1.0, 0.5)
    out = samples(run(Resampler(rate_in, rate_out), pcm, rate_in // 50 * 2))
    assert abs(len(out) - rate_out - Resampler(rate_in, rate_out).delay_out) <= 2
    freqs, db = spectrum_db(out[rate_out // 10 : rate_out // 10 + rate_out // 2], rate_out)
    assert abs(freqs[np.argmax(db)] - 440) <= 2.5


@pytest.mark.parametrize("rate_in", [48000, 44100])
def test_resample_rejects_aliases_above_8500_hz_by_80_db(rate_in):
    for f in (8500, 9000, 12000, 15000, 20000):
        x = samples(run(Resampler(rate_in, 16000), tone(f, rate_in, 0.5, 0.9), 1764))
        x = x[2000:-2000]
        alias = abs(16000 - f % 16000) if f % 16000 > 8000 else f % 16000
        rejection = level_db(x, alias, 16000) - 20 * np.log10(0.9)
        assert rejection < -80, (f, alias, rejection)


@pytest.mark.parametrize("rate_in", [48000, 44100])
def test_resample_passband_flat_within_0_1_db_to_7_khz(rate_in):
    for f in (100, 1000, 3000, 5000, 6500, 7000):
        x = samples(run(Resampler(rate_in, 16000), tone(f, rate_in, 0.5, 0.5), 1764))
        gain = level_db(x[2000:-2000], f, 16000) - 20 * np.log10(0.5)
        assert abs(gain) < 0.1, (f, gain)


def test_resample_chunking_does_not_matter():
    pcm = (np.random.default_rng(1).normal(0, 3000, 100000)).astype("<i2").tobytes()
    whole = run(Resampler(48000, 16000), pcm, len(pcm))  # > 1 s: split internally
    for chunk in (2, 7, 640, 1919, 1920, 1921):  # odd byte counts included
        assert run(Resampler(48000, 16000), pcm, chunk) == whole, chunk


def test_resample_frames_join_without_clicks():
    # A continuous tone cut into 20 ms frames must stay a clean tone: no energy
    # at the 50 Hz frame rate's harmonics from edge effects.
    pcm = tone(1000, 48000, 1.0, 0.5)
    x = samples(run(Resampler(48000, 16000), pcm, 1920))[1000:15000]
    freqs, db = spectrum_db(x, 16000)
    far = np.abs(freqs - 1000) > 60
    assert db[far].max() < -90


def test_resample_equal_rates_pass_through():
    rs = Resampler(16000, 16000)
    assert rs.process(b"\x01\x02\x03") == b"\x01\x02" and rs.process(b"\x04") == b"\x03\x04"


def test_resample_rejects_bad_rates():
    with pytest.raises(ValueError, match="positive"):
        Resampler(0, 16000)


def test_resample_any_chunking_gives_the_same_bytes():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    pcm = (np.random.default_rng(7).normal(0, 4000, 6000)).astype("<i2").tobytes()
    expected = {pair: run(Resampler(*pair), pcm, len(pcm)) for pair in PAIRS}

    @settings(max_examples=40, deadline=None)
    @given(
        pair=st.sampled_from(PAIRS),
        cuts=st.lists(st.integers(min_value=0, max_value=len(pcm)), max_size=12),
    )
    def check(pair, cuts):
        rs = Resampler(*pair)
        edges = [0, *sorted(cuts), len(pcm)]
        out = b"".join(rs.process(pcm[a:b]) for a, b in zip(edges, edges[1:])) + rs.flush()
        assert out == expected[pair]

    check()
