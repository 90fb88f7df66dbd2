"""Playback, devices and control: the speaker's reports, lost and restored devices, typed
questions and context, mute, announcements, instructions, video, a new conversation
and shutdown."""

from __future__ import annotations

from dataclasses import replace

from daemon import wire
from daemon.events import (
    DeviceLost,
    DeviceRestored,
    MicOverflow,
    PlaybackDrained,
    PlaybackStarted,
)
from daemon.session_state import (
    CLOSING,
    CONNECTING,
    FAILED,
    LIVE,
    NEW,
    STOPPED,
    SessionCore,
    _Due,
    _model_id,
    _Pending,
    _Question,
)
from daemon.vocabulary import (
    Announce,
    CancelTool,
    CloseConnection,
    Earcon,
    FlushPlayback,
    NewConversation,
    SendText,
    SetInstruction,
    SetMuted,
    Shutdown,
    SpeakLocally,
    VideoFrame,
)


class Controls(SessionCore):
    """The part of the core that takes the speaker, device and control events."""

    def _on_playback_started(self, event: PlaybackStarted) -> None:
        pass

    def _on_playback_drained(self, event: PlaybackDrained) -> None:
        self._playing = False

    def _on_device_lost(self, event: DeviceLost) -> None:
        self._lost_devices.add(event.kind)
        self._notify("error", f"{event.kind} {event.name!r} lost: {event.reason}")

    def _on_device_restored(self, event: DeviceRestored) -> None:
        self._lost_devices.discard(event.kind)
        self._notify("info", f"{event.kind} {event.name!r} is back")

    def _on_mic_overflow(self, event: MicOverflow) -> None:
        self.counts["mic_overflows"] = event.count

    def _on_send_text(self, event: SendText) -> None:
        if not event.text.strip():
            return
        if event.turn_complete:
            self.counts["asks"] += 1
            self._asks.append(_Question(self._new_id(), text=event.text))
        else:
            self._pending.append(_Pending("context", event.text))

    def _on_set_muted(self, event: SetMuted) -> None:
        if event.muted == self._muted:
            return
        self._muted = event.muted
        if event.muted:
            self._pre_roll.clear()
            self._pre_roll_bytes = 0
        self._notify("info", "mic muted: presses are ignored" if event.muted else "mic unmuted")

    def _on_announce(self, event: Announce) -> None:
        if event.earcon:
            self._emit(Earcon(event.earcon))
        if not event.text.strip():
            return
        if self._reachable or not self.settings.local_speech:
            # In the device's voice: the model is asked to say it (queued like any typed
            # question while a switch is under way, or offline without local speech).
            self._on_send_text(SendText(event.prompt, True))
            return
        if self.phase in (NEW, CONNECTING) and self.settings.announce_wait > 0:
            # A connection is on its way (boot, or a retry): the model's voice is likely a
            # moment away, so espeak-ng is the fallback of a bounded wait, not the first
            # choice: held until the connection is ready (then asked of the model), fails,
            # or announce_wait passes (then said here).
            until = self._now + self.settings.announce_wait
            self._held_announcements.append((event, until))
            self._notify("info", "connecting: the announcement waits for the connection")
            return
        self._notify("info", f"offline: saying the announcement on the device: {event.text!r}")
        self._emit(SpeakLocally(event.text))

    def _say_held_announcements(self, why: str) -> None:
        held, self._held_announcements = self._held_announcements, []
        for announcement, _ in held:
            self._notify(
                "info", f"{why}: saying the announcement on the device: {announcement.text!r}"
            )
            self._emit(SpeakLocally(announcement.text))

    def _on_set_instruction(self, event: SetInstruction) -> None:
        self.setup = replace(self.setup, system_instruction=event.text)
        self._instruction_pending = True
        self._persist_wanted = True
        if self.phase is LIVE:
            self._queue_instruction()

    def _queue_instruction(self) -> None:
        """Vertex: a system-role turn; gemini-3.8-live: contextUpdate; else a rollover
        (issue 3 item 6; LIVE_PROTOCOL.md §3; F8: Vertex 3.x may refuse the system turn
        with 1007, and then the setup of a fresh session carries it)."""
        model = _model_id(self.setup.model)
        if (self.api == "vertex" and not self._system_turns_refused) or model.startswith(
            "gemini-3.8-live"
        ):
            self._pending.append(_Pending("instruction", self.setup.system_instruction or ""))
            self._instruction_pending = False
        else:
            self._request = _Due("instruction changed", self._now, None, True)

    def _flush_pending(self) -> None:
        """Send typed context and instructions at a quiet point: clientContent interrupts
        a reply."""
        while self._pending and self.phase is LIVE:
            item = self._pending.popleft()
            if item.kind == "context":
                self.conversation.add_context(item.text)
                self._persist_wanted = True
                if self._history_in_setup and self._model_turns:
                    # 3.1 refuses clientContent after the first model turn (F8): the next
                    # session gets it with the restored history.
                    self._request = _Due("context on gemini-3.1", self._now, None, True)
                    continue
                self._send(wire.client_content_message([wire.Turn("user", item.text)], False))
                # (An instruction needs no proof: every resume's setup carries the current
                # one, LIVE_PROTOCOL.md §2.)
                self._unread_content = True
            elif self.api == "vertex" and not _model_id(self.setup.model).startswith(
                "gemini-3.8-live"
            ):
                self._send(wire.client_content_message([wire.Turn("system", item.text)], False))
                self._system_turn_conn = self._conn
            else:
                self._send(wire.context_update_message(item.text))
            self._handle_stale = True

    def _on_video_frame(self, event: VideoFrame) -> None:
        if self.phase is LIVE and not self._switch_wanted() and not self._blocking_call():
            self._send(wire.video_message(event.jpeg))
            if not self._video_sent:
                self._video_sent = True
                self._notify(
                    "info",
                    "video sent: this session is now capped at "
                    f"{self.settings.session_cap_video:g} s",
                )

    def _on_new_conversation(self, event: NewConversation) -> None:
        self._new_conversation()

    def _new_conversation(self) -> None:
        self._notify("info", "starting a new conversation")
        for ask in list(self._asks):
            # Asked of the conversation being forgotten: nobody wants these answers now.
            self._resolve(ask, "interrupted")
        self.conversation.clear()
        self._pending.clear()
        self._in_text.clear()
        self._out_text.clear()
        if self._playing:
            self._emit(FlushPlayback())
            self._playing = False
        self._handle = None
        self._persist_wanted = True
        if self.phase is LIVE:
            self._unasked = True  # what the old session still says is not played
            self._request = _Due("new conversation", self._now, self._now, True)
        elif self.phase is CONNECTING:
            self._close_then(True, "new conversation")
        elif self.phase is FAILED:
            self._open(fresh=True)

    def _on_shutdown(self, event: Shutdown) -> None:
        if self.phase in (CONNECTING, LIVE, CLOSING):
            self._emit(CloseConnection(self._conn, 1000, "shutting down"))
        for call_id in list(self._calls):
            self._emit(CancelTool(call_id))
        self._calls.clear()
        self._persist_wanted = True
        self._go(STOPPED)
        self._phase_deadline = None
        self._playing = False
        self._turn = None
