"""daemon/runtime/ (module map: see README "How it works")."""
