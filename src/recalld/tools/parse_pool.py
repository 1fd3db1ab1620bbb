"""Deriving the schema of a large tool source in a worker process. `ast.parse` holds the GIL for its whole run
(about 1.3 ms per KiB here, 0.33 s at the 256 KiB cap), so a thread would still stall every other request;
a process does not. Small sources are parsed inline: a worker's round trip costs more than they do."""

from __future__ import annotations

import asyncio
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from recalld.errors import InvalidInput
from recalld.tools.schema import derive_json_schema

INLINE_MAX_CHARS = 16 * 1024
_pool: ProcessPoolExecutor | None = None


def _worker_pool() -> ProcessPoolExecutor:
    global _pool
    if _pool is None:
        # spawn: a fresh interpreter, not a fork of a server with threads and open connections.
        _pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
    return _pool


async def derive_schema(source: str) -> dict:
    """The JSON schema of a tool's source (tools/schema.py), without blocking the event loop for long."""
    global _pool
    if len(source) <= INLINE_MAX_CHARS:
        return derive_json_schema(source)
    try:
        return await asyncio.get_running_loop().run_in_executor(_worker_pool(), derive_json_schema, source)
    except BrokenProcessPool as e:
        _pool = None  # the next source gets a new worker
        raise InvalidInput("Failed to derive json schema: the source could not be parsed") from e
