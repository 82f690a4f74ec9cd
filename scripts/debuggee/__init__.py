"""hvlab Day 0: verify a debuggee VM (scripts/check-debuggee) against the one
settings table (scripts/debuggee-settings.json) that setup-debuggee.ps1 applies."""
