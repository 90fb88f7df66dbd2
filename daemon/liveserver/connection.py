"""
One client connection of the local Live server: setup, timers, faults, close.

:class:`LiveConnection` is the asyncio shell around the pure pieces
(:mod:`.protocol` parses, :mod:`.messages` builds, :mod:`.store` keeps
sessions, :mod:`.limits` says when); the turns themselves are a
:class:`~.turns.Conversation`. It owns the connection's timers — real
``loop.call_later`` timers, never checked on message arrival (PITFALLS.md
"goAway, then silence").

Flow (LIVE_PROTOCOL.md §2–§5): the first frame must be ``setup`` → key, model
and resumption checks (refusals close with the real code and text, §6) →
``setupComplete`` and a first resumption handle → turns → at the connection
cap ``goAway{timeLeft}`` ``goaway_before`` early, then close 1011 "Deadline
expired…"; without compression the session cap ends the session the same way.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Callable, Coroutine

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.protocol import State

from daemon.liveserver import field
from daemon.liveserver import messages as m
from daemon.liveserver import protocol as p
from daemon.liveserver.handshake import Endpoint, model_not_found
from daemon.liveserver.store import ConnectionRecord, HandleRefused, SessionRecord
from daemon.liveserver.turns import CONTEXT_EXHAUSTED, Conversation

if TYPE_CHECKING:
    from daemon.liveserver.server import LiveServer

__all__ = ["LiveConnection", "CONTEXT_EXHAUSTED"]

log = logging.getLogger(__name__)


class LiveConnection:
    """Serves one WebSocket until it closes. Created by :class:`LiveServer`."""

    def __init__(
        self,
        server: LiveServer,
        ws: ServerConnection,
        record: ConnectionRecord,
        endpoint: Endpoint,
        authorised: bool,
    ) -> None:
        self.server = server
        self.limits = server.limits
        self.ws = ws
        self.record = record
        self.endpoint = endpoint
        self.authorised = authorised
        self.session: SessionRecord | None = None
        self.conversation: Conversation | None = None
        self.stalled = False
        self.silent = False
        self.muted = False
        """goAway then silence (F2): reading paused, so no pongs either, until the close."""
        self.closing = False
        self.pong_delay: float | None = 0.0
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def quiet(self) -> bool:
        """Closing, stalled or silent: nothing more is sent."""
        return self.closing or self.stalled or self.silent

    # --- lifecycle -------------------------------------------------------------------------

    async def run(self) -> None:
        """Serve until the socket closes; records how it ended."""
        try:
            await self._serve()
        except ConnectionClosed:
            pass
        finally:
            self.closing = True  # a reply cut off here says nothing more
            self._cancel_all()
            self._record_close()

    async def _serve(self) -> None:
        first = await self.ws.recv()
        self.record.messages_received += 1
        if not self.authorised:
            # The real API answers a bad key only after the setup frame arrives.
            await self.close(1007, p.BAD_KEY)
            return
        try:
            params = p.parse_first_message(first)
            if not self.server.is_known_model(params.model, self.endpoint.api):
                raise model_not_found(params.model, self.endpoint)
            self._field_refusals()
            session, resumed = self._open_session(params)
        except p.ClientRefused as refused:
            log.info("! connection %d refused: %s", self.record.id, refused)
            await self.close(refused.code, refused.reason)
            return
        conversation = self._attach(params, session, resumed)
        if not await self._setup_complete(conversation):
            return
        async for frame in self.ws:
            if self.stalled:
                # Stalled: read nothing more; the socket stays open until someone closes it.
                await self.ws.wait_closed()
                return
            self.record.messages_received += 1
            if self.quiet:
                continue  # goAway then silence: hear nothing, answer nothing
            try:
                for item in p.parse_client_message(frame):
                    if isinstance(item, p.ToolResponse):
                        self.record.tool_responses.extend(
                            (call_id, name, scheduling)
                            for (call_id, name, _), scheduling in zip(
                                item.responses, item.scheduling
                            )
                        )
                    await conversation.handle(item)
            except p.ClientRefused as refused:
                log.info("! connection %d: %s", self.record.id, refused)
                await self.close(refused.code, refused.reason)
                return
            conversation.messages += 1

    def _field_refusals(self) -> None:
        """Setups the field sees refused although nothing is wrong with them
        (FIELD_REPORTS.md F9, F11, F12). Raises :class:`~.protocol.ClientRefused`."""
        faults, rec = self.server.faults, self.record
        refused = faults.take_refuse_setup()
        if refused is not None:
            rec.faults.append(f"refuse_setup:{refused[0]}")
            raise p.ClientRefused(*refused, "refused by fault injection")
        if faults.backend_is_down():
            rec.faults.append("backend_down")
            raise p.ClientRefused(1011, faults.armed.backend_reason, "backend down")
        armed, now = faults.armed, self.server.now()
        mine = [
            c
            for c in self.server.connections
            if c is not rec and c.key_id == rec.key_id and c.setup_completed_at is not None
        ]
        if armed.session_cap is not None:
            # Open sessions, and sockets dropped without a close frame until the server
            # notices (F12: "count sockets the client abandoned … until a timeout").
            held = sum(
                1
                for c in mine
                if c.is_open
                or (c.close_code == 1006 and now - (c.closed_at or now) < armed.abandoned_timeout)
            )
            if held >= armed.session_cap:
                rec.faults.append("session_cap")
                raise p.ClientRefused(
                    1011,
                    p.RESOURCE_EXHAUSTED,
                    f"{held} concurrent sessions (cap {armed.session_cap})",
                )
        if armed.daily_budget is not None and len(mine) >= armed.daily_budget:
            rec.faults.append("daily_budget")
            raise p.ClientRefused(
                1011, p.RESOURCE_EXHAUSTED, f"daily budget of {armed.daily_budget} sessions used"
            )

    def _open_session(self, params: p.SetupParams) -> tuple[SessionRecord, bool]:
        now = self.server.now()
        if not params.handle:
            return self.server.store.new_session(params.model, self.endpoint.api, now), False
        if self.server.faults.take_refuse_resume():
            self.record.faults.append("refuse_resume")
            raise p.ClientRefused(1008, p.SESSION_NOT_FOUND, "refused by fault injection")
        try:
            session, snapshot = self.server.store.resume(params.handle, now)
        except HandleRefused as exc:
            raise p.ClientRefused(1008, p.SESSION_NOT_FOUND, str(exc)) from None
        if session.open_connection is not None:
            # Resume while the session's previous socket is still open (LIVE_PROTOCOL.md §5).
            raise p.ClientRefused(1011, p.INTERNAL, "previous connection still open")
        if session.model != params.model:
            # Config may change on resume, except the model (LIVE_PROTOCOL.md §2).
            raise p.ClientRefused(1007, p.INVALID_ARGUMENT, "model changed on resume")
        session.restore(snapshot)
        if self.server.faults.take_forget_on_resume():
            # F6: the resume "succeeds" but the context is gone.
            self.record.faults.append("forget_on_resume")
            session.forget()
        return session, True

    def _attach(self, params: p.SetupParams, session: SessionRecord, resumed: bool) -> Conversation:
        self.session = session
        rec = self.record
        rec.session_id, rec.resumed, rec.model = session.id, resumed, params.model
        session.connections.append(rec)
        if params.system_instruction or not resumed:
            session.set_system_instruction(params.system_instruction, self.limits)
        self.conversation = Conversation(self, session, params)
        # Connection cap: goAway `goaway_before` early, then close (LIVE_PROTOCOL.md §5).
        cap = self.limits.connection_cap
        variant = self.server.faults.take_cap_variant()
        if variant is None:
            self._at(
                "goaway", rec.opened_at + cap - self.limits.goaway_before, self._on_goaway_timer
            )
            self._at("cap", rec.opened_at + cap, self._deadline_close)
        else:
            # F1 variants: another timeLeft, another close, or no goAway at all.
            time_left, code, reason = variant
            rec.faults.append(
                f"cap:{'no_goaway' if time_left is None else f'{time_left:g}'}:{code}"
            )
            if time_left is not None:
                self._at(
                    "goaway",
                    rec.opened_at + cap - time_left,
                    lambda: self._spawn(self._go_away(time_left, silent=False, reschedule=False)),
                )
            self._at("cap", rec.opened_at + cap, lambda: self._spawn(self.close(code, reason)))
        self.schedule_session_cap()
        self.fault_pongs(self.server.faults.armed.pong_delay, record=False)
        self.server.changed()
        return self.conversation

    async def _setup_complete(self, conversation: Conversation) -> bool:
        delay = self.server.faults.take_setup_delay()
        if delay == float("inf"):
            self.record.faults.append("withhold_setup_complete")
            return True  # keep reading, never answer setup
        if delay:
            self.record.faults.append(f"delay_setup_complete:{delay:g}")
            await asyncio.sleep(self.limits.wall(delay))
        await self.send(m.setup_complete())
        self.record.setup_completed_at = self.server.now()
        self.server.changed()
        log.info(
            "= connection %d: session %s %s, model %s",
            self.record.id,
            self.record.session_id,
            "resumed" if self.record.resumed else "new",
            self.record.model,
        )
        close = self.server.faults.take_close_after_setup()
        if close:
            self.record.faults.append(f"close_next:{close[0]}")
            await self.close(*close)
            return False
        later = self.server.faults.take_close_after()
        if later is not None:
            # F10/F11: a healthy session closed mid-way with a "policy" or "argument" code.
            seconds, code, reason = later
            self.record.faults.append(f"close_after:{seconds:g}:{code}")
            self._at(
                "close_after",
                self.server.now() + seconds,
                lambda: self._spawn(self.close(code, reason)),
            )
        phantom = self.server.faults.take_phantom_after_resume() if self.record.resumed else None
        if phantom is not None:
            delay, tool = phantom
            self.record.faults.append(f"phantom_turn:{delay:g}")
            self._at(
                "phantom",
                self.server.now() + delay,
                lambda: field.start_phantom(conversation, tool),
            )
        # Right after setup nothing is generating, so a resume would lose nothing: hand
        # out a handle at once, so that even a session idle for a whole connection can be
        # resumed. [UNCERTAIN] whether the real API does this before the first turn
        # (LIVE_PROTOCOL.md §4 only shows updates after turnComplete).
        await conversation.turn_boundary()
        return True

    # --- sending and closing ---------------------------------------------------------------

    async def send(self, message: dict[str, Any]) -> None:
        """Send one server message as a binary UTF-8 JSON frame (LIVE_PROTOCOL.md §4)."""
        if self.quiet:
            return
        await self._send_raw(m.encode_server(message))

    async def _send_raw(self, frame: bytes) -> None:
        try:
            await self.ws.send(frame)
            self.record.frames_sent += 1
        except ConnectionClosed:
            pass

    async def close(self, code: int, reason: str) -> None:
        """Close with *code* and *reason*; 1006 drops TCP without a close frame."""
        if self.closing or self.record.closed_at is not None:
            return
        self.closing = True
        self._cancel_all()
        rec = self.record
        # A close reason fits in 123 bytes (RFC 6455 §5.5); longer real texts arrive cut.
        reason = reason.encode("utf-8")[:123].decode("utf-8", "ignore")
        rec.closed_at, rec.close_code, rec.close_reason, rec.closed_by = (
            self.server.now(),
            code,
            reason,
            "server",
        )
        self.server.changed()
        if code == 1006:
            self.ws.transport.abort()
            return
        if self.muted:
            self.ws.transport.resume_reading()  # the closing handshake needs the reply
        await self.ws.close(code, reason)

    def _deadline_close(self) -> None:
        self._spawn(self.close(1011, p.DEADLINE_EXPIRED))

    def _record_close(self) -> None:
        rec = self.record
        if rec.closed_at is None:
            rec.closed_at = self.server.now()
            rec.close_code = self.ws.close_code if self.ws.close_code is not None else 1006
            rec.close_reason = self.ws.close_reason or ""
            rec.closed_by = "client"
        log.info(
            "x connection %d closed by %s: %s %s",
            rec.id,
            rec.closed_by,
            rec.close_code,
            rec.close_reason,
        )
        self.server.changed()

    # --- timers ----------------------------------------------------------------------------

    def _at(self, name: str, nominal_time: float, callback: Callable[[], None]) -> None:
        """Run *callback* at server time *nominal_time* on a real loop timer."""
        self._cancel_timer(name)
        delay = max(0.0, self.limits.wall(nominal_time - self.server.now()))
        self._timers[name] = asyncio.get_running_loop().call_later(delay, callback)

    def _cancel_timer(self, name: str) -> None:
        handle = self._timers.pop(name, None)
        if handle:
            handle.cancel()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _cancel_all(self) -> None:
        """Cancel every timer, task and reply of this connection except the caller."""
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        current = asyncio.current_task()
        for task in list(self._tasks):
            if task is not current:
                task.cancel()
        if self.conversation is not None and self.conversation.reply is not current:
            self.conversation.cancel()

    def _on_goaway_timer(self) -> None:
        silent = self.server.faults.take_silent_after_goaway()
        if silent:
            self.record.faults.append("silent_after_goaway")
        mute = not silent and self.server.faults.take_mute_after_goaway()
        if mute:
            self.record.faults.append("goaway_then_silence")
        self._spawn(
            self._go_away(self.limits.goaway_before, silent=silent, reschedule=False, mute=mute)
        )

    async def _go_away(
        self,
        time_left: float,
        silent: bool,
        reschedule: bool = True,
        code: int = 1011,
        reason: str = p.DEADLINE_EXPIRED,
        mute: bool = False,
    ) -> None:
        await self.send(m.go_away(time_left))
        self.record.goaway_at, self.record.goaway_time_left = self.server.now(), time_left
        self.server.changed()
        if silent:
            # goAway, then silence: never close, never answer (PITFALLS.md).
            self._cancel_all()
            self.silent = True
            return
        if mute:
            # F2: goAway, then nothing — no messages, no pongs — until the close at timeLeft.
            self._cancel_all()
            self.silent = self.muted = True
            self.ws.transport.pause_reading()
        if reschedule or mute:
            self._cancel_timer("goaway")
            self._at(
                "cap", self.server.now() + time_left, lambda: self._spawn(self.close(code, reason))
            )

    def schedule_session_cap(self) -> None:
        """(Re)arm the session cap: without contextWindowCompression a session ends at
        15 min, or 2 min once video was received; compression lifts it (§5)."""
        assert self.session is not None and self.conversation is not None
        if self.conversation.params.compression:
            return
        session = self.session
        cap = self.limits.session_cap(bool(session.video_received))

        def expire() -> None:
            session.end(f"session cap {cap:g}s reached", self.server.now())
            self._deadline_close()

        self._at("session_cap", session.created_at + cap, expire)

    # --- fault targets (see faults.py) -----------------------------------------------------

    def fault_close(self, code: int, reason: str) -> None:
        self.record.faults.append(f"close:{code}")
        self._spawn(self.close(code, reason))

    def fault_stall(self) -> None:
        self.record.faults.append("stall")
        self.stalled = True
        self._cancel_all()
        self.ws.transport.pause_reading()

    def fault_go_away(
        self,
        time_left: float,
        silent: bool,
        code: int = 1011,
        reason: str = p.DEADLINE_EXPIRED,
        mute: bool = False,
    ) -> None:
        self.record.faults.append(
            f"go_away:{time_left:g}"
            + (":silent" if silent else "")
            + (":mute" if mute else "")
            + (f":{code}" if code != 1011 else "")
        )
        self._cancel_timer("goaway")
        self._spawn(self._go_away(time_left, silent, code=code, reason=reason, mute=mute))

    def fault_pongs(self, delay: float | None, record: bool = True) -> None:
        """F13: answer pings *delay* nominal seconds late, or never (``None``).

        websockets answers a ping inside its sans-I/O protocol (``recv_frame`` →
        ``send_frame(PONG)``), before any handler sees it; the only seam is that
        instance's ``send_frame``, so it is wrapped here, for this connection only."""
        if record and delay != 0:
            self.record.faults.append("pongs:never" if delay is None else f"pongs:{delay:g}")
        self.pong_delay = delay
        proto = self.ws.protocol
        if "send_frame" in vars(proto):
            return  # already wrapped; the wrapper reads self.pong_delay
        original = proto.send_frame
        loop = asyncio.get_running_loop()

        def late(frame: Frame) -> None:
            if proto.state is State.OPEN and not self.muted:
                original(frame)
                self.ws.send_data()
                self.record.pongs_sent += 1

        def send_frame(frame: Frame) -> None:
            if frame.opcode is not Opcode.PONG:
                original(frame)
                return
            self.record.pings_received += 1
            if self.pong_delay is None:
                return  # never answered
            if self.pong_delay:
                loop.call_later(self.limits.wall(self.pong_delay), late, frame)
                return
            original(frame)
            self.record.pongs_sent += 1

        proto.send_frame = send_frame  # type: ignore[method-assign]

    def fault_send_raw(self, frame: bytes, label: str) -> None:
        self.record.faults.append(label)
        self._spawn(self._send_raw(frame))

    def abort(self) -> None:
        """Drop the TCP connection (server shutdown of a stalled connection)."""
        self.ws.transport.abort()
