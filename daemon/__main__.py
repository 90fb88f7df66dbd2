"""``python -m daemon`` is the same as the ``voiced`` console script."""

from daemon.cli import main

raise SystemExit(main())
