"""voiced: a push-to-talk voice device daemon for the Gemini Live API.

The folder listing is the architecture (README "How it works"). The pure core sits at
the package root: no I/O, no asyncio, time comes in as ``now``; it imports nothing from
``runtime/``, ``app/``, ``cli/`` or ``hw/`` (tests/test_layout.py).

=========================  =====================================================================
module                     what it is
=========================  =====================================================================
``wire``                   Live API messages: encode what we send, decode what we get
``session``                the lifecycle core: connections, resume, rollover, retries
``session_state``          its state, data types and phase edges (``SessionCore``)
``session_connections``    open, switch and close connections (resume, rollover)
``session_failures``       a lost or refused connection, classified and acted on
``session_asks``           asks and the server's replies to them
``session_tools``          the model's tool calls
``session_capture``        mic frames and the button
``session_controls``       playback, devices, typed input and control
``turns``                  the turn machine: what the user experiences of one question
``vocabulary``             the core's settings, inputs, effects, stats, snapshot, failure
                           classes
``context``                the conversation kept for a new session
``backoff``                reconnect delays
``events``                 hardware events into the supervisor, device states out
``errors``                 voiced's exceptions
``health``                 the watchdog gate and the STATUS line (pure)
``runtime/``               the asyncio shell: supervisor, connection, control socket, systemd,
                           logs, state file, tools, Home Assistant
``app/``                   the composition root of ``voiced run``: config, endpoints, controls,
                           state keeper, tools and Home Assistant, the App
``cli/``                   one module per ``voiced`` sub-command (``cli/main.py`` lists them);
                           the demo in ``cli/demo/``
``liveserver/``            the local Live API server
=========================  =====================================================================
"""

__version__ = "0.1.0"
