"""
Turn taking and replies on one connection of the local Live server.

A :class:`Conversation` receives the parsed client inputs of one connection,
assembles user turns — push-to-talk (``activityStart``…``activityEnd``), the
energy VAD (with ``audioStreamEnd``), ``realtimeInput.text``, ``clientContent``
with ``turnComplete`` — accounts their tokens (compressing or ending the session
at the context window) and streams the replies (LIVE_PROTOCOL.md §3–§4):

    sessionResumptionUpdate{}  (resumable false: generating, §4)
    inputTranscription         ("[1.40 seconds of audio, digest 3fa2c1]")
    modelTurn audio chunks, interleaved with outputTranscription pieces
    generationComplete
    turnComplete + usageMetadata
    sessionResumptionUpdate{newHandle, resumable:true}

A barge-in (``activityStart``, VAD speech, ``clientContent`` turnComplete)
cuts the reply: ``interrupted`` then ``turnComplete``, no generationComplete
(and ``toolCallCancellation`` first for a pending tool call). A user turn
"call NAME {json args}" naming a declared function makes a ``toolCall``; so does
a pressed (audio) turn when a test scripted it (``server.tool_script``, a
:class:`ToolScript`). The ``toolResponse`` is then spoken — unless it was the result of
a NON_BLOCKING call sent with ``scheduling`` SILENT: then it only joins the context and
the turn ends with no audio. Tool rules, after FIELD_REPORTS F10/F18 and Part 3:

* blocking or not: ``behavior`` of the declaration; gemini-3.8-live defaults to
  NON_BLOCKING, gemini-3.1-flash-live is synchronous only (a NON_BLOCKING declaration
  still blocks), the rest default to BLOCKING;
* while a blocking call is unanswered, realtime input or clientContent closes the
  connection 1008 "The operation was aborted." (F10);
* a ``toolResponse`` naming an id we never issued (or one already answered or
  cancelled) closes 1008 "Requested entity was not found." (F10);
* a barge-in cancels the pending calls of the interrupted turn (``toolCallCancellation``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import TYPE_CHECKING, Any

from daemon.liveserver import field
from daemon.liveserver import messages as m
from daemon.liveserver import protocol as p
from daemon.liveserver.limits import audio_tokens, text_tokens
from daemon.liveserver.model import AudioSummary, EnergyVad, describe_audio, input_text, reply_text
from daemon.liveserver.store import SessionRecord, UserTurn

if TYPE_CHECKING:
    from daemon.liveserver.connection import LiveConnection

__all__ = ["Conversation", "ToolScript", "CONTEXT_EXHAUSTED", "TOOL_PENDING", "UNKNOWN_CALL"]

log = logging.getLogger(__name__)

CONTEXT_EXHAUSTED = "Resource has been exhausted (e.g. check quota)."
"""Close reason (1011) when the context window overflows without compression. No
real text is on record for this case; this is the closest real 1011 text
(LIVE_PROTOCOL.md §6): the context window is the resource that ran out."""

TOOL_PENDING = "The operation was aborted."
"""Close reason (1008) for realtime input or clientContent while a blocking tool call is
unanswered: the text users got for "streams audio during pending tool calls"
(FIELD_REPORTS F10, gRPC ABORTED)."""

UNKNOWN_CALL = "Requested entity was not found."
"""Close reason (1008) for a toolResponse whose id names no pending call (FIELD_REPORTS F10)."""

_CALL = re.compile(r"^\s*call\s+([A-Za-z_][\w.-]*)\s*(\{.*\})?\s*[.!?]?\s*$", re.S | re.I)
_REALTIME = (
    p.RealtimeAudio,
    p.RealtimeText,
    p.RealtimeVideo,
    p.ActivityStart,
    p.ActivityEnd,
    p.AudioStreamEnd,
    p.ClientContent,
)
"""Inputs refused while a blocking call is pending (F10: "a matching toolResponse before any
other client messages")."""


class ToolScript:
    """Tool calls a test wants the "model" to make for turns that carry no text to parse:
    ``server.tool_script.answer_next("turn_on", {"room": "hall"})`` makes the next pressed
    (or VAD) audio turn answer with that ``toolCall``. Queued in order, one per turn."""

    def __init__(self) -> None:
        self._queue: list[tuple[str, dict[str, Any]]] = []
        self.issued: list[tuple[str, str, dict[str, Any]]] = []
        """(call id, name, args) of every scripted call made."""

    def answer_next(self, name: str, args: dict[str, Any] | None = None) -> None:
        self._queue.append((name, dict(args or {})))

    def take(self) -> tuple[str, dict[str, Any]] | None:
        return self._queue.pop(0) if self._queue else None

    @property
    def waiting(self) -> int:
        return len(self._queue)


_VAD_KEEP_BYTES = 32_000  # 1 s of 16 kHz audio kept before speech starts


class Conversation:
    """The turns of one connection (a resumed session gets a new Conversation)."""

    def __init__(self, conn: LiveConnection, session: SessionRecord, params: p.SetupParams) -> None:
        self.conn = conn
        self.session = session
        self.params = params
        self.limits = conn.limits
        self.reply: asyncio.Task[None] | None = None
        self.pending_calls: dict[str, tuple[str, bool, asyncio.Future[Any]]] = {}
        """Unanswered tool calls: id → (name, blocking, future of the response)."""
        self._calls = 0
        self.messages = 0
        """Client messages consumed after setup (Vertex lastConsumedClientMessageIndex)."""
        # Push-to-talk turn
        self._in_activity = False
        self._rate = 16_000  # of the latest audio chunk; the mime type says (§3)
        self._turn_audio = bytearray()
        self._turn_text: list[str] = []
        # Automatic activity detection: audio since the last turn, and where speech began.
        self._vad = self._new_vad() if params.automatic_vad else None
        self._vad_rate = self._rate
        self._vad_buf = bytearray()
        self._vad_base = 0
        self._vad_start: int | None = None

    def _new_vad(self) -> EnergyVad:
        return EnergyVad(
            rate=self._rate,
            threshold_dbfs=self.limits.vad_threshold_dbfs,
            silence_ms=self.params.silence_ms or self.limits.vad_silence_ms,
            min_speech_ms=self.limits.vad_min_speech_ms,
        )

    # --- input -----------------------------------------------------------------------------

    async def handle(self, item: p.ClientInput) -> None:
        """Act on one client input. Raises :class:`~.protocol.ClientRefused`."""
        session, params = self.session, self.params
        if isinstance(item, _REALTIME) and any(b for _, b, _ in self.pending_calls.values()):
            # Realtime input while a blocking tool call is unanswered → 1008 (PITFALLS.md).
            raise p.ClientRefused(1008, TOOL_PENDING, "realtime input during a tool call")
        if isinstance(item, p.RealtimeAudio):
            session.add_audio(item.pcm)
            self._rate = item.rate
            self.conn.server.changed()
            await (self._vad_audio(item.pcm) if self._vad else self._ptt_audio(item.pcm))
        elif isinstance(item, p.ActivityStart):
            if self._vad is not None:
                # activityStart is only allowed with automatic detection disabled (§2).
                raise p.ClientRefused(
                    1007, p.INVALID_ARGUMENT, "activityStart with automatic VAD on"
                )
            if (
                self.reply is not None
                and self.reply.done()
                and self.conn.server.faults.take_spurious_interrupt()
            ):
                # F16 (e): activityStart after a finished reply gets a spurious
                # interrupted + turnComplete before the real reply.
                self.conn.record.faults.append("spurious_interrupt")
                await self.conn.send(m.interrupted())
                await self.conn.send(m.turn_complete(0, 0, self.conn.endpoint.api))
            if params.interrupts:
                await self.interrupt()
            self._in_activity = True
            self._turn_audio.clear()
            self._turn_text.clear()
        elif isinstance(item, p.ActivityEnd):
            if self._vad is not None:
                raise p.ClientRefused(1007, p.INVALID_ARGUMENT, "activityEnd with automatic VAD on")
            if self._in_activity:
                self._in_activity = False
                await self._user_turn(
                    "activity", bytes(self._turn_audio), " ".join(self._turn_text)
                )
        elif isinstance(item, p.AudioStreamEnd):
            if self._vad is not None:
                # Mic off: a turn in progress ends now; sending audio again reopens the stream.
                if self._vad_start is not None:
                    await self._vad_end(self._vad_base + len(self._vad_buf))
                self._vad, self._vad_rate = self._new_vad(), self._rate
                self._vad_buf.clear()
                self._vad_base = 0
        elif isinstance(item, p.RealtimeText):
            if self._in_activity:
                self._turn_text.append(item.text)
            else:
                await self._user_turn("text", b"", item.text)
        elif isinstance(item, p.RealtimeVideo):
            first = not session.video_received
            session.video_received += 1
            if first:
                self.conn.schedule_session_cap()  # 2 minutes once video arrived (§5)
            self.conn.server.changed()
        elif isinstance(item, p.ClientContent):
            await self._client_content(item)
        elif isinstance(item, p.ContextUpdate):
            if not params.model.startswith("gemini-3.8-live"):
                raise p.ClientRefused(
                    1007, p.INVALID_ARGUMENT, "contextUpdate needs gemini-3.8-live"
                )
            if item.system_instruction is not None:
                session.set_system_instruction(item.system_instruction, self.limits)
            self.conn.server.changed()
        elif isinstance(item, p.ToolResponse):
            for (call_id, name, response), scheduling in zip(item.responses, item.scheduling):
                match = self.pending_calls.get(call_id) or next(
                    (c for c in self.pending_calls.values() if not call_id and c[0] == name), None
                )
                if match is None or match[2].done():
                    # An id we never issued, already answered or cancelled (F10).
                    raise p.ClientRefused(
                        1008, UNKNOWN_CALL, f"toolResponse for unknown id {call_id!r}"
                    )
                match[2].set_result((response, scheduling))

    async def _ptt_audio(self, pcm: bytes) -> None:
        # Only audio inside activityStart…activityEnd is part of a turn
        # (TURN_INCLUDES_ONLY_ACTIVITY, the default, LIVE_PROTOCOL.md §2).
        if self._in_activity:
            self._turn_audio += pcm

    async def _vad_audio(self, pcm: bytes) -> None:
        assert self._vad is not None
        if self._rate != self._vad_rate and self._vad_start is None:
            # Another sample rate: windows are counted in samples, so start afresh.
            self._vad, self._vad_rate = self._new_vad(), self._rate
            self._vad_base = 0
            self._vad_buf.clear()
        self._vad_buf += pcm
        for event in self._vad.feed(pcm):
            if event.kind == "start":
                self._vad_start = max(event.offset, self._vad_base)
                if self.params.interrupts:
                    await self.interrupt()
            elif self._vad_start is not None:
                await self._vad_end(event.offset)
        if self._vad_start is None and len(self._vad_buf) > _VAD_KEEP_BYTES:
            drop = len(self._vad_buf) - _VAD_KEEP_BYTES
            del self._vad_buf[:drop]
            self._vad_base += drop

    async def _vad_end(self, end: int) -> None:
        assert self._vad_start is not None
        audio = bytes(self._vad_buf[self._vad_start - self._vad_base : end - self._vad_base])
        del self._vad_buf[: end - self._vad_base]
        self._vad_base = end
        self._vad_start = None
        await self._user_turn("vad", audio, "")

    async def _client_content(self, item: p.ClientContent) -> None:
        if any(role == "system" for role, _ in item.turns) and self.conn.endpoint.api != "vertex":
            # System-role turns are a Vertex feature (LIVE_PROTOCOL.md §3 notes).
            raise p.ClientRefused(1007, p.INVALID_ARGUMENT, "role system on the Gemini API")
        if item.turn_complete:
            await self.interrupt()  # turnComplete=true interrupts generation (§3 notes)
        for role, text in item.turns:
            self.session.append(
                role, text, text_tokens(text, self.limits), user_turn_start=role == "user"
            )
        self.conn.server.changed()
        if item.turn_complete:
            last_user = next((t for r, t in reversed(item.turns) if r == "user"), "")
            say = ""
            roles = [r for r, _ in item.turns]
            if (
                "user" in roles
                and roles[-1] == "model"
                and self.conn.server.faults.take_reanswer_history()
            ):
                # F7: history ending in an answered user turn, sent with turnComplete
                # true, gets that answer spoken again.
                say = item.turns[-1][1]
                self.conn.record.faults.append("reanswer_history")
            await self._user_turn("client_content", b"", last_user, in_history=True, say=say)

    # --- turns -----------------------------------------------------------------------------

    async def _user_turn(
        self, source: str, audio: bytes, text: str, in_history: bool = False, say: str = ""
    ) -> None:
        """A user turn ended: account it, maybe compress, then answer it."""
        session, params, limits = self.session, self.params, self.limits
        summary = describe_audio(audio, self._rate) if audio else None
        tokens = audio_tokens(summary.seconds if summary else 0, limits) + (
            0 if in_history else text_tokens(text, limits)
        )
        if params.compression:
            trigger = params.trigger_tokens or limits.default_trigger_tokens()
            target = params.target_tokens if params.target_tokens is not None else trigger // 2
            if session.tokens + tokens > trigger:
                # Sliding window, cut at the start of a user turn (LIVE_PROTOCOL.md §2).
                session.trim(target)
        turn = UserTurn(
            index=len(session.user_turns) + 1,
            source=source,
            connection_id=self.conn.record.id,
            text=text,
            reply_text=say,
            misbehaved="reanswer_history" if say else "",
        )
        if summary:
            turn.audio_bytes, turn.audio_seconds, turn.audio_digest = (
                summary.bytes,
                summary.seconds,
                summary.digest,
            )
        if not in_history:
            session.append("user", input_text(summary, text), tokens, user_turn_start=True)
        session.add_turn(turn, audio)
        self.conn.server.changed()
        if not params.compression and session.tokens > limits.context_window:
            session.end(
                f"context window of {limits.context_window} tokens overflowed",
                self.conn.server.now(),
            )
            await self.conn.close(1011, CONTEXT_EXHAUSTED)
            return
        previous = self.reply
        self.reply = asyncio.get_running_loop().create_task(self._answer(turn, summary, previous))

    async def interrupt(self) -> None:
        """Barge-in: stop the reply; it sends ``interrupted`` then ``turnComplete`` (§4)."""
        task = self.reply
        if task is None or task.done():
            return
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass

    def cancel(self) -> None:
        """Stop replying at once, sending nothing (close, stall, silence)."""
        if self.reply is not None:
            self.reply.cancel()

    # --- replies ---------------------------------------------------------------------------

    async def _answer(
        self, turn: UserTurn, summary: AudioSummary | None, previous: asyncio.Task[None] | None
    ) -> None:
        session, params, limits, send = self.session, self.params, self.limits, self.conn.send
        if previous is not None and not previous.done():
            await asyncio.wait([previous])  # NO_INTERRUPTION: replies queue up
        prompt_tokens = session.tokens
        text = turn.reply_text or reply_text(turn.index, summary, turn.text)
        if session.remembers_from_turn > 1 and not turn.reply_text:
            # F6: a resume that silently dropped the history; the model says so.
            text += f" I remember nothing before turn {session.remembers_from_turn}."
        fault = self.conn.server.faults.take_reply_fault()
        if fault is not None:
            await field.play(self, turn, summary, text, fault, prompt_tokens)
            return
        words = text.split()
        sent_seconds = 0.0
        spoken_words = 0
        try:
            if params.resumption:
                # Mid-generation a resume would lose data: resumable false, no handle (§4).
                await send(m.resumption_update(None, self.last_index()))
            if params.input_transcription and summary is not None:
                await send(m.input_transcription(input_text(summary, turn.text)))
            text = await self._maybe_call_tool(turn, text)
            words = text.split()
            turn.reply_text = text
            chunks: list[bytes] = []
            if text:  # "" only after a SILENT tool result: the turn ends with no audio
                pcm = await asyncio.to_thread(self.conn.server.voice.speak, text, params.voice)
                chunk = 24_000 * 2 * limits.reply_chunk_ms // 1000
                chunks = [pcm[i : i + chunk] for i in range(0, len(pcm), chunk)] or [b""]
            loop = asyncio.get_running_loop()
            start = loop.time()
            for i, piece in enumerate(chunks):
                await send(m.model_audio(piece))
                # Words are spread over the audio in proportion, as speech goes.
                upto = -(-(i + 1) * len(words) // len(chunks))
                if upto > spoken_words:
                    if params.output_transcription:
                        said = " ".join(words[spoken_words:upto])
                        await send(m.output_transcription((" " if spoken_words else "") + said))
                    spoken_words = upto
                sent_seconds += len(piece) / 48_000
                # Pace: reply_pace audio seconds per nominal second (PITFALLS.md, ~1.66x).
                await asyncio.sleep(
                    max(0.0, start + limits.reply_wall_seconds(sent_seconds) - loop.time())
                )
        except asyncio.CancelledError:
            if self.conn.quiet:
                turn.dropped += 1
                self.conn.server.changed()
                raise  # closing, stalled or silent: say nothing more
            if self.pending_calls:
                # Interrupting a turn cancels its calls (LIVE_PROTOCOL.md §4, §8.3).
                await send(m.tool_call_cancellation(list(self.pending_calls)))
                self.pending_calls.clear()
            said_text = " ".join(words[:spoken_words])
            response = audio_tokens(sent_seconds, limits)
            session.append("model", said_text, max(response, text_tokens(said_text, limits)))
            turn.interrupted += 1
            log.info("> session %s turn %d interrupted", session.id, turn.index)
            await send(m.interrupted())
            await send(m.turn_complete(prompt_tokens, response, self.conn.endpoint.api))
            await self.turn_boundary()
            return
        response = audio_tokens(sent_seconds, limits)
        await send(m.generation_complete())
        await send(
            m.turn_complete(
                prompt_tokens,
                response,
                self.conn.endpoint.api,
                prompt_details=[
                    ("AUDIO", audio_tokens(turn.audio_seconds, limits)),
                    ("TEXT", text_tokens(turn.text, limits)),
                ],
            )
        )
        session.append("model", text, response)
        turn.replies += 1
        log.info(
            "> session %s turn %d (%s) answered: %s", session.id, turn.index, turn.source, text
        )
        turn.prompt_tokens, turn.response_tokens = prompt_tokens, response
        await self.turn_boundary()

    async def _maybe_call_tool(self, turn: UserTurn, text: str) -> str:
        """ "call NAME {json args}" from the user calls a declared function: send
        ``toolCall``, wait for the ``toolResponse``, and say what it returned."""
        found = _CALL.match(turn.text or "")
        declared = dict(self.params.functions)
        script = getattr(self.conn.server, "tool_script", None)
        scripted = (
            script.take()
            if script is not None and turn.source in ("activity", "vad") and not found
            else None
        )
        if scripted is not None:
            name, args = scripted
            if name not in declared:
                # The real model only calls what was declared; a script asking for more is
                # a test mistake, said loudly (the turn is answered normally).
                log.warning("> scripted tool call %s is not declared in setup", name)
                return text
        elif not found or found.group(1) not in declared:
            return text
        else:
            name = found.group(1)
            try:
                args = json.loads(found.group(2)) if found.group(2) else {}
            except json.JSONDecodeError:
                args = {"text": found.group(2)}
        behavior = declared[name]
        # gemini-3.8-live calls NON_BLOCKING by default, older models BLOCKING (§2);
        # gemini-3.1-flash-live is synchronous only, whatever was declared (FIELD_REPORTS Part 3).
        model = self.params.model
        blocking = (
            model.startswith("gemini-3.1-flash-live")
            or behavior == "BLOCKING"
            or (not behavior and not model.startswith("gemini-3.8-live"))
        )
        self._calls += 1
        call_id = f"fc-{turn.index}-{self._calls}"
        if scripted is not None and script is not None:
            script.issued.append((call_id, name, args))
        self.session.append(
            "model", f"[call {name} {json.dumps(args)}]", text_tokens(name, self.limits)
        )
        return await self.call_tool(turn, call_id, name, args, blocking)

    async def call_tool(
        self, turn: UserTurn, call_id: str, name: str, args: dict[str, Any], blocking: bool
    ) -> str:
        """Send ``toolCall`` *call_id* and wait, however long, for its ``toolResponse``
        (pending until then: a BLOCKING one closes 1008 on realtime input, §8.3; a barge-in
        cancels it); record what it returned in the history. Returns the reply text that
        says so. Declared calls and F18's undeclared ones (:mod:`.field`) alike."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.pending_calls[call_id] = (name, blocking, future)
        await self.conn.send(m.tool_call(call_id, name, args))
        self.conn.server.changed()
        response, scheduling = await future
        del self.pending_calls[call_id]
        result = json.dumps(response, sort_keys=True, separators=(",", ":"))
        self.session.append("user", f"[{name} returned {result}]", text_tokens(result, self.limits))
        if not blocking and scheduling == "SILENT":
            # SILENT: the result joins the context and the model says nothing about it
            # (FIELD_REPORTS Part 3; LIVE_PROTOCOL.md §3). Scheduling only applies to a
            # NON_BLOCKING call: a blocking one is awaited and answered aloud whatever it says.
            turn.silent_results += 1
            return ""
        # WHEN_IDLE ("when the model is idle") and INTERRUPT ("at once, interrupting"): this
        # model's turn waits for the result with nothing else to say, so it is idle when
        # the result comes and both are spoken now; unspecified behaves as WHEN_IDLE.
        return f"Turn {turn.index}: {name} returned {result}."

    async def turn_boundary(self) -> None:
        """Nothing is generating: hand out a fresh resumption handle (§4)."""
        if self.params.resumption and not self.conn.quiet:
            handle = self.conn.server.store.issue_handle(self.session, self.conn.server.now())
            await self.conn.send(m.resumption_update(handle, self.last_index()))
        self.conn.server.changed()

    def last_index(self) -> int | None:
        # lastConsumedClientMessageIndex: Vertex transparent mode only (LIVE_PROTOCOL.md §2).
        if self.params.transparent and self.conn.endpoint.api == "vertex":
            return self.messages
        return None
