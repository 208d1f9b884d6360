"""The chat and echo clients.

The chat client is a sans-IO session (session.py, timeline.py) that decides
everything, a network driver (network.py) that owns the socket, the threads and
the clock around it, and two front ends, a prompt (terminal.py) and a pipe
(pipe.py), that show what it says and hand it the user's lines (lines.py) and
passwords (login.py). echo.py is the echo client.
"""
