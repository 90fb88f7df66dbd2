"""daemon/app/ (module map: see README "How it works")."""
