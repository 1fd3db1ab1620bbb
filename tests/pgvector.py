"""A PostgreSQL with the pgvector extension for tests: the one the `pgserver` package ships (PostgreSQL 16 with
pgvector 0.6), started in a fresh directory under /tmp and reached over its Unix socket.

The machine's own PostgreSQL has no pgvector; this one exists only for the tests that need the extension.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class PgVectorServer:
    def __init__(self) -> None:
        # As root pgserver runs PostgreSQL as its own system user and opens up the path to the data
        # directory: keep that directory under /tmp.
        self.root = Path(tempfile.mkdtemp(prefix="recalld-pgvector-", dir="/tmp"))
        self.root.chmod(0o755)
        with warnings.catch_warnings():
            # platformdirs warns that XDG_RUNTIME_DIR is unset (pgserver keeps a lock file there) and falls back.
            warnings.simplefilter("ignore")
            import pgserver

            self._server = pgserver.get_server(self.root / "data", cleanup_mode="delete")

    def uri(self, database: str = "postgres") -> str:
        return self._server.get_uri(database=database)

    def psql(self, sql: str) -> str:
        return self._server.psql(sql)

    def create_database(self) -> str:
        name = f"recalld_test_{uuid.uuid4().hex[:12]}"
        self.psql(f'CREATE DATABASE "{name}";')
        return self.uri(name)

    def drop_database(self, uri: str) -> None:
        name = uri.partition("?")[0].rsplit("/", 1)[1]
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE);')

    def stop(self) -> None:
        try:
            self._server.cleanup()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


_shared: PgVectorServer | None = None
_users = 0
_lock = threading.Lock()


@contextmanager
def shared_pgvector() -> Iterator[PgVectorServer]:
    """One PgVectorServer for the whole test session, however many modules' fixtures ask for it: started by
    the first, stopped when the last lets go."""
    global _shared, _users
    with _lock:
        if _shared is None:
            _shared = PgVectorServer()
        _users += 1
        server = _shared
    try:
        yield server
    finally:
        with _lock:
            _users -= 1
            if _users == 0:
                _shared = None
                server.stop()
