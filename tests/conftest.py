"""Fixtures shared by several test directories, registered here ONCE.

The private PulseAudio (tests/virtual_audio.py) is used by tests/hw, tests/cli,
tests/proving and tests/app: registered in each of them it was a separate session
fixture per directory or module, i.e. up to five servers, each with three keep-alive
streams, idling at ~16-23% of a core apiece for the rest of the run. Here it is one
server, running only while a directory's tests use it.

The systemd check (tests/runtime/test_systemd_check.py) is started in the background when
the run's tests are known; its test collects the verdict.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Generator

import pytest

from tests import virtual_audio
from tests.virtual_audio import pulse, pulse_server, pulse_session, speech  # noqa: F401

REPO = Path(__file__).resolve().parents[1]
_pulse_last_in_dir: set[str] = set()


def pytest_collection_finish(session: pytest.Session) -> None:
    # The private PulseAudio is stopped after a test that uses it when the next test that
    # does is in another directory (or there is none): a restart costs ~2.5 s, a server
    # left idling through the directories between costs ~20% of a core all along.
    users = [item for item in session.items if "pulse_server" in getattr(item, "fixturenames", ())]
    _pulse_last_in_dir.clear()
    for item, after in zip(users, [*users[1:], None]):
        if after is None or after.path.parent != item.path.parent:
            _pulse_last_in_dir.add(item.nodeid)
    _start_systemd_check_early(session)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(
    item: pytest.Item, nextitem: pytest.Item | None
) -> Generator[None, None, None]:
    yield  # the test's own fixtures (daemons playing into the server) end first
    if item.nodeid in _pulse_last_in_dir:
        virtual_audio.stop_unused()


# --- The systemd check, started at the beginning of the run --------------------------------
# tests/runtime/test_systemd_check.py boots a container and installs voiced in it: 3-8 min
# of wall time spent mostly waiting (boot, pip, systemd timers), one process. Run last in
# line it added all of that to CI; started in the background as soon as the run's tests
# are known, it overlaps the rest of the suite, and the test only collects its verdict.
# The suite holds under a busy CPU anyway (tools/ci-under-load.sh), so the overlap costs
# no correctness, and the check's own waits are wall-clock deadlines that only end a hang.

SYSTEMD_CHECK_TEST = (
    "tests/runtime/test_systemd_check.py::"
    "test_every_service_claim_of_the_readme_holds_under_a_real_systemd"
)


@dataclass
class BackgroundCheck:
    """tools/systemd_check.py running as a child; its output goes to files in ``root``."""

    proc: subprocess.Popen[bytes]
    root: Path

    @property
    def report(self) -> Path:
        return self.root / "systemd-check.json"

    def result(self, timeout: float) -> tuple[int, str, str]:
        """Wait for the check; its exit status, stdout and stderr."""
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise
        return (
            code,
            (self.root / "stdout").read_text(errors="replace"),
            (self.root / "stderr").read_text(errors="replace"),
        )

    def stop(self) -> None:
        """SIGINT first: the check's ``finally`` stops the container and unmounts it."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout=90)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)


_systemd_check: BackgroundCheck | None = None


def systemd_check() -> BackgroundCheck:
    """The run's systemd check: the one started at collection, or one started now."""
    global _systemd_check
    if _systemd_check is None:
        root = Path(tempfile.mkdtemp(prefix="voiced-systemd-check-"))
        with open(root / "stdout", "wb") as out, open(root / "stderr", "wb") as err:
            # In its own session (start_new_session), still at nice -10. With autogroup
            # scheduling (sched_autogroup_enabled=1, the Debian default) the kernel shares
            # the CPU between sessions first, and nice counts only within a session: the
            # check gets a session's share beside the suite-plus-load session (it holds
            # production deadlines, e.g. the unit's TimeoutStartSec=60s, which it must not
            # loosen; at nice 0 inside the suite's session at load ~39 the first
            # `systemctl start` timed out), and it no longer outranks the suite's audio
            # threads. Inside the suite's session it did: beside `stress-ng --cpu 2`, a
            # nice -10 busy loop failed tests/hw/test_speaker.py in 4 of 6 runs (replies
            # correlating 0.62-0.76 with what was sent, a 0.4 s tone heard as 0.48 s: the
            # PortAudio callback starved and the sink inserted silence); the same loop in
            # its own session: 3 of 12 runs, correlation 0.983 at worst (the load itself).
            proc = subprocess.Popen(
                [
                    "nice",
                    "-n",
                    "-10",
                    sys.executable,
                    str(REPO / "tools/systemd_check.py"),
                    "--json",
                    str(root / "systemd-check.json"),
                ],
                start_new_session=True,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
            )
        _systemd_check = BackgroundCheck(proc, root)
    return _systemd_check


def systemd_check_can_run() -> tuple[bool, str]:
    """Root and the container tools, or why not (the test skips with that reason)."""
    missing = [t for t in ("systemd-nspawn", "debootstrap", "nsenter") if shutil.which(t) is None]
    if os.geteuid() != 0 or missing:
        return False, (
            f"needs root and {', '.join(missing) or 'nothing else'} "
            "(bash tools/bootstrap.sh test installs systemd-container and debootstrap)"
        )
    return True, ""


def _start_systemd_check_early(session: pytest.Session) -> None:
    if (
        any(item.nodeid == SYSTEMD_CHECK_TEST for item in session.items)
        and systemd_check_can_run()[0]
        and not session.config.option.collectonly
    ):
        systemd_check()


def pytest_sessionfinish(session: pytest.Session) -> None:
    if _systemd_check is not None:
        _systemd_check.stop()  # only when the run ended before its test (-x, ^C)


@pytest.fixture
def background_systemd_check() -> BackgroundCheck:
    """The run's systemd check (a fixture, so the test reaches this module's instance),
    skipping without root or the container tools."""
    ok, why = systemd_check_can_run()
    if not ok:
        pytest.skip(why)
    return systemd_check()
