"""
One client connection of the local Live server: setup, turns, replies, timers.

:class:`LiveConnection` is the asyncio shell around the pure pieces
(:mod:`.protocol` parses and builds messages, :mod:`.store` keeps sessions,
:mod:`.model` hears and speaks, :mod:`.limits` says when). It owns the
connection's timers — real ``loop.call_later`` timers, never checked on message
arrival (PITFALLS.md "goAway, then silence") — and its reply task.

Flow (LIVE_PROTOCOL.md §2–§5):
first frame must be ``setup`` → auth, model and resumption checks →
``setupComplete`` → turns: push-to-talk (activityStart/End) or energy VAD,
``realtimeInput.text``, ``clientContent`` → per reply: ``resumable:false``
update, inputTranscription, audio chunks interleaved with outputTranscription,
generationComplete, turnComplete + usageMetadata, then a new handle.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Callable, Coroutine

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from daemon.liveserver import protocol as p
from daemon.liveserver.limits import audio_tokens, text_tokens
from daemon.liveserver.model import EnergyVad, describe_audio, input_text, reply_text
from daemon.liveserver.store import ConnectionRecord, HandleRefused, SessionRecord, UserTurn

if TYPE_CHECKING:
    from daemon.liveserver.server import LiveServer

__all__ = ["LiveConnection", "CONTEXT_EXHAUSTED"]

log = logging.getLogger(__name__)

CONTEXT_EXHAUSTED = "Resource has been exhausted (e.g. check quota)."
"""Close reason (1011) when the context window overflows without compression. No
real text is on record for this case; this is the closest real 1011 text
(LIVE_PROTOCOL.md §6): the context window is the resource that ran out."""

_VAD_KEEP_BYTES = 32_000  # 1 s of 16 kHz audio kept before speech starts (prefix padding)


class LiveConnection:
    """Serves one WebSocket until it closes. Created by :class:`LiveServer`."""

    def __init__(self, server: LiveServer, ws: ServerConnection, record: ConnectionRecord,
                 endpoint: p.Endpoint, authorised: bool) -> None:
        self.server = server
        self.limits = server.limits
        self.ws = ws
        self.record = record
        self.endpoint = endpoint
        self.authorised = authorised
        self.params: p.SetupParams | None = None
        self.session: SessionRecord | None = None
        self.stalled = False
        self.silent = False
        self._closing = False
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._reply: asyncio.Task[None] | None = None
        self._messages = 0  # client messages consumed, setup is 0 (Vertex transparent mode)
        # Push-to-talk turn
        self._in_activity = False
        self._turn_audio = bytearray()
        self._turn_text: list[str] = []
        # Automatic activity detection
        self._vad: EnergyVad | None = None
        self._vad_buf = bytearray()
        self._vad_base = 0
        self._vad_start: int | None = None

    # --- lifecycle -------------------------------------------------------------------------

    async def run(self) -> None:
        """Serve until the socket closes; records how it ended."""
        try:
            await self._serve()
        except ConnectionClosed:
            pass
        finally:
            self._cancel_all()
            self._record_close()

    async def _serve(self) -> None:
        first = await self.ws.recv()
        self._received()
        if not self.authorised:
            # The real API answers a bad key only after the setup frame arrives.
            await self.close(1007, p.BAD_KEY)
            return
        try:
            params = p.parse_first_message(first)
            self._check_model(params)
            session, resumed = self._open_session(params)
        except p.ClientRefused as refused:
            log.info("! connection %d refused: %s", self.record.id, refused)
            await self.close(refused.code, refused.reason)
            return
        self._attach(params, session, resumed)
        if await self._setup_complete():
            async for frame in self.ws:
                if self.stalled:
                    # Stalled: read nothing more; the socket stays open until someone closes it.
                    await self.ws.wait_closed()
                    return
                self._received()
                if self.silent or self._closing:
                    continue  # goAway then silence: hear nothing, answer nothing
                try:
                    for item in p.parse_client_message(frame):
                        await self._dispatch(item)
                except p.ClientRefused as refused:
                    log.info("! connection %d: %s", self.record.id, refused)
                    await self.close(refused.code, refused.reason)
                    return
                self._messages += 1

    def _check_model(self, params: p.SetupParams) -> None:
        if not self.server.is_known_model(params.model, self.endpoint.api):
            raise p.model_not_found(params.model, self.endpoint)

    def _open_session(self, params: p.SetupParams) -> tuple[SessionRecord, bool]:
        now = self.server.now()
        if not params.handle:
            return self.server.store.new_session(params.model, self.endpoint.api, now), False
        if self.server.faults.take_refuse_resume():
            self.record.faults.append("refuse_resume")
            raise p.ClientRefused(1008, p.SESSION_NOT_FOUND, "refused by fault injection")
        try:
            session = self.server.store.resume(params.handle, now)
        except HandleRefused as exc:
            raise p.ClientRefused(1008, p.SESSION_NOT_FOUND, str(exc)) from None
        if session.open_connection is not None:
            # Resume while the session's previous socket is still open (LIVE_PROTOCOL.md §5).
            raise p.ClientRefused(1011, p.INTERNAL, "previous connection still open")
        if session.model != params.model:
            # Config may change on resume, except the model (LIVE_PROTOCOL.md §2).
            raise p.ClientRefused(1007, p.INVALID_ARGUMENT, "model changed on resume")
        return session, True

    def _attach(self, params: p.SetupParams, session: SessionRecord, resumed: bool) -> None:
        self.params = params
        self.session = session
        rec = self.record
        rec.session_id, rec.resumed, rec.model = session.id, resumed, params.model
        session.connections.append(rec)
        if params.system_instruction or not resumed:
            session.set_system_instruction(params.system_instruction, self.limits)
        if params.automatic_vad:
            self._vad = EnergyVad(threshold_dbfs=self.limits.vad_threshold_dbfs,
                                  silence_ms=params.silence_ms or self.limits.vad_silence_ms,
                                  min_speech_ms=self.limits.vad_min_speech_ms)
        # Connection cap: goAway `goaway_before` early, then close (LIVE_PROTOCOL.md §5).
        cap = self.limits.connection_cap
        self._at("goaway", rec.opened_at + cap - self.limits.goaway_before, self._on_goaway_timer)
        self._at("cap", rec.opened_at + cap, lambda: self._spawn(self.close(1011, p.DEADLINE_EXPIRED)))
        self._schedule_session_cap()
        self.server.changed()

    async def _setup_complete(self) -> bool:
        delay = self.server.faults.take_setup_delay()
        if delay == float("inf"):
            self.record.faults.append("withhold_setup_complete")
            return True  # keep reading, never answer setup
        if delay:
            self.record.faults.append(f"delay_setup_complete:{delay:g}")
            await asyncio.sleep(self.limits.wall(delay))
        await self.send(p.setup_complete())
        self.record.setup_completed_at = self.server.now()
        self.server.changed()
        close = self.server.faults.take_close_after_setup()
        if close:
            self.record.faults.append(f"close_next:{close[0]}")
            await self.close(*close)
            return False
        return True

    # --- sending and closing ---------------------------------------------------------------

    async def send(self, message: dict[str, Any]) -> None:
        """Send one server message as a binary UTF-8 JSON frame (LIVE_PROTOCOL.md §4)."""
        if self.stalled or self.silent or self._closing:
            return
        await self._send_raw(p.encode_server(message))

    async def _send_raw(self, frame: bytes) -> None:
        try:
            await self.ws.send(frame)
            self.record.frames_sent += 1
        except ConnectionClosed:
            pass

    async def close(self, code: int, reason: str) -> None:
        """Close with *code* and *reason*; 1006 drops TCP without a close frame."""
        if self._closing or self.record.closed_at is not None:
            return
        self._closing = True
        self._cancel_all()
        rec = self.record
        # A close reason fits in 123 bytes (RFC 6455 §5.5); longer real texts arrive cut.
        reason = reason.encode("utf-8")[:123].decode("utf-8", "ignore")
        rec.closed_at, rec.close_code, rec.close_reason, rec.closed_by = (
            self.server.now(), code, reason, "server")
        self.server.changed()
        if code == 1006:
            self.ws.transport.abort()
            return
        await self.ws.close(code, reason)

    def _record_close(self) -> None:
        rec = self.record
        if rec.closed_at is None:
            rec.closed_at = self.server.now()
            rec.close_code = self.ws.close_code if self.ws.close_code is not None else 1006
            rec.close_reason = self.ws.close_reason or ""
            rec.closed_by = "client"
        self.server.changed()

    def _received(self) -> None:
        self.record.messages_received += 1

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
        """Cancel every timer and task of this connection except the caller."""
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        current = asyncio.current_task()
        for task in list(self._tasks) + ([self._reply] if self._reply else []):
            if task is not current:
                task.cancel()

    def _on_goaway_timer(self) -> None:
        if self.server.faults.take_silent_after_goaway():
            self.record.faults.append("silent_after_goaway")
            self._spawn(self._go_away(self.limits.goaway_before, silent=True))
        else:
            self._spawn(self._go_away(self.limits.goaway_before, silent=False, reschedule=False))

    async def _go_away(self, time_left: float, silent: bool, reschedule: bool = True) -> None:
        await self.send(p.go_away(time_left))
        self.record.goaway_at, self.record.goaway_time_left = self.server.now(), time_left
        self.server.changed()
        if silent:
            self._cancel_all()
            self.silent = True
        elif reschedule:
            self._at("cap", self.server.now() + time_left,
                     lambda: self._spawn(self.close(1011, p.DEADLINE_EXPIRED)))
            self._cancel_timer("goaway")

    def _schedule_session_cap(self) -> None:
        # Without contextWindowCompression a session ends at 15 min (2 min once video
        # was received); compression lifts the cap (LIVE_PROTOCOL.md §5).
        assert self.session is not None and self.params is not None
        if self.params.compression:
            return
        session = self.session
        cap = self.limits.session_cap(bool(session.video_received))

        def expire() -> None:
            session.end(f"session cap {cap:g}s reached", self.server.now())
            self._spawn(self.close(1011, p.DEADLINE_EXPIRED))
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

    def fault_go_away(self, time_left: float, silent: bool) -> None:
        self.record.faults.append(f"go_away:{time_left:g}" + (":silent" if silent else ""))
        self._cancel_timer("goaway")
        self._spawn(self._go_away(time_left, silent))

    def fault_send_raw(self, frame: bytes, label: str) -> None:
        self.record.faults.append(label)
        self._spawn(self._send_raw(frame))

    def abort(self) -> None:
        """Drop the TCP connection (server shutdown of a stalled connection)."""
        self.ws.transport.abort()

    # --- input -----------------------------------------------------------------------------

    async def _dispatch(self, item: p.ClientInput) -> None:
        assert self.session is not None and self.params is not None
        if isinstance(item, p.RealtimeAudio):
            self.session.add_audio(item.pcm)
            self.server.changed()
            await (self._vad_audio(item.pcm) if self._vad else self._ptt_audio(item.pcm))
        elif isinstance(item, p.ActivityStart):
            if self._vad is not None:
                # activityStart is only allowed with automatic detection disabled.
                raise p.ClientRefused(1007, p.INVALID_ARGUMENT, "activityStart with automatic VAD on")
            if self.params.interrupts:
                await self._interrupt()
            self._in_activity = True
            self._turn_audio.clear()
            self._turn_text.clear()
        elif isinstance(item, p.ActivityEnd):
            if self._vad is not None:
                raise p.ClientRefused(1007, p.INVALID_ARGUMENT, "activityEnd with automatic VAD on")
            if self._in_activity:
                self._in_activity = False
                await self._user_turn("activity", bytes(self._turn_audio), " ".join(self._turn_text))
        elif isinstance(item, p.AudioStreamEnd):
            if self._vad is not None:
                if self._vad_start is not None:
                    await self._vad_end(self._vad_base + len(self._vad_buf))
                self._vad.reset()
                self._vad_buf.clear()
                self._vad_base = 0
                self._vad = EnergyVad(threshold_dbfs=self.limits.vad_threshold_dbfs,
                                      silence_ms=self.params.silence_ms or self.limits.vad_silence_ms,
                                      min_speech_ms=self.limits.vad_min_speech_ms)
        elif isinstance(item, p.RealtimeText):
            if self._in_activity:
                self._turn_text.append(item.text)
            else:
                await self._user_turn("text", b"", item.text)
        elif isinstance(item, p.RealtimeVideo):
            first = not self.session.video_received
            self.session.video_received += 1
            if first:
                self._schedule_session_cap()
            self.server.changed()
        elif isinstance(item, p.ClientContent):
            await self._client_content(item)
        elif isinstance(item, p.ContextUpdate):
            if not self.params.model.startswith("gemini-3.8-live"):
                raise p.ClientRefused(1007, p.INVALID_ARGUMENT, "contextUpdate needs gemini-3.8-live")
            if item.system_instruction is not None:
                self.session.set_system_instruction(item.system_instruction, self.limits)
            self.server.changed()
        # toolResponse: we never call tools, so there is nothing to answer.

    async def _ptt_audio(self, pcm: bytes) -> None:
        # Only audio inside activityStart…activityEnd is part of a turn
        # (TURN_INCLUDES_ONLY_ACTIVITY, the default, LIVE_PROTOCOL.md §2).
        if self._in_activity:
            self._turn_audio += pcm

    async def _vad_audio(self, pcm: bytes) -> None:
        assert self._vad is not None and self.params is not None
        self._vad_buf += pcm
        for event in self._vad.feed(pcm):
            if event.kind == "start":
                self._vad_start = max(event.offset, self._vad_base)
                if self.params.interrupts:
                    await self._interrupt()
            elif self._vad_start is not None:
                await self._vad_end(event.offset)
        if self._vad_start is None and len(self._vad_buf) > _VAD_KEEP_BYTES:
            drop = len(self._vad_buf) - _VAD_KEEP_BYTES
            del self._vad_buf[:drop]
            self._vad_base += drop

    async def _vad_end(self, end: int) -> None:
        assert self._vad_start is not None
        audio = bytes(self._vad_buf[self._vad_start - self._vad_base:end - self._vad_base])
        del self._vad_buf[:end - self._vad_base]
        self._vad_base = end
        self._vad_start = None
        await self._user_turn("vad", audio, "")

    async def _client_content(self, item: p.ClientContent) -> None:
        assert self.session is not None
        if any(role == "system" for role, _ in item.turns) and self.endpoint.api != "vertex":
            # System-role turns are a Vertex feature (LIVE_PROTOCOL.md §3 notes).
            raise p.ClientRefused(1007, p.INVALID_ARGUMENT, "role system on the Gemini API")
        if item.turn_complete:
            await self._interrupt()  # turnComplete=true interrupts generation (§3 notes)
        for role, text in item.turns:
            self.session.append(role, text, text_tokens(text, self.limits),
                                user_turn_start=role == "user")
        self.server.changed()
        if item.turn_complete:
            last_user = next((t for r, t in reversed(item.turns) if r == "user"), "")
            await self._user_turn("client_content", b"", last_user, in_history=True)

    # --- turns and replies -----------------------------------------------------------------

    async def _user_turn(self, source: str, audio: bytes, text: str, in_history: bool = False) -> None:
        """A user turn ended: account it, maybe compress, then answer it."""
        session, params, limits = self.session, self.params, self.limits
        assert session is not None and params is not None
        summary = describe_audio(audio) if audio else None
        tokens = audio_tokens(summary.seconds if summary else 0, limits) + (
            0 if in_history else text_tokens(text, limits))
        if params.compression:
            trigger = params.trigger_tokens or limits.default_trigger_tokens()
            target = params.target_tokens if params.target_tokens is not None else trigger // 2
            if session.tokens + tokens > trigger:
                # Sliding window, cut at the start of a user turn (LIVE_PROTOCOL.md §2).
                session.trim(target)
        turn = UserTurn(index=len(session.user_turns) + 1, source=source,
                        connection_id=self.record.id, text=text)
        if summary:
            turn.audio_bytes, turn.audio_seconds, turn.audio_digest = (
                summary.bytes, summary.seconds, summary.digest)
        if not in_history:
            session.append("user", input_text(summary, text), tokens, user_turn_start=True)
        session.user_turns.append(turn)
        self.server.changed()
        if not params.compression and session.tokens > limits.context_window:
            session.end(f"context window of {limits.context_window} tokens overflowed",
                        self.server.now())
            await self.close(1011, CONTEXT_EXHAUSTED)
            return
        previous = self._reply
        self._reply = asyncio.get_running_loop().create_task(self._answer(turn, summary, previous))

    async def _interrupt(self) -> None:
        """Barge-in: stop the reply, send ``interrupted`` then ``turnComplete`` (§4)."""
        task = self._reply
        if task is None or task.done():
            return
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass

    async def _answer(self, turn: UserTurn, summary: Any, previous: asyncio.Task[None] | None) -> None:
        session, params, limits = self.session, self.params, self.limits
        assert session is not None and params is not None
        if previous is not None and not previous.done():
            await asyncio.wait([previous])  # NO_INTERRUPTION: replies queue up
        prompt_tokens = session.tokens
        text = reply_text(turn.index, summary, turn.text)
        turn.reply_text = text
        words = text.split()
        sent_seconds = 0.0
        spoken_words = 0
        try:
            if params.resumption:
                # Mid-generation a resume would lose data: resumable false, no handle (§4).
                await self.send(p.resumption_update(None, self._last_index()))
            if params.input_transcription and summary is not None:
                await self.send(p.input_transcription(input_text(summary, turn.text)))
            pcm = await asyncio.to_thread(self.server.voice.speak, text, params.voice)
            chunk = 24_000 * 2 * limits.reply_chunk_ms // 1000
            chunks = [pcm[i:i + chunk] for i in range(0, len(pcm), chunk)] or [b""]
            loop = asyncio.get_running_loop()
            start = loop.time()
            for i, piece in enumerate(chunks):
                await self.send(p.model_audio(piece))
                # Words are spread over the audio in proportion, as speech goes.
                upto = -(-(i + 1) * len(words) // len(chunks))
                if upto > spoken_words:
                    said = words[spoken_words:upto]
                    if params.output_transcription:
                        await self.send(p.output_transcription(
                            (" " if spoken_words else "") + " ".join(said)))
                    spoken_words = upto
                sent_seconds += len(piece) / 48_000
                # Pace: reply_pace audio seconds per nominal second (PITFALLS.md, ~1.66x).
                await asyncio.sleep(max(0.0, start + limits.reply_wall_seconds(sent_seconds) - loop.time()))
        except asyncio.CancelledError:
            if self._closing or self.stalled or self.silent:
                raise
            said_text = " ".join(words[:spoken_words])
            response = audio_tokens(sent_seconds, limits)
            session.append("model", said_text, max(response, text_tokens(said_text, limits)))
            turn.interrupted += 1
            await self.send(p.interrupted())
            await self.send(p.turn_complete(prompt_tokens, response, self.endpoint.api))
            await self._turn_boundary()
            return
        response = audio_tokens(sent_seconds, limits)
        await self.send(p.generation_complete())
        await self.send(p.turn_complete(prompt_tokens, response, self.endpoint.api,
                                        prompt_details=[("AUDIO", audio_tokens(turn.audio_seconds, limits)),
                                                        ("TEXT", text_tokens(turn.text, limits))]))
        session.append("model", text, response)
        turn.replies += 1
        turn.prompt_tokens, turn.response_tokens = prompt_tokens, response
        await self._turn_boundary()

    async def _turn_boundary(self) -> None:
        assert self.session is not None and self.params is not None
        if self.params.resumption and not self._closing:
            handle = self.server.store.issue_handle(self.session, self.server.now())
            await self.send(p.resumption_update(handle, self._last_index()))
        self.server.changed()

    def _last_index(self) -> int | None:
        # lastConsumedClientMessageIndex: Vertex transparent mode only (LIVE_PROTOCOL.md §2).
        assert self.params is not None
        if self.params.transparent and self.endpoint.api == "vertex":
            return self._messages
        return None
