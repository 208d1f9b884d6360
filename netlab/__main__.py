"""`python -m netlab` is the same as the `netlab` command, down to the name in its usage lines."""

from netlab.cli import main

main(prog_name="netlab")
