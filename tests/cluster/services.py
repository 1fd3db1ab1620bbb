"""Private services for the cluster tests, each on a free port and stopped by the test that started it: a
PgBouncer in transaction mode in front of the machine's PostgreSQL, and a Redis a test may stop mid-run. The
shared PostgreSQL and Redis on the default ports are never stopped (other test runs use them)."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from recalld.cluster import exit_with_parent
from tests.servers import PG_ADMIN_URI, free_port


def find_binary(name: str) -> str:
    for candidate in (shutil.which(name), f"/usr/sbin/{name}", f"/usr/bin/{name}"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise RuntimeError(f"{name} is not installed; scripts/ensure_services.sh installs it")


def private_dir(prefix: str, owner: str | None = None) -> Path:
    """A directory other users can reach (pytest's tmp dirs are 0700 under root's, which a service that drops
    to another user cannot enter)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    if owner is not None:
        entry = pwd.getpwnam(owner)
        os.chown(path, entry.pw_uid, entry.pw_gid)
    return path


def wait_for_port(port: int, process: subprocess.Popen, what: str, log: Path, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited at start:\n{_tail(log)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on {port} in {timeout_s:g} s:\n{_tail(log)}")


def _tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"


def _stop(process: subprocess.Popen | None, sig: int = signal.SIGTERM, timeout_s: float = 10.0) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class PgBouncer:
    """PgBouncer 1.18 (Debian) in transaction mode: every client transaction may land on another server
    connection, and prepared statements don't survive between them."""

    def __init__(self, pool_size: int = 4, max_client_conn: int = 400):
        self.port = free_port()
        self.pool_size = pool_size
        self.max_client_conn = max_client_conn
        # PgBouncer refuses to run as root; it drops to the postgres user (which the package's own service uses).
        self.user = "postgres" if os.geteuid() == 0 else None
        self.dir: Path | None = None
        self.process: subprocess.Popen | None = None

    def uri(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def uri_for(self, direct_uri: str) -> str:
        """The same database as a direct URI, reached through this PgBouncer."""
        return self.uri(direct_uri.rsplit("/", 1)[1])

    @property
    def log_path(self) -> Path:
        assert self.dir is not None
        return self.dir / "pgbouncer.log"

    def start(self) -> PgBouncer:
        target = PG_ADMIN_URI.split("@", 1)[1].split("/", 1)[0]  # host:port of the machine's PostgreSQL
        host, _, port = target.partition(":")
        self.dir = private_dir("recalld-pgbouncer-", self.user)
        (self.dir / "userlist.txt").write_text('"postgres" ""\n')
        (self.dir / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"* = host={host} port={port or 5432}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            "auth_type = trust\n"
            f"auth_file = {self.dir / 'userlist.txt'}\n"
            "pool_mode = transaction\n"
            f"default_pool_size = {self.pool_size}\n"
            "min_pool_size = 0\n"
            "reserve_pool_size = 0\n"
            f"max_client_conn = {self.max_client_conn}\n"
            "server_reset_query =\n"
            "ignore_startup_parameters = extra_float_digits,options,jit\n"
            f"logfile = {self.log_path}\n"
            f"pidfile = {self.dir / 'pgbouncer.pid'}\n"
            "log_connections = 0\n"
            "log_disconnections = 0\n"
        )
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            for path in self.dir.iterdir():
                os.chown(path, entry.pw_uid, entry.pw_gid)
        command = [find_binary("pgbouncer"), *(["-u", self.user] if self.user else []), str(self.dir / "pgbouncer.ini")]
        # (No exit_with_parent here: the parent-death signal is cleared when PgBouncer drops to its user.)
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, self.process, "pgbouncer", self.log_path)
        return self

    def stop(self) -> None:
        # SIGINT is PgBouncer's "safe shutdown"; SIGTERM closes at once, which is what a test teardown wants.
        _stop(self.process, signal.SIGTERM)
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)


class PrivateRedis:
    """A throw-away redis-server (no persistence) that a test may stop or kill mid-run."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir: Path | None = None
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> PrivateRedis:
        self.dir = private_dir("recalld-redis-")
        log = self.dir / "redis.log"
        self.process = subprocess.Popen(
            [
                find_binary("redis-server"),
                "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", str(self.dir), "--logfile", str(log), "--daemonize", "no",
            ],  # fmt: skip
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=exit_with_parent,  # not left behind by a killed test run
        )
        wait_for_port(self.port, self.process, "redis-server", log)
        return self

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """Gone at once, as a crashed Redis would be."""
        _stop(self.process, signal.SIGKILL)

    def stop(self) -> None:
        _stop(self.process, signal.SIGTERM)
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
