"""``voiced live-server``: run the local Live API server until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

__all__ = ["add_arguments", "main"]

log = logging.getLogger(__name__)


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be greater than 0")
    return value


def _fault_spec(text: str) -> tuple[str, dict[str, str]]:
    """``NAME[:K=V,...]`` → (name, params); the names are checked by ``Faults.arm``."""
    name, _, rest = text.partition(":")
    params: dict[str, str] = {}
    for item in filter(None, rest.split(",")):
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise argparse.ArgumentTypeError(f"{text!r}: parameters are K=V, comma-separated")
        params[key.strip()] = value.strip()
    return name.strip(), params


def _fault_list() -> str:
    from daemon.liveserver.faults import FIELD_MODES

    return "\n".join(f"  {name:26} {what}" for name, (what, _) in FIELD_MODES.items())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``voiced live-server``."""
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    parser.add_argument(
        "--port", type=int, default=8765, help="port (0 = any free port; default: %(default)s)"
    )
    parser.add_argument(
        "--time-scale",
        type=_positive,
        default=None,
        metavar="F",
        help="run every limit F times faster: with 60, the 10-minute connection cap "
        "lasts 10 s (default: 1)",
    )
    parser.add_argument(
        "--api-key",
        action="append",
        metavar="K",
        dest="api_keys",
        help="accept only this key (repeatable; default: accept any key or none)",
    )
    parser.add_argument(
        "--voice",
        choices=("auto", "espeak", "synthetic"),
        default="auto",
        help="reply voice: espeak-ng if installed (auto), or a synthetic "
        "speech-like signal (default: %(default)s)",
    )
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="NAME[:K=V,...]",
        dest="faults",
        type=_fault_spec,
        help="arm a field fault mode (repeatable), e.g. session_cap:sessions=3, "
        "backend_down:seconds=120, pongs_never, burst:count=2; "
        "--fault list shows them all (FIELD_REPORTS.md F1-F25)",
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="run a short scripted conversation against the server, print what "
        "happened and exit (time scale 100 unless --time-scale is given)",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="(default: %(default)s)",
    )


async def _serve(args: argparse.Namespace) -> int:
    from daemon.liveserver import LiveServer, ServerLimits

    if any(name == "list" for name, _ in args.faults):
        print("field fault modes (--fault NAME[:K=V,...]):\n" + _fault_list(), flush=True)
        return 0
    if args.time_scale is None:
        args.time_scale = 100.0 if args.demo else 1.0
    try:
        server = LiveServer(
            args.host,
            args.port,
            limits=ServerLimits(time_scale=args.time_scale),
            api_keys=args.api_keys,
            voice=args.voice,
        )
    except ValueError as exc:
        print(f"voiced live-server: {exc}", file=sys.stderr)
        return 2
    try:
        await server.start()
    except OSError as exc:
        print(
            f"voiced live-server: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}",
            file=sys.stderr,
        )
        return 1
    for name, params in args.faults:  # armed once the server clock runs (backend_down)
        try:
            server.faults.arm(name, **params)
        except (ValueError, TypeError) as exc:
            # TypeError: a parameter this fault does not take.
            print(f"voiced live-server: --fault {name}: {exc}", file=sys.stderr)
            await server.stop()
            return 2
    if args.demo:
        return await _demo(server, args)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(
        f"voiced live-server: listening (time scale {args.time_scale:g}, "
        f"voice {server.voice.kind}, "
        f"{'keys required' if args.api_keys else 'any key accepted'})",
        flush=True,
    )
    if args.faults:
        print("  faults armed: " + ", ".join(n for n, _ in args.faults), flush=True)
    for label, url in (
        ("gemini", server.endpoint()),
        ("gemini v1alpha", server.endpoint(version="v1alpha")),
        ("ephemeral", server.endpoint(version="v1alpha", constrained=True)),
        ("vertex", server.endpoint(api="vertex")),
    ):
        print(f"  {label:15} {url}", flush=True)
    print("Ctrl-C stops.", flush=True)
    try:
        await stop.wait()
    finally:
        await server.stop()
        sessions = server.sessions
        turns = sum(len(s.user_turns) for s in sessions)
        print(
            f"voiced live-server: stopped after {len(server.connections)} connections, "
            f"{len(sessions)} sessions, {turns} turns",
            flush=True,
        )
    return 0


async def _demo(server: object, args: argparse.Namespace) -> int:
    from daemon.liveserver.demo import scripted_conversation
    from daemon.liveserver.server import LiveServer

    assert isinstance(server, LiveServer)
    try:
        ok = await scripted_conversation(
            server.endpoint(), api_key=args.api_keys[0] if args.api_keys else None
        )
    finally:
        await server.stop()
    session = server.sessions[0] if server.sessions else None
    if session is not None:
        print(
            f"server saw: {len(session.connections)} connections, {len(session.user_turns)} turns, "
            f"{session.audio_bytes_received} audio bytes (sha256 {session.audio_digest[:12]}…), "
            f"{session.tokens} tokens in context",
            flush=True,
        )
    print("demo: OK" if ok else "demo: FAILED", flush=True)
    return 0 if ok else 1


def main(args: argparse.Namespace) -> int:
    """Run the server until Ctrl-C / SIGTERM; returns the exit status."""
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(name)s %(message)s")
    return asyncio.run(_serve(args))
