"""daemon/cli/demo/ (module map: see README "How it works")."""
