"""Processes the bench starts itself: the scripted LLM and a `recalld serve` on a free port."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from recalld.secrets_box import load_or_create_key_file
from recalld.settings import Settings

# Settings of the developer's shell that would point a spawned server elsewhere than the bench intends.
_SERVER_ENV_DROPPED = ("RECALLD_DIR", "RECALLD_PG_URI", "LETTA_PG_URI")
_PROVIDER_ENV = ("OPENAI_", "ANTHROPIC_", "OLLAMA_BASE_URL", "VLLM_API_BASE")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(process: subprocess.Popen | None, timeout_s: float = 20) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class ScriptedLLMProcess:
    """`python -m recalld.testing.scripted_llm` in a subprocess, so its CPU is not the bench client's."""

    def __init__(self, latency_ms: float = 0.0, port: int = 0):
        self.latency_ms = latency_ms
        self.port = port
        self.process: subprocess.Popen | None = None
        self.base_url = ""

    def start(self) -> ScriptedLLMProcess:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "recalld.testing.scripted_llm",
                "--port",
                str(self.port),
                "--latency-ms",
                str(self.latency_ms),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()  # the server prints its base URL once it listens
        if not line.startswith("http"):
            _stop(self.process)
            raise RuntimeError(f"the scripted LLM did not start (printed {line!r})")
        self.base_url = line
        return self

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def stop(self) -> None:
        _stop(self.process, 5)


class RecalldProcess:
    """`recalld serve` on a free loopback port with its own data directory; stop() ends it."""

    def __init__(
        self,
        log_path: Path,
        *,
        pg_uri: str | None = None,
        openai_base_url: str | None = None,
        extra_env: dict[str, str] | None = None,
    ):
        self.log_path = log_path
        self.pg_uri = pg_uri
        self.openai_base_url = openai_base_url
        self.extra_env = extra_env or {}
        self.port = free_port()
        self.data_dir: Path | None = None
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in _SERVER_ENV_DROPPED}
        if self.openai_base_url:
            # Only the scripted LLM: a real key in the shell must not make the bench spend money.
            env = {k: v for k, v in env.items() if not k.startswith(_PROVIDER_ENV)}
            env["OPENAI_BASE_URL"] = self.openai_base_url
            env["OPENAI_API_KEY"] = "sk-bench"
        assert self.data_dir is not None
        env["RECALLD_DIR"] = str(self.data_dir)
        env.setdefault("RECALLD_LOG_LEVEL", "warning")
        # Nothing is in flight when the bench stops its server: no need for the balancer's grace period.
        env.setdefault("RECALLD_DRAIN_GRACE", "0")
        env["PYTHONUNBUFFERED"] = "1"
        if self.pg_uri:
            env["RECALLD_PG_URI"] = self.pg_uri
        env.update(self.extra_env)
        if env.get("RECALLD_PG_URI") and not env.get("RECALLD_SECRETS_KEY"):
            # PostgreSQL needs the key every run against this database shares: the developer's own.
            env["RECALLD_SECRETS_KEY"] = load_or_create_key_file(Settings().data_dir)
        return env

    def start(self, timeout_s: float = 90) -> RecalldProcess:
        self.data_dir = Path(tempfile.mkdtemp(prefix="recalld-bench-"))
        log = open(self.log_path, "wb")  # noqa: SIM115 - the child writes to it for its whole life
        self.process = subprocess.Popen(
            [sys.executable, "-m", "recalld", "serve", "--host", "127.0.0.1", "--port", str(self.port)],
            env=self.environment(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"recalld exited at start:\n{self.log_path.read_text()[-4000:]}")
            try:
                if httpx.get(f"{self.url}/v1/health/", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"recalld did not become healthy in {timeout_s:.0f} s:\n{self.log_path.read_text()[-4000:]}")

    def stop(self) -> None:
        _stop(self.process)
        if self.data_dir is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)
