"""`recalld cluster`: N `recalld serve` instances on loopback ports behind a private nginx, for development and
tests. The balancer's configuration is deploy/nginx.conf with its upstream list and paths filled in.

    recalld cluster --instances 3 --pg-uri postgresql://postgres@127.0.0.1:5432/recalld [--redis-url …]

Migrations run once before the instances start; each instance is waited for on `/v1/ready/`; then the
balancer's URL is printed on stdout. SIGINT/SIGTERM go on to every process (SIGTERM to the instances, which
drain; SIGQUIT to nginx, which finishes its requests); a second signal kills them.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from recalld.secrets_box import key_file_path, load_or_create_key_file
from recalld.settings import Settings

# deploy/ sits beside src/ in the repository; `--nginx-template` names another copy.
TEMPLATE = Path(__file__).resolve().parents[2] / "deploy" / "nginx.conf"
READY_TIMEOUT_S = 120.0
DRAIN_TIMEOUT_S = 45.0  # uvicorn's graceful shutdown is 30 s; a little more for the lifespan's end
_FIELD = re.compile(r"\{\{(\w+)\}\}")


class ClusterError(Exception):
    """The cluster could not start; the message says why."""


def _say(message: str) -> None:
    print(f"recalld cluster: {message}", file=sys.stderr, flush=True)


# --- nginx --------------------------------------------------------------------------------------------------


def render_nginx_conf(
    template: str,
    *,
    listen: str,
    upstreams: list[str],
    run_dir: Path,
    max_body_bytes: int,
    access_log: str = "off",
) -> str:
    """Fill in deploy/nginx.conf's fields; every field must get a value."""
    values = {
        # As root, workers would switch to `nobody`, who cannot write the private run directory's temp files.
        "user_directive": "user root;" if os.geteuid() == 0 else "",
        "run_dir": str(run_dir),
        "error_log": str(run_dir / "error.log"),
        "access_log": access_log,
        "listen": listen,
        "upstream_servers": "\n".join(f"        server {u} max_fails=1 fail_timeout=5s;" for u in upstreams),
        "max_body_bytes": str(max_body_bytes),
    }
    missing = sorted({m for m in _FIELD.findall(template) if m not in values})
    if missing:
        raise ClusterError(f"the nginx template has fields recalld cannot fill: {', '.join(missing)}")
    return _FIELD.sub(lambda m: values[m.group(1)], template)


def find_nginx(explicit: str | None = None) -> str:
    """The nginx binary: the one given, else on PATH, else Debian's /usr/sbin/nginx."""
    for candidate in (explicit, shutil.which("nginx"), "/usr/sbin/nginx", "/usr/local/sbin/nginx"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise ClusterError("nginx not found; install it (Debian: apt-get install nginx) or pass --nginx PATH")


def exit_with_parent() -> None:
    """Runs in a child before exec: it gets SIGTERM when the process that started it dies, however it dies."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class Nginx:
    """A private nginx (in the foreground, with its own run directory) balancing over `upstreams`."""

    port: int
    upstreams: list[str]
    run_dir: Path
    max_body_bytes: int = 8 * 1024 * 1024
    host: str = "127.0.0.1"
    template: Path = TEMPLATE
    binary: str | None = None
    access_log: bool = True
    # Only for a starter that outlives the child's creation in the same thread (see exit_with_parent).
    die_with_parent: bool = False
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.run_dir / "nginx.conf"

    @property
    def error_log(self) -> Path:
        return self.run_dir / "error.log"

    def write_config(self) -> Path:
        if not self.template.is_file():
            raise ClusterError(f"nginx template {self.template} not found; pass --nginx-template PATH")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        access_log = f"{self.run_dir / 'access.log'} recalld buffer=32k flush=1s" if self.access_log else "off"
        text = render_nginx_conf(
            self.template.read_text(),
            listen=f"{self.host}:{self.port}",
            upstreams=self.upstreams,
            run_dir=self.run_dir,
            max_body_bytes=self.max_body_bytes,
            access_log=access_log,
        )
        self.config_path.write_text(text)
        return self.config_path

    def _command(self, *extra: str) -> list[str]:
        binary = find_nginx(self.binary)
        return [binary, "-p", str(self.run_dir), "-c", str(self.config_path), "-e", str(self.error_log), *extra]

    def start(self, timeout_s: float = 30.0) -> Nginx:
        """Write the configuration, check it with `nginx -t`, start nginx and wait until it accepts."""
        self.write_config()
        check = subprocess.run(self._command("-t", "-q"), capture_output=True, text=True)
        if check.returncode != 0:
            raise ClusterError(f"nginx rejects {self.config_path}:\n{check.stderr.strip()}")
        self.process = subprocess.Popen(
            self._command("-g", "daemon off;"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=exit_with_parent if self.die_with_parent else None,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ClusterError(f"nginx exited at start (status {self.process.returncode}):\n{self.log_tail()}")
            with contextlib.suppress(OSError), socket.create_connection((self.host, self.port), timeout=0.5):
                return self
            time.sleep(0.05)
        self.stop(graceful=False)
        raise ClusterError(f"nginx did not listen on {self.host}:{self.port} within {timeout_s:g} s")

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.error_log.read_text()[-chars:]
        except OSError:
            return "(no error log)"

    def stop(self, graceful: bool = True, timeout_s: float = 20.0) -> None:
        """SIGQUIT lets workers finish their requests; SIGTERM (or a timeout) ends them at once."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGQUIT if graceful else signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


# --- the instances ------------------------------------------------------------------------------------------


@dataclass
class Instance:
    port: int
    log_path: Path
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


@dataclass
class Cluster:
    """N instances and their balancer; `start()` returns once every instance is ready and nginx answers."""

    instances: int
    port: int
    base_port: int
    env: dict[str, str]
    run_dir: Path
    max_body_bytes: int
    nginx_binary: str | None = None
    template: Path = TEMPLATE
    stopping: threading.Event = field(default_factory=threading.Event)
    members: list[Instance] = field(default_factory=list)
    nginx: Nginx | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _recalld(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "recalld", *args]

    def start(self) -> None:
        ports = [self.base_port + i for i in range(self.instances)]
        taken = [p for p in (*ports, self.port) if not port_is_free(p)]
        if taken:
            raise ClusterError(f"port(s) {', '.join(map(str, taken))} already in use; choose --port / --base-port")
        find_nginx(self.nginx_binary)  # fail before starting anything
        self.run_dir.mkdir(parents=True, exist_ok=True)
        # Once here, so N instances don't queue on the migration lock at start-up (serve would cope anyway).
        migrate = subprocess.run(self._recalld("migrate"), env=self.env, capture_output=True, text=True)
        if migrate.returncode != 0:
            raise ClusterError(f"recalld migrate failed:\n{(migrate.stdout + migrate.stderr)[-4000:]}")
        # The first instance starts alone: on a fresh database, instances starting together race to create the
        # default organization (check-then-insert at start-up) and the loser exits. The rest start together.
        self._launch(ports[:1])
        self._wait_ready()
        self._launch(ports[1:])
        self._wait_ready()
        self.nginx = Nginx(
            port=self.port,
            upstreams=[f"127.0.0.1:{p}" for p in ports],
            run_dir=self.run_dir / "nginx",
            max_body_bytes=self.max_body_bytes,
            template=self.template,
            binary=self.nginx_binary,
            die_with_parent=True,
        ).start()
        _wait_http(f"{self.url}/v1/health/", 30.0, self.stopping)

    def _launch(self, ports: list[int]) -> None:
        for port in ports:
            member = Instance(port=port, log_path=self.run_dir / f"recalld-{port}.log")
            with open(member.log_path, "wb") as log:
                member.process = subprocess.Popen(
                    self._recalld("serve", "--host", "127.0.0.1", "--port", str(port)),
                    env=self.env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # Ctrl-C reaches only this process, which forwards it
                    preexec_fn=exit_with_parent,
                )
            self.members.append(member)

    def _wait_ready(self) -> None:
        pending = list(self.members)
        deadline = time.monotonic() + READY_TIMEOUT_S
        with httpx.Client(timeout=2.0) as http:
            while pending:
                if self.stopping.is_set():
                    raise ClusterError("stopped while starting")
                if time.monotonic() > deadline:
                    raise ClusterError(f"instance(s) on {[m.port for m in pending]} not ready in {READY_TIMEOUT_S:g} s")
                for member in list(pending):
                    if member.process.poll() is not None:
                        raise ClusterError(f"instance on {member.port} exited at start:\n{member.log_tail()}")
                    with contextlib.suppress(httpx.HTTPError):
                        if http.get(f"{member.url}/v1/ready/").status_code == 200:
                            pending.remove(member)
                time.sleep(0.1)

    def watch(self) -> int:
        """Until a signal: report instances that die; end (status 1) when nginx or every instance is gone."""
        reported: set[int] = set()
        while not self.stopping.wait(0.5):
            if self.nginx is not None and self.nginx.process.poll() is not None:
                _say(f"nginx exited (status {self.nginx.process.returncode}):\n{self.nginx.log_tail()}")
                return 1
            for member in self.members:
                if member.process.poll() is not None and member.port not in reported:
                    reported.add(member.port)
                    status = member.process.returncode
                    _say(f"instance on {member.port} exited (status {status}); see {member.log_path}")
            if len(reported) == len(self.members):
                _say("every instance has exited")
                return 1
        return 0

    def stop(self, timeout_s: float = DRAIN_TIMEOUT_S, force: threading.Event | None = None) -> None:
        """Instances drain (SIGTERM) while nginx finishes its requests (SIGQUIT); stragglers are killed."""
        procs = [m.process for m in self.members if m.process is not None and m.process.poll() is None]
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        if self.nginx is not None and self.nginx.process is not None and self.nginx.process.poll() is None:
            self.nginx.process.send_signal(signal.SIGQUIT)
            procs.append(self.nginx.process)
        deadline = time.monotonic() + timeout_s
        while any(p.poll() is None for p in procs):
            if time.monotonic() > deadline or (force is not None and force.is_set()):
                for proc in procs:
                    if proc.poll() is None:
                        proc.kill()
                break
            time.sleep(0.1)
        for proc in procs:
            proc.wait()


def _wait_http(url: str, timeout_s: float, stopping: threading.Event) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not stopping.is_set():
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        time.sleep(0.1)
    raise ClusterError(f"{url} did not answer 200 within {timeout_s:g} s")


# --- the command --------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--instances", type=int, default=3, help="recalld instances to start (default 3)")
    parser.add_argument("--port", type=int, default=8283, help="port nginx listens on (default 8283)")
    parser.add_argument(
        "--base-port", type=int, default=18300, help="the instances listen on BASE, BASE+1, … (default 18300)"
    )
    parser.add_argument("--pg-uri", default=None, help="PostgreSQL URI (default: RECALLD_PG_URI / LETTA_PG_URI)")
    parser.add_argument("--redis-url", default=None, help="Redis URL for leases (default: RECALLD_REDIS_URL)")
    parser.add_argument("--run-dir", default=None, help="logs and nginx files (default: a new temporary directory)")
    parser.add_argument("--nginx", default=None, help="nginx binary (default: on PATH, else /usr/sbin/nginx)")
    parser.add_argument("--nginx-template", default=None, help=f"nginx configuration template (default {TEMPLATE})")
    parser.add_argument(
        "--drain-timeout", type=float, default=DRAIN_TIMEOUT_S, help="seconds to wait for instances to stop"
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.instances < 1:
        _say("--instances must be at least 1")
        return 2
    pg_uri = args.pg_uri or settings.pg_uri
    if args.instances > 1 and not pg_uri:
        _say(
            f"refusing to start {args.instances} instances on SQLite: many processes on one SQLite file are not "
            "a cluster (one writer, no shared leases). Give PostgreSQL with --pg-uri or RECALLD_PG_URI, or use "
            "--instances 1."
        )
        return 2
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per readiness poll
    env = dict(os.environ)
    if args.pg_uri:
        env["RECALLD_PG_URI"] = args.pg_uri
    if args.redis_url:
        env["RECALLD_REDIS_URL"] = args.redis_url
    if pg_uri and not settings.secrets_key:
        # Every instance must encrypt secrets with the same key (secrets_box.py): the one in RECALLD_DIR, made once,
        # so that runs against the same database agree too.
        env["RECALLD_SECRETS_KEY"] = load_or_create_key_file(settings.data_dir)
        _say(f"RECALLD_SECRETS_KEY unset: every instance uses the key in {key_file_path(settings.data_dir)}")
    per_instance = settings.pg_pool_size + settings.pg_max_overflow
    if pg_uri and not settings.disable_pooling and args.instances * per_instance > 100:
        _say(
            f"note: {args.instances} instances may open {args.instances * per_instance} database connections "
            f"(pool {settings.pg_pool_size} + overflow {settings.pg_max_overflow} each); PostgreSQL allows 100 by "
            "default -- set RECALLD_PG_POOL_SIZE / RECALLD_PG_MAX_OVERFLOW lower, or put PgBouncer in front"
        )
    temporary = args.run_dir is None
    run_dir = Path(args.run_dir or tempfile.mkdtemp(prefix="recalld-cluster-")).resolve()
    cluster = Cluster(
        instances=args.instances,
        port=args.port,
        base_port=args.base_port,
        env=env,
        run_dir=run_dir,
        max_body_bytes=settings.max_body_bytes,
        nginx_binary=args.nginx,
        template=Path(args.nginx_template) if args.nginx_template else TEMPLATE,
    )
    force = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        if cluster.stopping.is_set():
            force.set()  # a second Ctrl-C: don't wait for the drain
        cluster.stopping.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    status = 1
    try:
        _say(f"starting {args.instances} instance(s) on ports {args.base_port}…; logs in {run_dir}")
        cluster.start()
        _say(f"ready: nginx on {cluster.url} → {', '.join(m.url for m in cluster.members)}")
        print(cluster.url, flush=True)
        status = cluster.watch()
    except ClusterError as e:
        if cluster.stopping.is_set():
            status = 0  # stopped by a signal while starting
        else:
            _say(f"error: {e}")
    finally:
        cluster.stop(args.drain_timeout, force)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if cluster.stopping.is_set() and status == 0:
        _say("stopped")
    if temporary and status == 0:
        shutil.rmtree(run_dir, ignore_errors=True)
    return status
