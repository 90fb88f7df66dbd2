"""The private PulseAudio of tests/hw (VIRTUAL_AUDIO.md), for the real-mic fault."""

from tests.hw.conftest import pulse, pulse_server  # noqa: F401
