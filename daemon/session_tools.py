"""Tool calls: started as RunTool, answered with toolResponse, cancelled, and the results
owed to a new connection (FIELD_REPORTS F10)."""

from __future__ import annotations

from typing import Any, Mapping

from daemon import wire
from daemon.session_state import (
    LIVE,
    SessionCore,
    _Call,
    _Pending,
)
from daemon.vocabulary import (
    CancelTool,
    RunTool,
    ToolDone,
)


class ToolCalls(SessionCore):
    """The part of the core that runs and answers tool calls."""

    def _on_tool_call(self, ev: wire.ToolCall) -> None:
        head = self._reply_head()
        asked = head is not None and not head.superseded
        for call in ev.calls:
            call_id = call.id or ""
            if not asked:
                # F7: a phantom tool call (nobody pressed): never run; the model still
                # gets an answer so it does not wait (F18).
                self.counts["phantom_replies"] += 1
                self._notify("warning", f"not running {call.name}: no user asked (phantom call)")
                self._send_tool_response(
                    call_id, call.name, {"error": "no user asked for this; not run"}
                )
            elif call.name not in self._tool_names:
                # F18: an undeclared name gets an answer at once, never silence.
                self._notify("warning", f"the model called an unknown tool {call.name!r}")
                self._send_tool_response(call_id, call.name, {"error": f"unknown tool {call.name}"})
            else:
                assert head is not None  # asked
                self._calls[call_id] = _Call(
                    call.name, self.counts["sessions"], self._blocking_tools
                )
                self.counts["tools_run"] += 1
                head.heard = head.called = True  # a call is an answer in progress
                self._emit(RunTool(call_id, call.name, dict(call.args)))

    def _on_tool_cancellation(self, ev: wire.ToolCallCancellation) -> None:
        for call_id in ev.ids:
            if self._calls.pop(call_id, None) is not None:
                self._cancelled.add(call_id)
                self._emit(CancelTool(call_id))

    def _on_tool_done(self, event: ToolDone) -> None:
        call = self._calls.pop(event.call_id, None)
        if call is None:
            if event.call_id in self._cancelled:
                self._cancelled.discard(event.call_id)
                self._notify("debug", f"dropping the result of cancelled call {event.call_id}")
            return
        if call.session != self.counts["sessions"]:
            # The session that asked is gone: the result becomes context of the next one.
            self._pending.append(
                _Pending("context", f"(The {call.name} tool returned: {dict(event.response)})")
            )
        elif self.phase is LIVE:
            self._send_tool_response(event.call_id, call.name, event.response)
            if self._reply_head() is None:
                # The ask is answered (NON_BLOCKING, or its connection is gone): the model
                # may still speak about the result on its own.
                self._tool_grace_until = self._now + self.settings.reply_timeout
        else:
            self._results.append((event.call_id, call, event.response))

    def _send_tool_response(self, call_id: str, name: str, response: Mapping[str, Any]) -> None:
        self._last_result_at = self._now
        # NON_BLOCKING results carry the tool's scheduling (FIELD_REPORTS Part 3, F18:
        # the model's default WHEN_IDLE can leave a voice turn unanswered).
        scheduling = self._tool_scheduling.get(name)
        self._send(
            wire.tool_response_message([wire.FunctionResponse(call_id, name, response, scheduling)])
        )
