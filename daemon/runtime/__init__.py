"""The asyncio shell around the pure core: adapters that run, never decide.

May import the core and ``hw/``; never ``daemon/app/`` or ``daemon/cli/``.

=================  ============================================================
module             what it is
=================  ============================================================
``supervisor``     the one owner of every asyncio task and thread hop: the inbox,
                   the timer, effects executed in order
``connection``     one WebSocket to the Live API (websockets client)
``control``        the control socket's server half (``voiced status`` …)
``service``        systemd: sd_notify, watchdog, STATUS, credentials, exit codes
``logs``           journal/stderr logging, API key redaction
``state``          the atomic state file (handle, conversation)
``tools``          the tool runner, declarations and argument checks
``actions``        what a tool does: gpio, command, http, mqtt, built-ins
``homeassistant``  the device in Home Assistant over MQTT
=================  ============================================================
"""
