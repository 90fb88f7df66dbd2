"""voiced: a push-to-talk voice device daemon for the Gemini Live API.

The package is laid out as a pure core (``wire``, ``session``, ``context``,
``backoff``, ``settings``, ``errors``) with thin asyncio adapters around it
(``connection``, ``supervisor``, ``service``, ``control``) and the local Live
API server in ``daemon.liveserver``. See README.md for the big picture.
"""

__version__ = "0.1.0"
