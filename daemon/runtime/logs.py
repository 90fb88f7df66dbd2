"""
Logging setup: the journal with structured fields under systemd, readable stderr
otherwise, and a redaction filter so the API key never reaches any log.

Structured fields ride on ``extra=`` with upper-case journal field names::

    logger.info("= state %s", state.value, extra={"STATE": state.value, "SESSION_ID": sid})
    logger.warning("x closed %s %s", code, reason, extra={"CLOSE_CODE": code, "REASON": reason})

The journal gets them as fields (``journalctl -u voiced STATE=listening``); on
stderr they are appended as ``[state=listening session_id=…]``.

Redaction (issue 5 item 3): :class:`Redactor` is a ``logging.Filter`` attached
to every handler (logger-level filters do not see records propagated from
child loggers). It replaces the secret in the formatted message, the
exception text, the stack text and every string attribute, drops ``args``
and ``exc_info`` (both would be sent raw to the journal as CODE_ARGS /
EXCEPTION_INFO by systemd-python's JournalHandler) and keeps the redacted
exception text instead.
"""

from __future__ import annotations

import logging
import os
import string
import sys
import threading
from types import TracebackType
from typing import Callable, Iterable, Mapping, TextIO

__all__ = [
    "REDACTED",
    "Redactor",
    "StructuredJournalHandler",
    "StderrFormatter",
    "stderr_is_journal",
    "use_journal",
    "setup_logging",
    "install_excepthooks",
]

REDACTED = "[redacted]"

_FIELD_CHARS = frozenset(string.ascii_uppercase + string.digits + "_")

# LogRecord attributes that are not ours to send as journal fields.
_STANDARD_ATTRS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


def _is_field_name(name: str) -> bool:
    # journal field names: upper case, digits, underscore, not starting with "_"
    # (those are trusted fields journald sets itself) or a digit.
    return bool(name) and name[0] not in "_0123456789" and set(name) <= _FIELD_CHARS


class Redactor(logging.Filter):
    """Removes configured secrets from log records (and from any text via :meth:`redact`).

    Args:
        secrets: strings that must never be logged (the API key). Empty strings
            are ignored. :meth:`set_secrets` replaces them (config reload).
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets: tuple[str, ...] = ()
        self._formatter = logging.Formatter()
        self.set_secrets(secrets)

    def set_secrets(self, secrets: Iterable[str]) -> None:
        """Replace the secrets to redact; longest first so overlaps redact fully."""
        self._secrets = tuple(sorted({s for s in secrets if s}, key=len, reverse=True))

    def redact(self, text: str) -> str:
        """``text`` with every secret replaced by ``[redacted]``."""
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite ``record`` in place so no secret survives; always keeps the record."""
        if not self._secrets:
            return True
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 — a bad format string must not hide the record
            message = f"{record.msg!r} % {record.args!r}"
        record.msg, record.args = self.redact(message), ()
        if record.exc_info:
            if not record.exc_text:
                record.exc_text = self._formatter.formatException(record.exc_info)
            record.exc_info = None
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        for name, value in list(record.__dict__.items()):
            if isinstance(value, str) and name not in ("msg", "exc_text", "stack_info"):
                setattr(record, name, self.redact(value))
            elif isinstance(value, (bytes, bytearray)):
                text = self.redact(bytes(value).decode("utf-8", "replace"))
                setattr(record, name, text)
            elif name not in _STANDARD_ATTRS and not isinstance(value, (int, float, type(None))):
                # An ``extra=`` object (an exception as REASON, say) is sent as str().
                setattr(record, name, self.redact(str(value)))
        return True


class StructuredJournalHandler(logging.Handler):
    """Sends records to the journal with a clean field set.

    systemd-python's own ``JournalHandler`` forwards the whole ``record.__dict__``
    (raw ``args``, ``exc_info``, lower-case junk fields); this one sends MESSAGE,
    PRIORITY, LOGGER, CODE_*, SYSLOG_IDENTIFIER, EXCEPTION_TEXT and the
    upper-case ``extra=`` fields only.

    Args:
        identifier: SYSLOG_IDENTIFIER (``journalctl -t voiced``).
        sender: ``systemd.journal.send`` by default.
    """

    def __init__(
        self,
        identifier: str = "voiced",
        sender: Callable[..., object] | None = None,
        level: int = logging.NOTSET,
    ) -> None:
        super().__init__(level)
        if sender is None:
            from systemd import journal

            sender = journal.send
        self._send = sender
        self._identifier = identifier

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from systemd.journal import JournalHandler

            message = record.getMessage()
            fields: dict[str, object] = {
                "PRIORITY": str(JournalHandler.map_priority(record.levelno)),
                "SYSLOG_IDENTIFIER": self._identifier,
                "LOGGER": record.name,
                "THREAD_NAME": record.threadName or "",
            }
            if record.exc_info and not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            if record.exc_text:
                fields["EXCEPTION_TEXT"] = record.exc_text
                message = f"{message}\n{record.exc_text}"
            for name, value in record.__dict__.items():
                if name not in _STANDARD_ATTRS and _is_field_name(name) and value is not None:
                    fields[name] = value
            self._send(
                message,
                CODE_FILE=record.pathname,
                CODE_LINE=record.lineno,
                CODE_FUNC=record.funcName,
                **fields,
            )
        except Exception:  # noqa: BLE001 — logging must never raise
            self.handleError(record)


class StderrFormatter(logging.Formatter):
    """``2026-01-01 12:00:00 INFO daemon.session: message [state=idle close_code=1000]``."""

    def __init__(self, timestamps: bool = True) -> None:
        fmt = (
            "%(asctime)s %(levelname)s %(name)s: %(message)s"
            if timestamps
            else "%(levelname)s %(name)s: %(message)s"
        )
        super().__init__(fmt, datefmt="%Y-%m-%d %H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        extra = [
            f"{name.lower()}={value}"
            for name, value in record.__dict__.items()
            if name not in _STANDARD_ATTRS and _is_field_name(name) and value is not None
        ]
        if extra:
            first, sep, rest = text.partition("\n")
            text = f"{first} [{' '.join(extra)}]{sep}{rest}"
        return text


def stderr_is_journal(environ: Mapping[str, str], stream: TextIO) -> bool:
    """True if ``stream`` is the journal stream systemd connected (JOURNAL_STREAM=dev:ino)."""
    value = environ.get("JOURNAL_STREAM", "")
    device, _, inode = value.partition(":")
    try:
        st = os.fstat(stream.fileno())
        return (st.st_dev, st.st_ino) == (int(device), int(inode))
    except (ValueError, OSError, AttributeError):
        return False


def use_journal(environ: Mapping[str, str], stream: TextIO) -> bool:
    """Log to the journal when stderr is the journal, or when systemd started us
    (INVOCATION_ID) without connecting stderr to anything (no JOURNAL_STREAM,
    stderr not a terminal). Under systemd with ``StandardError=file:…`` the
    admin chose a file, but we still prefer the journal's structured fields."""
    if stderr_is_journal(environ, stream):
        return True
    return bool(environ.get("INVOCATION_ID")) and "JOURNAL_STREAM" not in environ


def setup_logging(
    level: int | str = logging.INFO,
    *,
    secrets: Iterable[str] = (),
    environ: Mapping[str, str] | None = None,
    stream: TextIO | None = None,
    journal: bool | None = None,
    identifier: str = "voiced",
) -> Redactor:
    """Configure the root logger once for the daemon; returns the :class:`Redactor`
    (call ``set_secrets`` on it after loading the key, give ``redact`` to Notifier).

    Args:
        level: root level (INFO: one line per event a human cares about; DEBUG: the wire).
        secrets: strings to redact from every record.
        environ: the environment (default ``os.environ``) for journal detection.
        stream: stderr stream (default ``sys.stderr``).
        journal: force the journal on/off; None = detect with :func:`use_journal`.
    """
    env = os.environ if environ is None else environ
    out = sys.stderr if stream is None else stream
    redactor = Redactor(secrets)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    if journal is None:
        journal = use_journal(env, out)
    handler: logging.Handler
    if journal:
        handler = StructuredJournalHandler(identifier)
    else:
        handler = logging.StreamHandler(out)
        # A terminal or a file gets timestamps; the journal adds its own.
        handler.setFormatter(StderrFormatter(timestamps=True))
    handler.addFilter(redactor)
    root.addHandler(handler)
    root.setLevel(level)
    install_excepthooks()
    # Python's own "Task exception was never retrieved" etc. go through logging too;
    # warnings.warn text should pass the same filter.
    logging.captureWarnings(True)
    return redactor


def install_excepthooks() -> None:
    """Route uncaught exceptions (main thread and other threads) through logging.

    Python's default hooks print the traceback straight to stderr — under
    systemd that is the journal — bypassing the :class:`Redactor`. An exception
    whose message quotes the key would then leak on the way down.
    """
    crash_logger = logging.getLogger("voiced.crash")

    def main_hook(
        exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None
    ) -> None:
        if issubclass(exc_type, KeyboardInterrupt):
            sys.__excepthook__(exc_type, exc, tb)
            return
        crash_logger.critical("uncaught %s", exc_type.__name__, exc_info=(exc_type, exc, tb))

    def thread_hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit:
            return
        name = args.thread.name if args.thread else "?"
        crash_logger.critical(
            "uncaught %s in thread %s",
            args.exc_type.__name__,
            name,
            exc_info=args.exc_value if args.exc_value is not None else True,
        )

    sys.excepthook = main_hook
    threading.excepthook = thread_hook
