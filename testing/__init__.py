"""testing/ (module map: see README "How it works")."""
