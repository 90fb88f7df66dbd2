"""StateStore: atomic saves, checksummed loads, corrupt files set aside."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import signal
import time
from pathlib import Path

import pytest

from daemon.runtime.state import StateStore

SNAPSHOT = {
    "handle": "CiQ2YjQ1…resumable",
    "handle_time": 1_790_000_000.5,
    "history": [("user", "what is the capital of France?"), ("model", "Paris. ¿Algo más? 🙂")],
}
FIXED_CLOCK = 1_790_000_000.0  # 2026-09-21T14:13:20Z


def _store(tmp_path: Path) -> StateStore:
    return StateStore(tmp_path, clock=lambda: FIXED_CLOCK)


def test_save_then_load_round_trips(tmp_path: Path):
    store = _store(tmp_path)
    assert store.load() is None
    assert store.save(SNAPSHOT) is True
    loaded = store.load()
    # JSON has no tuples: the history comes back as lists.
    assert loaded == {**SNAPSHOT, "history": [list(p) for p in SNAPSHOT["history"]]}
    assert sorted(os.listdir(tmp_path)) == ["state.json"]
    assert oct((tmp_path / "state.json").stat().st_mode & 0o777) == "0o600"


def test_int_keys_and_tuples_survive_the_checksum(tmp_path: Path):
    store = _store(tmp_path)
    assert store.save({"by_turn": {1: "a", 10: "b", 2: "c"}, "t": (1, 2)})
    assert store.load() == {"by_turn": {"1": "a", "10": "b", "2": "c"}, "t": [1, 2]}


def test_save_replaces_previous_state(tmp_path: Path):
    store = _store(tmp_path)
    store.save({"handle": "one"})
    store.save({"handle": "two"})
    assert store.load() == {"handle": "two"}


@pytest.mark.parametrize(
    "content,problem",
    [
        (b"", "empty"),
        (b'{"format": "voiced-state", "version": 1, "sha2', "not JSON"),
        (b"\xff\xfe garbage", "not JSON"),
        (b'["a list"]', "not a voiced state file"),
        (
            b'{"format": "voiced-state", "version": 99, "sha256": "", "payload": {}}',
            "unsupported version 99",
        ),
        (
            b'{"format": "voiced-state", "version": 1, "sha256": "00", "payload": {"handle": "x"}}',
            "checksum mismatch",
        ),
        (
            b'{"format": "voiced-state", "version": 1, "sha256": "00", "payload": [1]}',
            "payload is not an object",
        ),
    ],
)
def test_corrupt_file_is_set_aside_with_a_warning(tmp_path: Path, caplog, content, problem):
    (tmp_path / "state.json").write_bytes(content)
    with caplog.at_level(logging.WARNING, logger="daemon.runtime.state"):
        assert _store(tmp_path).load() is None
    aside = tmp_path / "state.json.corrupt-20260921T141320Z"
    assert aside.read_bytes() == content
    assert not (tmp_path / "state.json").exists()
    assert any(
        problem in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records
    ), [r.getMessage() for r in caplog.records]
    # Next start is clean and quiet: no crash loop, the bad file stays aside.
    assert _store(tmp_path).load() is None


def test_torn_write_of_a_real_file_is_detected(tmp_path: Path):
    store = _store(tmp_path)
    store.save(SNAPSHOT)
    data = (tmp_path / "state.json").read_bytes()
    for cut in (1, len(data) // 2, len(data) - 1):
        (tmp_path / "state.json").write_bytes(data[:cut])
        assert store.load() is None
    # A bit flip inside a string keeps the JSON valid: the checksum catches it.
    flipped = data.replace(b"Paris", b"Parix")
    (tmp_path / "state.json").write_bytes(flipped)
    assert store.load() is None
    assert len([n for n in os.listdir(tmp_path) if ".corrupt-" in n]) == 4


def test_failed_save_keeps_old_state_and_returns_false(tmp_path: Path, caplog):
    store = _store(tmp_path)
    store.save({"handle": "good"})
    # Make the directory unwritable through a real filesystem condition: a
    # state path whose directory is a file cannot take a temp file.
    broken = StateStore(tmp_path / "state.json")  # "directory" is a regular file
    with caplog.at_level(logging.WARNING, logger="daemon.runtime.state"):
        assert broken.save({"handle": "new"}) is False
    assert "could not save state" in caplog.text
    assert store.load() == {"handle": "good"}


def test_unserialisable_payload_is_our_bug(tmp_path: Path):
    with pytest.raises(TypeError):
        _store(tmp_path).save({"handle": object()})
    with pytest.raises(ValueError):
        _store(tmp_path).save({"t": float("nan")})
    assert os.listdir(tmp_path) == []


def test_stale_temp_files_are_removed_on_load(tmp_path: Path):
    store = _store(tmp_path)
    store.save({"handle": "kept"})
    (tmp_path / ".tmp-state.json.abc123").write_text('{"half": ')
    assert store.load() == {"handle": "kept"}
    assert sorted(os.listdir(tmp_path)) == ["state.json"]


def test_clear_forgets_state(tmp_path: Path):
    store = _store(tmp_path)
    store.save({"handle": "x"})
    store.clear()
    store.clear()  # twice is fine
    assert store.load() is None


def _save_forever(directory: str) -> None:
    store = StateStore(directory)
    n = 0
    while True:
        n += 1
        store.save({"n": n, "history": [["user", "x" * 2000]] * 20})


def test_kill_9_during_saves_never_leaves_a_torn_file(tmp_path: Path):
    """SIGKILL a process that saves in a tight loop, many times: every load
    sees either nothing or a complete earlier save (rename is atomic)."""
    ctx = multiprocessing.get_context("spawn")
    seen: list[int] = []
    for i in range(8):
        proc = ctx.Process(target=_save_forever, args=(str(tmp_path),))
        proc.start()
        deadline = time.monotonic() + 20
        while not (tmp_path / "state.json").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.01 + 0.013 * i)  # kill at varying points of the save cycle
        os.kill(proc.pid, signal.SIGKILL)
        proc.join()
        loaded = StateStore(tmp_path).load()
        assert loaded is not None
        seen.append(loaded["n"])
        assert not [n for n in os.listdir(tmp_path) if ".corrupt-" in n]
    assert all(n > 0 for n in seen)


def test_save_timing(tmp_path: Path):
    """Benchmark, not an assertion: what a save costs with its two fsyncs."""
    store = _store(tmp_path)
    history = [
        ["user" if i % 2 else "model", "a sentence of about sixty characters " * 2]
        for i in range(200)
    ]
    times = []
    for _ in range(20):
        t0 = time.perf_counter()
        assert store.save({"handle": "h" * 200, "handle_time": 1.0, "history": history})
        times.append(time.perf_counter() - t0)
    size = (tmp_path / "state.json").stat().st_size
    times.sort()
    print(
        f"state save ({size} bytes, 200 turns): median {times[10] * 1000:.2f} ms, "
        f"max {times[-1] * 1000:.2f} ms"
    )
    assert json.loads((tmp_path / "state.json").read_text())["version"] == 1
