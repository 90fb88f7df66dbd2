"""Who may use the control socket (issue 14, found under a real systemd): group members
reach it, others get exit 4 with one line — not a PermissionError traceback from reading
a configuration (and key) they may not read — and the daemon does not chown a socket
that already has the right group (under the unit ``~@privileged`` refuses chown).

A user outside the group is this test process forked and dropped to ``nobody``: the
venv's interpreter lives under root's home, so a child ``voiced`` could not even start.
"""

from __future__ import annotations

import argparse
import asyncio
import grp
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Callable, Iterator

import pytest

from daemon.app import config
from daemon.cli import ctl
from daemon.runtime import control

NOBODY = 65534


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory ``nobody`` can reach (pytest's tmp_path is root-only)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to drop to another user")
    where = Path(tempfile.mkdtemp(dir="/var/tmp", prefix="voiced-access-"))
    where.chmod(0o755)
    yield where
    shutil.rmtree(where, ignore_errors=True)


def as_nobody(body: Callable[[], int]) -> tuple[int, str]:
    """Run ``body`` in a forked child as uid/gid nobody; its exit code and stderr."""
    read, write = os.pipe()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child never returns into pytest
        code = 70
        try:
            os.dup2(write, 2)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            sys.stderr = os.fdopen(2, "w", buffering=1)
            code = body()
        except BaseException as exc:  # show what escaped: that is the bug we look for
            import traceback

            traceback.print_exception(exc)
        finally:
            sys.stderr.flush()
            os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        err = pipe.read().decode(errors="replace")
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), err


def serve(
    directory: Path, group: str | None, body: Callable[[control.ControlServer], None]
) -> None:
    class Target:
        def status(self) -> dict[str, str]:
            return {"state": "idle"}

    async def main() -> None:
        async with asyncio.timeout(20):
            server = control.ControlServer(Target(), directory, group)  # type: ignore[arg-type]
            await server.start()
            try:
                await asyncio.to_thread(body, server)
            finally:
                await server.stop()

    asyncio.run(main())


def status_args(runtime_dir: str | None = None) -> argparse.Namespace:
    return argparse.Namespace(command="status", runtime_dir=runtime_dir, json=False)


def test_a_non_member_gets_exit_4_and_one_line(shared_dir: Path) -> None:
    run = shared_dir / "run"
    run.mkdir(mode=0o750)  # RuntimeDirectoryMode=0750, root:root: nobody is "other"
    results: list[tuple[int, str]] = []
    serve(
        run, None, lambda server: results.append(as_nobody(lambda: ctl.main(status_args(str(run)))))
    )
    code, err = results[0]
    assert code == ctl.EXIT_FORBIDDEN, err
    assert err.strip().count("\n") == 0 and "Traceback" not in err, err
    assert err.startswith(f"voiced status: not allowed to use {run / 'control.sock'}")


def test_a_member_of_the_group_reaches_the_socket_through_a_0750_runtime_dir(
    shared_dir: Path,
) -> None:
    # nobody's own group stands for "voiced": the directory and the socket are group-owned.
    nogroup = grp.getgrgid(NOBODY).gr_name
    run = shared_dir / "run"
    run.mkdir()
    run.chmod(0o750)
    os.chown(run, 0, NOBODY)
    results: list[tuple[int, str]] = []
    serve(
        run,
        nogroup,
        lambda server: results.append(as_nobody(lambda: ctl.main(status_args(str(run))))),
    )
    code, err = results[0]
    assert code == 0, err


def test_status_never_reads_a_configuration_it_may_not_read(shared_dir: Path) -> None:
    """/etc/voiced/voiced.toml is root:voiced 0640; a user outside the group asking for
    status must get the documented answer, not a PermissionError traceback."""
    etc = shared_dir / "etc"  # like /etc/voiced: 0750, so even stat() is refused
    etc.mkdir(mode=0o750)
    secret = etc / "voiced.toml"
    secret.write_text(f'[service]\nruntime_dir = "{shared_dir / "elsewhere"}"\n')
    secret.chmod(0o640)
    os.environ["VOICED_CONFIG"] = str(secret)
    try:
        code, err = as_nobody(lambda: ctl.main(status_args()))
        inside, _ = as_nobody(
            lambda: (
                0 if config.peek("service", "runtime_dir", "/run/voiced") == "/run/voiced" else 1
            )
        )
    finally:
        del os.environ["VOICED_CONFIG"]
    assert "Traceback" not in err and "PermissionError" not in err, err
    # The default runtime dir: 3 when nothing runs there, 4 when a daemon's socket is there.
    assert code in (ctl.EXIT_NOT_RUNNING, ctl.EXIT_FORBIDDEN), err
    assert "/run/voiced/control.sock" in err and err.strip().count("\n") == 0, err
    assert inside == 0  # peek fell back to the default without raising
    # Root reads the file: the configured directory, and only that key.
    assert config.peek("service", "runtime_dir", "/run/voiced", secret) == str(
        shared_dir / "elsewhere"
    )


@pytest.mark.parametrize("text", ["not toml [", "[service]\nruntime_dir = 5\n", "\xff"])
def test_peek_is_tolerant_of_a_broken_file(tmp_path: Path, text: str) -> None:
    path = tmp_path / "v.toml"
    path.write_bytes(text.encode("latin-1"))
    assert config.peek("service", "runtime_dir", "/run/voiced", path) == "/run/voiced"
    assert config.peek("service", "runtime_dir", "/run/voiced", tmp_path / "none") == "/run/voiced"


def test_the_socket_is_not_chowned_when_its_group_is_already_right(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The process's own group (the unit's Group=voiced): the socket is born with it, so no
    chown — which ~@privileged would refuse with a warning on every start."""
    own = grp.getgrgid(os.getegid()).gr_name
    other = grp.getgrgid(NOBODY).gr_name
    gids: dict[str, int] = {}
    caplog.set_level(logging.WARNING, logger="daemon.runtime.control")
    for group in (own, other):
        directory = tmp_path / group
        serve(directory, group, lambda server: gids.__setitem__(group, os.stat(server.path).st_gid))
    assert gids == {own: os.getegid(), other: NOBODY}
    assert not [r for r in caplog.records if "not applied" in r.getMessage()]


def test_a_refused_chown_is_one_warning_without_errno_noise(shared_dir: Path) -> None:
    # nobody cannot give its socket to group root: the warning says so in words.
    run = shared_dir / "run"
    run.mkdir()
    os.chown(run, NOBODY, NOBODY)

    def body() -> int:
        records: list[str] = []

        class Keep(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                records.append(record.getMessage())

        logging.getLogger("daemon.runtime.control").addHandler(Keep())
        serve(run, "root", lambda server: None)
        print("|".join(r for r in records if "not applied" in r), file=sys.stderr)
        return 0

    code, err = as_nobody(body)
    assert code == 0, err
    assert err.strip() == "control socket group 'root' not applied: Operation not permitted", err
