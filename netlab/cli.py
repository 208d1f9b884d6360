"""The `netlab` command line (../shared/CLI.md is the contract)."""

import click


@click.group()
def main() -> None:
    """netlab: echo and chat servers, their clients and load generators."""
