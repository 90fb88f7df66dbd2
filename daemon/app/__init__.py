"""The composition root of ``voiced run``: reads the configuration and wires the shell.

=============  ================================================================
module         what it is
=============  ================================================================
``run``        ``voiced run``: the ``App`` (a systemd ``Type=notify`` service)
``config``     the TOML configuration, validated in one place (``SECTIONS``)
``endpoints``  which Live API to talk to, and as whom
``wiring``     the small adapters between the supervisor and the service side
=============  ================================================================
"""
