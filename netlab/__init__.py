"""netlab: a threaded echo server, a selectors chat server, their clients and console."""

__version__ = "0.1.0"
