"""`python -m netlab` is the same as the `netlab` command."""

from netlab.cli import main

main()
