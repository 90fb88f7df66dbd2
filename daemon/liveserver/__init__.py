"""
The local Live API server: protocol-faithful, limits enforced, time-scalable.

It stands in for the Gemini Live API (BidiGenerateContent) offline and in every
test; LIVE_PROTOCOL.md is its spec and §8 its checklist. The official
google-genai SDK referees it (tests/liveserver/).

==============  ===============================================================
module          what it is
==============  ===============================================================
``server``      ``LiveServer``: websockets I/O, routing, auth, inspection
``connection``  one client connection: setup, timers, faults, close
``handshake``   which paths exist, where credentials come from, which models
                serve (pure)
``protocol``    what clients send, parsed (pure, sans-I/O)
``messages``    what the server sends, built as dicts (pure)
``turns``       turn taking and replies on one connection
``field``       replies the way the real service sometimes gives them (F7, F9,
                F14–F18)
``model``       the fake "model": voice activity, what it hears and says
``store``       sessions, resumption handles, history, token accounting (pure)
``limits``      the limits and the time scale that shrinks them (pure)
``faults``      fault injection: misbehave the ways the real API does
``cli``         ``voiced live-server``
``demo``        ``voiced live-server --demo``: a short scripted conversation
==============  ===============================================================

Public API::

    from daemon.liveserver import LiveServer, ServerLimits

    limits = ServerLimits(time_scale=600.0)   # nominal seconds / time_scale = wall seconds
    async with LiveServer(host="127.0.0.1", port=0, limits=limits,
                          api_keys=None,       # or {"k1"}: only those keys
                          voice="auto") as server:   # "espeak" | "synthetic"
        server.port, server.url                # "ws://127.0.0.1:PORT"
        server.endpoint()                      # Gemini v1beta BidiGenerateContent URL
        server.endpoint(api="gemini", version="v1alpha", constrained=True)
        server.endpoint(api="vertex")
        # …aiplatform.v1beta1.LlmBidiService/BidiGenerateContent
        server.now()                           # server clock, nominal seconds

        # inspection (records in store.py; read-only)
        server.sessions[i].history             # [(role, text)] incl. clientContent & system turns
        server.sessions[i].audio_digest        # sha256 of ALL realtime audio, all connections
        server.sessions[i].turn_audio_digest   # sha256 of the audio of user turns only, in order
        server.sessions[i].audio_bytes_received, .tokens, .video_received, .ended, .ended_why
        server.sessions[i].user_turns[k]       # .audio_bytes/.audio_seconds/.audio_digest/.text/
                                               # .replies/.interrupted/.dropped/.rolled_back/
                                               # .reply_text/.source ("activity"|"vad"|"text"|
                                               # "client_content")
        server.sessions[i].connections[j]      # .opened_at/.closed_at/.close_code/.close_reason/
                                               # .resumed/.goaway_at/.faults
        server.connections, server.user_turns  # server-wide
        await server.wait_connections(n)       # n connections got setupComplete
        await server.wait_turns(k)             # k user turns answered (or interrupted)
        await server.wait_closed(n); await server.wait_for(predicate)

        # fault injection (faults.py)
        server.faults.close_now(1011, "Internal error occurred.")   # 1006 = drop TCP
        server.faults.stall(); server.faults.go_away_now(time_left=30)
        server.faults.silent_after_goaway(now=True | False)
        server.faults.delay_setup_complete(5); server.faults.withhold_setup_complete()
        server.faults.close_next(1011, "…")
        server.faults.send_malformed(); .send_unknown_field(); .send_oversized()
        server.faults.refuse_next_resume(); server.faults.expire_all_handles()
        # the field (FIELD_REPORTS.md; real close texts in protocol.py)
        server.faults.go_away_now(1.5); .go_away_now(50, 1000, CANCELLED)       # F1
        server.faults.cap_variant(time_left=None)     # F1: the cap closes, no goAway
        server.faults.go_away_then_silence(30)        # F2: no messages, no pongs, 1011 at T
        server.faults.forget_on_resume()              # F6: resume accepted, history gone
        server.faults.phantom_turn_after_resume(2.5, tool_call="x")   # F7
        server.faults.reanswer_history()              # F7: restored history answered again
        server.faults.backend_down(120)               # F9: 1011 unavailable on every setup
        server.faults.close_after(30, 1008, NOT_IMPLEMENTED)          # F10/F11 mid-session
        server.faults.refuse_next_setup(1007, KEY_EXPIRED)            # F11 at setup
        server.faults.session_cap(3, abandoned_timeout=60); .daily_budget(10)   # F12
        server.faults.pongs(25); server.faults.pongs(None)            # F13 late / never
        server.faults.spurious_interrupt()            # F16 after the next activityStart
        server.faults.misbehave_next_reply(kind, **params)   # F9, F14-F18: "burst",
            # "trickle", "reject_response", "stall_after_activity_end",
            # "premature_turn_complete", "interrupted_with_audio",
            # "undeclared_tool_call", "close_mid_audio" (see faults.py)
        server.faults.arm("session_cap", sessions="3")   # by name (FIELD_MODES; --fault)
        server.connections[j].key_id/.pings_received/.pongs_sent
        server.sessions[i].remembers_from_turn/.phantom_turns; user_turns[k].misbehaved

    with LiveServerThread(limits=...) as server: ...   # for synchronous callers

Command line: ``voiced live-server [--host] [--port] [--time-scale F]
[--api-key K ...] [--voice auto|espeak|synthetic] [--fault NAME[:K=V,...] ...]``.

Semantics worth knowing:

* a resumption handle is handed out right after ``setupComplete`` and at every
  turn boundary; updates mid-reply are ``{}`` (resumable false). A handle stands
  for the state it was issued for: resuming with it restores that history, and
  user turns after it are marked ``rolled_back``;
* ``audio_digest`` covers every realtime audio byte received, including audio
  outside turns and audio of turns cut off by a close; ``turn_audio_digest``
  covers only the audio of user turns, in order. Audio sent to a stalled or
  silent connection is not received at all;
* a reply cut by a barge-in counts in ``interrupted``; one cut because the
  connection ended (close, stall, silence) counts in ``dropped``;
* tool calls: a user turn "call NAME {json args}" calls a function declared in
  setup (``toolCall``); the ``toolResponse`` is then spoken; realtime input
  while a BLOCKING call is unanswered closes 1008.

Replies say what was heard, e.g. "Turn 3: I heard 1.40 seconds of audio,
digest 3fa2c1." (digest = first 6 hex digits of the sha256 of the turn's
audio); inputTranscription is "[1.40 seconds of audio, digest 3fa2c1]".
Tokens: audio at ``audio_tokens_per_second`` (25/s), text at ~4 chars/token.
"""

from __future__ import annotations

from daemon.liveserver.limits import ServerLimits
from daemon.liveserver.server import LiveServer, LiveServerThread

__all__ = ["LiveServer", "LiveServerThread", "ServerLimits"]
