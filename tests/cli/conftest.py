"""Fixtures for tests/cli: the private PulseAudio of tests/hw (imported, not copied)."""

from __future__ import annotations

from tests.hw.conftest import pulse, pulse_server  # noqa: F401  (pytest fixtures)
