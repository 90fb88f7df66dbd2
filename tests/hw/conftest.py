"""tests/hw's private PulseAudio lives in tests/virtual_audio.py (one server for the run,
its fixtures registered by tests/conftest.py). Only plain names are re-exported here, for
bench/idle.py, which imports them from this module; never a fixture (a fixture imported
into a conftest is a second session fixture: a second server)."""

from tests.virtual_audio import ASOUNDRC, Pulse

__all__ = ["ASOUNDRC", "Pulse"]
