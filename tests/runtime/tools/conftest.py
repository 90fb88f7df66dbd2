"""Fixtures for the tools and Home Assistant tests: the daemon-as-a-child fixtures of
tests/app (a real ``voiced run --hw sim``, a Live server at a time scale) and a real
Mosquitto broker (tests/runtime/tools/harness.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import pytest

from daemon.runtime.tools import ToolRunner
from tests.app.conftest import live, manager, spawn  # noqa: F401  (fixtures, re-used)
from tests.runtime.tools.harness import Broker, ToolBench, have_mosquitto


@pytest.fixture
def bench() -> Iterator[Callable[[ToolRunner], ToolBench]]:
    """``bench(runner)``: a :class:`ToolBench`, closed (threads joined) after the test."""
    made: list[ToolBench] = []

    def make(runner: ToolRunner) -> ToolBench:
        made.append(ToolBench(runner))
        return made[-1]

    yield make
    for b in made:
        b.close()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    if not have_mosquitto():
        # tools/bootstrap.sh installs it for the test job; a hand-made venv may lack it.
        pytest.fail("mosquitto is not installed (bash tools/bootstrap.sh test installs it)")
    (tmp_path / "broker").mkdir()
    b = Broker(tmp_path / "broker").start()
    yield b
    b.stop()
