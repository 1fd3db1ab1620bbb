"""Real things for tests: a recalld server subprocess on a free port, fresh PostgreSQL databases."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from cryptography.fernet import Fernet

from recalld.bench.spawn import free_port as free_port  # the one copy; tests import it from here

# Instances sharing a PostgreSQL database must share the secrets key (secrets_box.py): one for the test run.
TEST_SECRETS_KEY = Fernet.generate_key().decode()
PG_ADMIN_URI = os.environ.get("RECALLD_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")


def _tool_python() -> str | None:
    """The interpreter custom tools run with in test servers. As root, the sandbox runs as an unprivileged uid,
    which cannot read an interpreter under /root (pyenv's): the system Python is used then."""
    chosen = os.environ.get("RECALLD_TEST_TOOL_PYTHON")
    if chosen:
        return chosen
    if os.geteuid() == 0 and sys.base_prefix.startswith("/root") and os.path.exists("/usr/bin/python3"):
        return "/usr/bin/python3"
    return None


TOOL_PYTHON = _tool_python()


def _psql(sql: str) -> None:
    subprocess.run(
        ["psql", PG_ADMIN_URI, "-v", "ON_ERROR_STOP=1", "-qc", sql], check=True, capture_output=True
    )


def create_pg_database() -> str:
    """A fresh database for one test session; returns its URI."""
    name = f"recalld_test_{uuid.uuid4().hex[:12]}"
    _psql(f'CREATE DATABASE "{name}"')
    return PG_ADMIN_URI.rsplit("/", 1)[0] + f"/{name}"


def drop_pg_database(uri: str) -> None:
    name = uri.rsplit("/", 1)[1]
    _psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class RecalldServer:
    """`recalld serve` in a subprocess; stop() ends it and keeps its log for failed tests."""

    env: dict[str, str]
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run another `recalld` command against the same database."""
        return subprocess.run(
            [sys.executable, "-m", "recalld", *args],
            env=self.env,
            capture_output=True,
            text=True,
            check=check,
            timeout=120,
        )

    def start(self, log_dir: Path) -> RecalldServer:
        return self.launch(log_dir).wait_healthy()

    def launch(self, log_dir: Path) -> RecalldServer:
        """Start the process without waiting (many servers can then start side by side)."""
        self.log_path = log_dir / f"recalld-{self.port}.log"
        log = open(self.log_path, "wb")  # noqa: SIM115 - kept open for the process's lifetime
        self.process = subprocess.Popen(
            [sys.executable, "-m", "recalld", "serve", "--port", str(self.port)],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        return self

    def wait_healthy(self, timeout_s: float = 60, path: str = "/v1/health/") -> RecalldServer:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"recalld exited at start:\n{self.log_path.read_text()[-4000:]}")
            try:
                if httpx.get(f"{self.url}{path}", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"recalld did not become healthy:\n{self.log_path.read_text()[-4000:]}")

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def kill(self) -> None:
        """kill -9: no drain, no lease release, no run bookkeeping -- a crashed instance."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path and self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def serving(env: dict[str, str], log_dir: Path) -> Iterator[RecalldServer]:
    """A started server for a fixture to `yield from`; stopped when the fixture ends."""
    server = RecalldServer(env=env).start(log_dir)
    try:
        yield server
    finally:
        server.stop()


def server_env(
    tmp_dir: Path, *, pg_uri: str | None, openai_base_url: str | None, **extra: str
) -> dict[str, str]:
    """A clean environment: nothing of the developer's own Letta/OpenAI settings leaks in."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("RECALLD_", "LETTA_", "OPENAI_", "ANTHROPIC_", "OLLAMA_", "VLLM_", "OTEL_"))
    }
    env["RECALLD_DIR"] = str(tmp_dir)
    env["RECALLD_LOG_LEVEL"] = "warning"
    env["PYTHONUNBUFFERED"] = "1"
    # Tests stop servers often: no readiness grace period unless a test asks for one.
    env["RECALLD_DRAIN_GRACE"] = "0"
    if pg_uri:
        env["RECALLD_PG_URI"] = pg_uri
        env["RECALLD_SECRETS_KEY"] = TEST_SECRETS_KEY
    if TOOL_PYTHON:
        env["RECALLD_TOOL_PYTHON"] = TOOL_PYTHON
    # Custom tools run in the real sandbox: a test server without a working one fails at start, not in a test.
    env["RECALLD_TOOL_SANDBOX"] = "bwrap"
    if openai_base_url:
        env["OPENAI_BASE_URL"] = openai_base_url
        env["OPENAI_API_KEY"] = "sk-test"
    env.update(extra)
    return env
