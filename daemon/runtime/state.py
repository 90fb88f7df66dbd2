"""
Persistent daemon state (resumption handle, its time, conversation history) in
the state directory (``StateDirectory=voiced`` → /var/lib/voiced).

Issue 5 item 4: after a crash, ``systemctl restart`` or a reboot within the
handle's lifetime the daemon resumes the same session; later, a fresh session
with context restored. So the file must survive power loss mid-write:

* **Atomic save**: write a temp file in the *same* directory (rename is atomic
  only within one filesystem), fsync it, ``os.replace`` it over the old file,
  then fsync the directory so the rename itself is durable.
* **Self-checking format**: ``{"format": "voiced-state", "version": 1,
  "sha256": <hex of the canonical payload>, "payload": {...}}``. A torn, corrupt
  or foreign file is moved aside to ``state.json.corrupt-<UTC timestamp>`` with
  a warning and :meth:`StateStore.load` returns None (a clean start) — never an
  exception, never a crash loop.

The payload is whatever JSON-able mapping the supervisor snapshots, e.g.
``{"handle": ..., "handle_time": <unix seconds>, "history": [[role, text], ...]}``.
JSON has no tuples: tuples come back as lists. Wall-clock (unix) times belong
in the payload, not monotonic ones — monotonic time restarts at boot.

This module does blocking file I/O; the supervisor may run ``save`` in a
thread (``asyncio.to_thread``) if the fsyncs are slow on the SD card.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Mapping

__all__ = ["StateStore", "STATE_FORMAT", "STATE_VERSION", "MAX_STATE_BYTES"]

logger = logging.getLogger(__name__)

STATE_FORMAT = "voiced-state"
STATE_VERSION = 1
MAX_STATE_BYTES = 16 * 1024 * 1024
"""A larger file is treated as corrupt (the history is bounded far below this)."""

_TMP_PREFIX = ".tmp-"


def _canonical(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(
        payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


class StateStore:
    """One JSON state file in ``directory``, saved atomically and checked on load.

    Args:
        directory: the state directory (must exist; systemd creates it).
        name: the file name inside it.
        clock: wall clock for the ``.corrupt-<timestamp>`` suffix (tests pass one).
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        name: str = "state.json",
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.directory = Path(directory)
        self.path = self.directory / name
        self._clock = clock

    def save(self, payload: Mapping[str, Any]) -> bool:
        """Atomically replace the state file with ``payload``.

        Returns:
            True once the new state is durable; False if the disk refused (the
            reason is logged). A full or read-only disk must not stop the device.

        Raises:
            TypeError, ValueError: ``payload`` is not JSON-serialisable (our bug).
        """
        # Round-trip once so the checksum is over exactly what load() will see
        # (tuples become lists, int keys become strings and sort differently).
        payload = json.loads(_canonical(payload))
        body = _canonical(payload)
        document = {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "sha256": hashlib.sha256(body).hexdigest(),
            "payload": payload,
        }
        data = json.dumps(document, ensure_ascii=False, allow_nan=False).encode("utf-8")
        tmp_path: str | None = None
        try:
            fd, tmp_path = tempfile.mkstemp(
                dir=self.directory, prefix=_TMP_PREFIX + self.path.name + "."
            )
            with os.fdopen(fd, "wb") as tmp:
                tmp.write(data)
                tmp.flush()
                os.fsync(tmp.fileno())
            os.replace(tmp_path, self.path)
            tmp_path = None
            self._fsync_directory()
            return True
        except OSError as exc:
            logger.warning("could not save state to %s: %s", self.path, exc)
            return False
        finally:
            if tmp_path is not None:
                try:
                    os.unlink(tmp_path)
                except OSError:
                    pass

    def load(self) -> dict[str, Any] | None:
        """The saved payload, or None if there is none or it could not be trusted.

        Leftover temp files from a write interrupted by a crash are removed.
        A bad file is moved aside (see module docstring), never raised about.
        """
        self._remove_stale_temps()
        try:
            with open(self.path, "rb") as f:
                raw = f.read(MAX_STATE_BYTES + 1)
        except FileNotFoundError:
            return None
        except OSError as exc:
            # Unreadable (permissions, I/O error): a clean start; leave it for the admin.
            logger.warning("could not read state file %s: %s; starting fresh", self.path, exc)
            return None
        problem = self._check(raw)
        if isinstance(problem, str):
            self._set_aside(problem)
            return None
        return problem

    def clear(self) -> None:
        """Forget the saved state (an explicit new session)."""
        try:
            os.unlink(self.path)
            self._fsync_directory()
        except FileNotFoundError:
            pass
        except OSError as exc:
            logger.warning("could not remove state file %s: %s", self.path, exc)

    # -- internals -------------------------------------------------------------------

    @staticmethod
    def _check(raw: bytes) -> dict[str, Any] | str:
        """The payload, or a string saying what is wrong with ``raw``."""
        if len(raw) > MAX_STATE_BYTES:
            return f"larger than {MAX_STATE_BYTES} bytes"
        if not raw.strip():
            return "empty"
        try:
            document = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            return f"not JSON ({exc})"
        if not isinstance(document, dict) or document.get("format") != STATE_FORMAT:
            return "not a voiced state file"
        if document.get("version") != STATE_VERSION:
            return f"unsupported version {document.get('version')!r}"
        payload = document.get("payload")
        if not isinstance(payload, dict):
            return "payload is not an object"
        try:
            digest = hashlib.sha256(_canonical(payload)).hexdigest()
        except (TypeError, ValueError) as exc:  # NaN and friends
            return f"payload not canonical JSON ({exc})"
        if digest != document.get("sha256"):
            return "checksum mismatch"
        return payload

    def _set_aside(self, problem: str) -> None:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(self._clock()))
        target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        n = 1
        while target.exists():
            target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{n}")
            n += 1
        try:
            os.replace(self.path, target)
            self._fsync_directory()
            logger.warning(
                "state file %s is unusable (%s); moved it to %s and starting fresh",
                self.path,
                problem,
                target.name,
            )
        except OSError as exc:
            # Cannot move it (read-only disk?): still start fresh; the next save
            # replaces it.
            logger.warning(
                "state file %s is unusable (%s) and could not be moved aside (%s); starting fresh",
                self.path,
                problem,
                exc,
            )

    def _remove_stale_temps(self) -> None:
        prefix = _TMP_PREFIX + self.path.name + "."
        try:
            names = os.listdir(self.directory)
        except OSError:
            return
        for name in names:
            if name.startswith(prefix):
                try:
                    os.unlink(self.directory / name)
                    logger.info("removed %s left by an interrupted save", name)
                except OSError:
                    pass

    def _fsync_directory(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
