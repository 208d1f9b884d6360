"""The chat's rules, sans-IO, as they move out of `netlab/chat_core.py` one job at a time."""
