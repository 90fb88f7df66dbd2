"""What vulture calls dead but is used by name or from outside Python (issue 12).

vulture is not a dependency; to look for dead code:

    .venv/bin/python -m pip install vulture
    .venv/bin/vulture daemon hw testing bench tests tools/vulture_whitelist.py \
        --min-confidence 60 --ignore-decorators "@fault" \
        --ignore-names "_on_*,_ignore,pytest_*,do_GET,do_POST,log_message"

The flags cover what is used by name: the session's transition handlers (``TRANSITIONS``
maps events to ``_on_*`` / ``_ignore`` by name), the fault matrix's ``@fault`` scenarios
(bench/faults.py registers them), pytest hooks and ``http.server`` handler methods. This
file lists the rest; each line names what reads it. A finding that is not here is dead
code: remove it (a symbol only a test uses stays only if the test observes real
behaviour through it).
"""

# ruff: noqa
# fmt: off

# Callbacks set on objects of other libraries (gpiozero, paho-mqtt, PortAudio, google-genai).
_.when_activated          # gpiozero calls it (hw/button.py)
_.when_deactivated
_.on_connect              # paho-mqtt calls it
_.on_subscribe
userdata                  # paho-mqtt callback signature
flags
reason_codes
time_info                 # PortAudio stream callback signature (hw/mic.py, hw/speaker.py)
_._websocket_base_url     # google-genai internals, pointed at the local server (LIVE_PROTOCOL.md §7)
_._websocket_ssl_ctx

# bench/faults.py: the tool and process rows register themselves when imported.
procfaults
toolfaults
wall_s                    # FaultResult field, printed with asdict()

# Dataclass fields: the decoded server messages (daemon/wire.py) keep every field the
# protocol sends; the local server's records (daemon/liveserver/store.py) are what a
# debugging session or a test inspects after a run.
thought
cached_tokens
thoughts_tokens
tool_use_prompt_tokens
last_consumed_index
goaway_time_left
messages_received
ended_at
connection_id

# tests: pytest hook arguments and stand-in attributes kept for the protocol they mimic.
nextitem
_.flushes
