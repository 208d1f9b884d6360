"""The bus: several `chat serve` processes sharing one chat through Redis (docs/scale-out.md).

Not sans-IO: these modules talk to Redis, from the bus's own threads, never from the loop.
"""
