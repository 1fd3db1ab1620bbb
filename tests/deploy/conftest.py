"""A server started the way the image starts it: the Dockerfile's command, its environment and the Kubernetes
ConfigMap's settings, only the address, the data directory and the model endpoint changed for the test."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.deploy.artefacts import container, image_command, k8s, runtime_stage, without_init
from tests.servers import RecalldServer, server_env


def image_argv() -> list[str]:
    """The image's command (after tini) with `recalld` resolved to this virtualenv's console script."""
    argv = without_init(image_command())
    script = Path(sys.executable).parent / argv[0]
    return [str(script) if script.exists() else shutil.which(argv[0]) or argv[0], *argv[1:]]


def image_environment() -> dict[str, str]:
    """What a Kubernetes pod of the image gets: the Dockerfile's ENV, then the ConfigMap, then the pod's env."""
    env = {k: v for k, v in runtime_stage().env.items() if k != "PATH"}
    env.update(k8s("ConfigMap", "recalld-config")["data"])
    env.update({item["name"]: item["value"] for item in container(k8s("Deployment", "recalld")).get("env", [])})
    return env


@dataclass
class ImageServer(RecalldServer):
    """RecalldServer launched with the image's command and configured by environment only (no flags)."""

    argv: list[str] = field(default_factory=image_argv)

    def launch(self, log_dir: Path) -> ImageServer:
        self.log_path = log_dir / f"recalld-{self.port}.log"
        log = open(self.log_path, "wb")  # noqa: SIM115 - kept open for the process's lifetime
        self.process = subprocess.Popen(self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        return self


def image_server_env(tmp_dir: Path, openai_base_url: str, port: int, **extra: str) -> dict[str, str]:
    env = server_env(tmp_dir, pg_uri=None, openai_base_url=openai_base_url)
    env.update(image_environment())
    env.update(
        {
            # The test's own: loopback, a free port, a private SQLite directory, the scripted model.
            "RECALLD_LISTEN_HOST": "127.0.0.1",
            "RECALLD_LISTEN_PORT": str(port),
            "RECALLD_DIR": str(tmp_dir),
            "RECALLD_LOG_LEVEL": "warning",
            "OPENAI_BASE_URL": openai_base_url,
            "OPENAI_API_KEY": "sk-test",
            # Stops at once when the test ends (the drain test sets its own grace).
            "RECALLD_DRAIN_GRACE": "0",
        }
    )
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def image_server(tmp_path_factory, fake_openai):
    tmp_dir = tmp_path_factory.mktemp("recalld-image")
    server = ImageServer(env={})
    server.env = image_server_env(tmp_dir, fake_openai.base_url, server.port)
    server.start(tmp_dir)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def start_image_server(tmp_path, fake_openai):
    """Start more servers like `image_server`, with extra environment; stopped at the test's end."""
    started: list[ImageServer] = []

    def start(**extra: str) -> ImageServer:
        server = ImageServer(env={})
        server.env = image_server_env(tmp_path, fake_openai.base_url, server.port, **extra)
        started.append(server.start(tmp_path))
        return server

    yield start
    for server in started:
        server.kill()
