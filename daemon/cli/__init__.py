"""daemon/cli/ (module map: see README "How it works")."""
