"""
Replies the way the real service sometimes gives them (FIELD_REPORTS.md F7, F9, F14–F18).

:class:`~.turns.Conversation` answers a user turn normally unless a reply fault
is armed (``server.faults.misbehave_next_reply``); then :func:`play` gives the
reply as the field saw it. :func:`start_phantom` is the unasked model turn after
a resume (F7). Wire shapes follow LIVE_PROTOCOL.md §4 and the "Imitation server"
scripts of FIELD_REPORTS.md; every misbehaving reply is recorded in
``UserTurn.misbehaved`` and ``ConnectionRecord.faults``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from daemon.liveserver import messages as m
from daemon.liveserver.faults import ReplyFault
from daemon.liveserver.limits import audio_tokens, text_tokens
from daemon.liveserver.model import AudioSummary, input_text
from daemon.liveserver.protocol import INTERNAL
from daemon.liveserver.store import UserTurn

if TYPE_CHECKING:
    from daemon.liveserver.turns import Conversation

__all__ = ["play", "start_phantom", "REJECTED", "PHANTOM_TEXT"]

log = logging.getLogger(__name__)

REJECTED = "RESPONSE_REJECTED"
"""``turnCompleteReason`` of a reply the service refused to give (F14)."""

PHANTOM_TEXT = "I'm back. Is there anything else I can help you with?"
"""What the unasked model turn after a resume says (F7: "an unsolicited 'ack' turn")."""

_BYTES_PER_SECOND = 48_000  # 24 kHz 16-bit mono reply audio (LIVE_PROTOCOL.md §3)


def _chunks(conv: Conversation, pcm: bytes) -> list[bytes]:
    size = _BYTES_PER_SECOND * conv.limits.reply_chunk_ms // 1000
    return [pcm[i : i + size] for i in range(0, len(pcm), size)] or [b""]


async def _speech(conv: Conversation, text: str) -> bytes:
    return await asyncio.to_thread(conv.conn.server.voice.speak, text, conv.params.voice)


async def _paced(conv: Conversation, chunks: list[bytes], wall_for: Any) -> float:
    """Send *chunks*; ``wall_for(audio_seconds_sent)`` says by when (wall seconds after
    the first). Returns the audio seconds sent."""
    loop = asyncio.get_running_loop()
    start, sent = loop.time(), 0.0
    for piece in chunks:
        await conv.conn.send(m.model_audio(piece))
        sent += len(piece) / _BYTES_PER_SECOND
        await asyncio.sleep(max(0.0, start + wall_for(sent) - loop.time()))
    return sent


def _turn_complete(
    conv: Conversation, prompt_tokens: int, seconds: float, reason: str | None = None
) -> dict[str, Any]:
    msg = m.turn_complete(prompt_tokens, audio_tokens(seconds, conv.limits), conv.conn.endpoint.api)
    if reason:
        msg["serverContent"]["turnCompleteReason"] = reason
    return msg


async def play(
    conv: Conversation,
    turn: UserTurn,
    summary: AudioSummary | None,
    text: str,
    fault: ReplyFault,
    prompt_tokens: int,
) -> None:
    """Answer *turn* misbehaving as *fault* says (see ``Faults.misbehave_next_reply``)."""
    conn, send, session, limits = conv.conn, conv.conn.send, conv.session, conv.limits
    turn.misbehaved = fault.kind
    conn.record.faults.append(f"reply:{fault.kind}")
    conn.server.changed()
    sent = 0.0
    try:
        if conv.params.resumption:
            await send(m.resumption_update(None, conv.last_index()))  # generating (§4)
        if fault.kind == "stall_after_activity_end":
            # F14 (a): the input transcription, then nothing for this turn.
            if conv.params.input_transcription:
                await send(m.input_transcription(input_text(summary, turn.text)))
            log.info("> session %s turn %d: stalled (fault)", session.id, turn.index)
            return
        if conv.params.input_transcription and summary is not None:
            await send(m.input_transcription(input_text(summary, turn.text)))
        if fault.kind == "reject_response":
            # F14 (b): no audio at all, turnComplete says RESPONSE_REJECTED.
            await send(_turn_complete(conv, prompt_tokens, 0.0, REJECTED))
            await conv.turn_boundary()
            return
        if fault.kind == "undeclared_tool_call":
            text = await _undeclared_call(conv, turn, fault.get("name", "not_registered"))
        pcm = await _speech(conv, text)
        chunks = _chunks(conv, pcm)
        if fault.kind == "premature_turn_complete":
            # F15: a couple of chunks, then turnComplete with no generationComplete.
            n = int(fault.get("chunks", 2))
            sent = await _paced(conv, chunks[:n], limits.reply_wall_seconds)
            await send(_turn_complete(conv, prompt_tokens, sent))
            session.append("model", " ".join(text.split()[:2]), audio_tokens(sent, limits))
            await conv.turn_boundary()
            return
        if fault.kind == "interrupted_with_audio":
            # F16 (a): interrupted:true and an audio chunk in one server message.
            sent = await _paced(conv, chunks[:1], limits.reply_wall_seconds)
            frame = m.model_audio(chunks[1] if len(chunks) > 1 else b"\0\0" * 480)
            frame["serverContent"]["interrupted"] = True
            await send(frame)
            await send(_turn_complete(conv, prompt_tokens, sent))
            turn.interrupted += 1
            session.append("model", text.split()[0], audio_tokens(sent, limits))
            await conv.turn_boundary()
            return
        if fault.kind == "close_mid_audio":
            # F9: "Internal error occurred." in the middle of the model's audio.
            await _paced(conv, chunks[: int(fault.get("chunks", 2))], limits.reply_wall_seconds)
            turn.dropped += 1
            # Closed by the connection, not from inside this reply, which the close cancels.
            conn.fault_close(int(fault.get("code", 1011)), str(fault.get("reason", INTERNAL)))
            return
        late = 0.0
        if fault.kind == "burst":
            # F17: seconds of audio within a fraction of a second; turnComplete only when
            # the server thinks the client has played it ("delay between
            # generation_complete and turn_complete", LiveServerContent docs).
            seconds, within = float(fault.get("seconds", 10.0)), float(fault.get("within", 0.3))
            pcm += b"\0\0" * int(max(0.0, seconds * 24_000 - len(pcm) / 2))
            chunks = _chunks(conv, pcm)
            total = len(pcm) / _BYTES_PER_SECOND
            sent = await _paced(conv, chunks, lambda s: limits.wall(within * s / total))
            late = max(0.0, total - within)
        elif fault.kind == "trickle":
            # F17: slower than realtime, with pauses.
            pace, gap = float(fault.get("pace", 0.7)), float(fault.get("gap", 1.5))
            every = float(fault.get("every", 2.0))
            sent = await _paced(
                conv, chunks, lambda s: limits.wall(s / pace + gap * int(s // every))
            )
        else:  # undeclared_tool_call: the spoken part is a normal reply
            sent = await _paced(conv, chunks, limits.reply_wall_seconds)
        if conv.params.output_transcription:
            await send(m.output_transcription(text))
        await send(m.generation_complete())
        turn.replies += 1
        turn.reply_text = text
        session.append("model", text, max(audio_tokens(sent, limits), text_tokens(text, limits)))
        conn.server.changed()
        if late:
            await asyncio.sleep(limits.wall(late))
        await send(_turn_complete(conv, prompt_tokens, sent))
        log.info("> session %s turn %d answered (%s): %s", session.id, turn.index, fault.kind, text)
        await conv.turn_boundary()
    except asyncio.CancelledError:
        if conn.quiet:
            turn.dropped += 1
            conn.server.changed()
            raise
        if conv.pending_calls:
            await send(m.tool_call_cancellation(list(conv.pending_calls)))
            conv.pending_calls.clear()
        turn.interrupted += 1
        await send(m.interrupted())
        await send(_turn_complete(conv, prompt_tokens, sent))
        await conv.turn_boundary()


async def _undeclared_call(conv: Conversation, turn: UserTurn, name: str) -> str:
    """F18: call a function nobody declared and wait, however long, for its response.
    Non-blocking: the point is the silence while it is unanswered, not a 1008."""
    return await conv.call_tool(turn, f"fc-{turn.index}-undeclared", name, {}, blocking=False)


def start_phantom(conv: Conversation, tool_call: str | None) -> None:
    """F7: an unasked model turn (after a ``toolCall`` of *tool_call* when given), as
    the conversation's reply so a barge-in interrupts it. Skipped while a reply runs."""
    if conv.conn.quiet or (conv.reply is not None and not conv.reply.done()):
        conv.conn.record.faults.append("phantom_turn:skipped")
        return
    conv.reply = asyncio.get_running_loop().create_task(_phantom(conv, tool_call))


async def _phantom(conv: Conversation, tool_call: str | None) -> None:
    conn, session, limits = conv.conn, conv.session, conv.limits
    sent = 0.0
    try:
        if tool_call:
            # A real call the service made: its id is pending like any other, so a
            # toolResponse to it (the client's "not run" error) is accepted, not refused
            # 1008 as an unknown id. Non-blocking: the phantom speaks on meanwhile, and the
            # user's audio is not refused while it is unanswered.
            call_id = f"phantom-{session.phantom_turns + 1}"
            future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            conv.pending_calls[call_id] = (tool_call, False, future)

            def forget(_f: asyncio.Future[Any], cid: str = call_id) -> None:
                conv.pending_calls.pop(cid, None)

            future.add_done_callback(forget)
            await conn.send(m.tool_call(call_id, tool_call, {}))
        pcm = await _speech(conv, PHANTOM_TEXT)
        sent = await _paced(conv, _chunks(conv, pcm), limits.reply_wall_seconds)
        if conv.params.output_transcription:
            await conn.send(m.output_transcription(PHANTOM_TEXT))
        session.phantom_turns += 1  # counted once all its audio is out
        conn.server.changed()
        await conn.send(m.generation_complete())
        await conn.send(_turn_complete(conv, session.tokens, sent))
        session.append("model", PHANTOM_TEXT, audio_tokens(sent, limits))
        log.info("> session %s: phantom turn", session.id)
    except asyncio.CancelledError:
        if conn.quiet:
            raise
        await conn.send(m.interrupted())
        await conn.send(_turn_complete(conv, session.tokens, sent))
    await conv.turn_boundary()
