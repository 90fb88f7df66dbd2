"""The composition root of ``voiced run``: reads the configuration and wires the shell.

=================  ============================================================
module             what it is
=================  ============================================================
``run``            ``voiced run``: the ``App`` (a systemd ``Type=notify`` service)
``config``         the TOML configuration, validated in one place (``SECTIONS``)
``endpoints``      which Live API to talk to, and as whom
``controls``       the device controls: the control socket's target, the mic mute,
                   the state the LED shows
``debugcommands``  the control server plus the test-only ``debug-*`` commands
``pulse``          the watchdog's view of the pipeline (loop and mic heartbeat)
``statekeeper``    saves the conversation to the state file, restores it at start
``toolsandhome``   the ``[[tools]]`` runner and the ``[mqtt]`` Home Assistant bridge
``localvoice``     the device's own voice (espeak-ng) for offline announcements
=================  ============================================================
"""
