"""The ``voiced`` command line: one module per sub-command (``main.COMMANDS`` lists them).

===========  ==================================================================
module       sub-command
===========  ==================================================================
``main``     ``voiced``: the parser, ``COMMANDS``; ``run`` is ``daemon.app.run``,
             ``live-server`` is ``daemon.liveserver.cli``
``ctl``      ``status | say | context | instruct | ptt | new-session``: the client
             half of the control protocol (``request``; the server is
             ``daemon.runtime.control``)
``config``   ``voiced config``: the effective configuration, secrets redacted
``devices``  ``voiced devices``: audio devices and GPIO pins
``check``    ``voiced check``: try each part once
``demo/``    ``voiced demo``
===========  ==================================================================
"""
