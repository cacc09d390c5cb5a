"""The asyncio Protocol implementation (:mod:`benchmarks.impl_asyncio`) on uvloop."""

from __future__ import annotations

import uvloop

from .impl_asyncio import main

if __name__ == "__main__":
    main("uvloop", uvloop.run)
