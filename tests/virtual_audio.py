"""The private PulseAudio of the test suite (VIRTUAL_AUDIO.md): its fixtures and helpers.

Topology (tested advice from VIRTUAL_AUDIO.md):

* the test plays into null sink ``micfeed``; ``vmic`` (module-remap-source of
  ``micfeed.monitor``) is the virtual microphone our Mic opens by name;
  ``vhat`` is a two-channel mic (``hatfeed.monitor``) for channel selection;
* our Speaker plays into null sink ``vspk``; the test records ``vspk.monitor``;
* ALSA names ``vmic``/``vspk``/``micfeed``/``vspk_monitor`` come from an asoundrc
  under a private ``XDG_CONFIG_HOME`` so PortAudio lists them by name;
* one keep-alive ``pacat`` per sink so idle null sinks don't stall new streams
  (pitfall 1). Every child is killed by PID in the finaliser.

There is ONE server for the whole run: the fixtures are registered once, by
tests/conftest.py (a fixture function imported into several conftests or test modules
is a separate session fixture in each, and each started its own server, keep-alives
included, idling at ~16-23% of a core until the end of the run). It runs only while
tests use it: started by the first test of a directory that needs it, stopped after
the last one of that directory (tests/conftest.py). The environment that points
PortAudio at it is set per test by the ``pulse`` fixture, before the test's
``pyaudio.PyAudio()`` (PortAudio builds its device list at initialisation), and undone
after it.
"""

from __future__ import annotations

import subprocess
from typing import Iterator

import pytest

from testing.pulse import RUNNING, Pulse, _need, stop_unused  # noqa: F401


@pytest.fixture(scope="session")
def pulse_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pulse]:
    """The run's one private PulseAudio: its directory and env, made once; the server
    itself is started by :func:`pulse_server` when a test needs it and stopped by
    tests/conftest.py between the test directories that use it."""
    root = tmp_path_factory.mktemp("pulse")
    # Children get the env directly; os.environ is only changed per test (``pulse``),
    # so tests elsewhere in the same pytest run never see our HOME or PULSE_SERVER.
    server = Pulse.at(root)
    RUNNING.append(server)
    try:
        yield server
    finally:
        RUNNING.remove(server)
        server.stop_server()


@pytest.fixture
def pulse_server(pulse_session: Pulse) -> Pulse:
    """The private PulseAudio, running (started now if it is not)."""
    if pulse_session.proc is None:
        pulse_session.start_server()
    return pulse_session


@pytest.fixture
def pulse(pulse_server: Pulse, monkeypatch: pytest.MonkeyPatch) -> Pulse:
    """The private PulseAudio, with this test's env pointing PortAudio at it.

    The env is in place before the test body runs, hence before any
    ``pyaudio.PyAudio()`` it makes (PortAudio lists devices at init).
    """
    for key, value in pulse_server.overrides.items():
        monkeypatch.setenv(key, value)
    return pulse_server


@pytest.fixture(scope="session")
def speech(tmp_path_factory: pytest.TempPathFactory) -> dict[int, bytes]:
    """'what is the capital of France' (espeak-ng) as s16le mono at 16k, 24k and 48k (sox)."""
    import wave

    root = tmp_path_factory.mktemp("speech")
    raw = root / "speech.wav"
    subprocess.run(
        [_need("espeak-ng"), "-w", str(raw), "what is the capital of France"],
        check=True,
        capture_output=True,
        timeout=30,
    )
    out: dict[int, bytes] = {}
    for rate in (16000, 24000, 48000):
        path = root / f"speech{rate}.wav"
        subprocess.run(
            [_need("sox"), str(raw), "-r", str(rate), "-c", "1", "-b", "16", str(path)],
            check=True,
            capture_output=True,
            timeout=30,
        )
        with wave.open(str(path), "rb") as w:
            out[rate] = w.readframes(w.getnframes())
    return out
