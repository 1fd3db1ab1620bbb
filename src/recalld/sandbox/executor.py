"""Running custom tools (R23): in a bubblewrap sandbox, or, where the operator chose it, unisolated; otherwise
not at all. The mode is settled once at start (`start`), by running a probe tool in the sandbox."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recalld.errors import InvalidInput
from recalld.llm.outbound import OutboundPolicy
from recalld.obs import metrics, tracing
from recalld.sandbox.mounts import (
    PACKAGES_MOUNT,
    PROXY_SOCKET_MOUNT,
    REQUIREMENTS_MOUNT,
    Interpreter,
    bwrap_command,
)
from recalld.sandbox.network import ToolProxy
from recalld.sandbox.process import ProcessOutcome, run_process
from recalld.sandbox.requirements import RequirementsCache, RequirementsError
from recalld.sandbox.slots import SlotsBusy, ToolSlots
from recalld.settings import Settings

log = logging.getLogger(__name__)

RUNNER_SOURCE = (Path(__file__).with_name("_runner.py")).read_text()
_BASIC_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp", "LANG": "C.UTF-8"}
_PROBE_SOURCE = "def probe() -> int:\n    return 42\n"
_MIB = 1024 * 1024


@dataclass(frozen=True)
class ToolRunLimits:
    """One call's wall time, memory and process count: the settings, or the organization's overrides (R23)."""

    timeout_s: float
    memory_mb: int
    max_procs: int

    @classmethod
    def defaults(cls, settings: Settings) -> ToolRunLimits:
        return cls(settings.tool_timeout_s, settings.tool_memory_mb, settings.tool_max_procs)


@dataclass
class SandboxResult:
    ok: bool
    result: Any
    stdout: str
    stderr: str


def _marker(dropped: int, limit: int) -> str:
    return f"\n[output truncated: {dropped} bytes over the tool output limit of {limit} bytes]"


def _ask_interpreter(executable: str) -> Interpreter:
    """The prefix and version of the interpreter tools run with."""
    answer = subprocess.run(
        [executable, "-I", "-S", "-c", "import sys; print(sys.base_prefix); print('%d.%d' % sys.version_info[:2])"],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": _BASIC_ENV["PATH"]},
        check=True,
    )
    prefix, version = answer.stdout.split()
    return Interpreter(executable=executable, prefix=prefix, version=version)


def _default_interpreter() -> str:
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    return str(Path(sys.base_prefix, "bin", f"python{version}"))


class ToolSandbox:
    def __init__(self, settings: Settings, policy: OutboundPolicy | None = None):
        self.settings = settings
        # A tool given network reaches this policy's allowed endpoints through the proxy; without one, none.
        self.proxy = (
            ToolProxy(
                policy,
                max_bytes=settings.tool_net_mb * _MIB,
                timeout_s=settings.tool_timeout_s,
                connections=settings.tool_net_connections,
            )
            if policy is not None
            else None
        )
        self._proxy_socket: Path | None = None
        self.mode: str | None = None  # "bwrap" or "unsafe-subprocess" once started; None: custom tools refused
        self.refusal: str | None = "the tool sandbox has not started yet"
        self.slots = ToolSlots(
            total=settings.tool_concurrency,
            per_org=settings.tool_concurrency_per_org,
            queue_max=settings.tool_queue_max,
        )
        self._interpreter: Interpreter | None = None
        self.requirements: RequirementsCache | None = None
        # bwrap cannot make RLIMIT_NPROC hold for root's processes: as root, the sandbox runs as another uid.
        self._run_as = settings.tool_sandbox_uid if os.geteuid() == 0 else None

    # --- start-up -------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Settle the mode: probe bwrap unless the operator chose the unsafe subprocess; raise if bwrap is
        demanded and does not work."""
        wanted = self.settings.tool_sandbox
        if wanted == "unsafe-subprocess":
            self.mode, self.refusal = "unsafe-subprocess", None
            self._cache_requirements(f"{sys.version_info[0]}.{sys.version_info[1]}")
            log.warning(
                "RECALLD_TOOL_SANDBOX=unsafe-subprocess: custom tools run WITHOUT isolation, with access to this "
                "machine's files and network. Only for single-tenant development; never with untrusted tenants."
            )
            return
        problem = await self._probe()
        if problem is None:
            self.mode, self.refusal = "bwrap", None
            if self.proxy is not None:
                self._proxy_socket = await self.proxy.start()
            assert self._interpreter is not None
            self._cache_requirements(self._interpreter.version)
            log.info("custom tools run in a bubblewrap sandbox (%s)", self.settings.tool_bwrap_path)
            return
        self.mode = None
        self.refusal = (
            f"Custom tools are disabled on this server: no sandbox is available to isolate them ({problem}). "
            "The operator can install bubblewrap and allow unprivileged user namespaces (see docs/DEPLOY.md), "
            "or set RECALLD_TOOL_SANDBOX=unsafe-subprocess on a single-tenant development server."
        )
        if wanted == "bwrap":
            raise RuntimeError(f"RECALLD_TOOL_SANDBOX=bwrap, but the sandbox does not work here: {problem}")
        log.warning("custom tools are refused: the bubblewrap sandbox does not work here: %s", problem)

    def _cache_requirements(self, python_version: str) -> None:
        s = self.settings
        self.requirements = RequirementsCache(
            s.tool_pip_cache_dir or s.data_dir / "tool-requirements",
            index_url=s.tool_pip_index_url,
            python_version=python_version,
            timeout_s=s.tool_pip_timeout_s,
            max_bytes=s.tool_pip_cache_mb * _MIB,
            sets_per_org=s.tool_pip_sets_per_org,
            # A set stays while a call may still run with it: waiting for a slot, then running (on any instance),
            # for as long as any organization's wall time allows.
            in_use_grace_s=2 * max(s.tool_timeout_s, s.tool_timeout_max_s) + 30,
        )

    async def _probe(self) -> str | None:
        """Why the sandbox cannot run a tool here, or None when it can."""
        executable = str(self.settings.tool_python or _default_interpreter())
        try:
            self._interpreter = await asyncio.to_thread(_ask_interpreter, executable)
        except (OSError, subprocess.SubprocessError, ValueError) as e:
            return f"the tool interpreter {executable} does not run: {type(e).__name__}"
        if shutil.which(self.settings.tool_bwrap_path) is None:
            return f"bwrap is not installed (no executable {self.settings.tool_bwrap_path!r})"
        packages = self.settings.tool_packages_dir
        if packages is not None and not packages.is_dir():
            return f"RECALLD_TOOL_PACKAGES_DIR {packages} is not a directory"
        try:
            result = await self._run_bwrap(_PROBE_SOURCE, "probe", {}, dict(_BASIC_ENV), timeout_s=30)
        except OSError as e:
            return f"{self.settings.tool_bwrap_path} cannot be started: {e.strerror or type(e).__name__}"
        except Exception as e:  # noqa: BLE001 - whatever fails here, the answer is "no sandbox", with the reason
            return f"the sandbox cannot be started: {type(e).__name__}: {e}"
        if result.ok and result.result == 42:
            return None
        lines = result.stderr.strip().splitlines()
        reason = next((line for line in lines if line.startswith("bwrap:")), str(result.result))[:300]
        if self._run_as is not None:
            reason += (
                f"; as root, the sandbox runs as uid {self._run_as}, which must be able to read the interpreter "
                f"{executable} (RECALLD_TOOL_PYTHON names another)"
            )
        return f"bwrap fails: {reason}"

    async def stop(self) -> None:
        if self.proxy is not None:
            await self.proxy.stop()

    # --- use ------------------------------------------------------------------------------------------

    def require_available(self) -> None:
        """Refuse storing a custom tool's source when no tool could run (a 400 saying why)."""
        if self.refusal is not None:
            raise InvalidInput(self.refusal)

    async def run(
        self,
        org_id: str,
        source: str,
        name: str,
        args: dict[str, Any],
        env: dict[str, str],
        requirements: list[str] | None = None,
        *,
        network: bool = False,
        limits: ToolRunLimits | None = None,
    ) -> SandboxResult:
        """Run function `name` of `source` with `args` (its `requirements` installed); every failure is an error
        result for the model. With `network` (the organization's switch) the tool reaches the allowed endpoints
        through the proxy; without, it has no network at all. (Unisolated tools have the host's network.)
        `limits` are the organization's (default: the settings')."""
        limits = limits or ToolRunLimits.defaults(self.settings)
        if self.refusal is not None:
            metrics.TOOL_REFUSED.labels("no_sandbox").inc()
            return _failure(name, self.refusal)
        started = time.perf_counter()
        with tracing.span("tool", {"gen_ai.tool.name": name, "recalld.sandbox": self.mode}) as span:
            try:
                async with contextlib.AsyncExitStack() as held:
                    installed = None
                    if requirements and self.requirements:
                        installed = await held.enter_async_context(self.requirements.use(org_id, requirements))
                    async with self.slots.hold(org_id, limits.timeout_s):
                        span.add_event("slot")
                        full_env = {**_BASIC_ENV, **env}
                        if self.mode == "bwrap":
                            result = await self._run_bwrap(
                                source, name, args, full_env, installed=installed, network=network, limits=limits
                            )
                        else:
                            result = await self._run_unsafe(source, name, args, full_env, installed, limits)
            except SlotsBusy as e:
                metrics.TOOL_REFUSED.labels("busy").inc()
                return _failure(name, str(e))
            except RequirementsError as e:
                metrics.TOOL_REFUSED.labels("requirements").inc()
                return _failure(name, str(e))
            span.set_attribute("recalld.tool.ok", result.ok)
        metrics.TOOL_DURATION.labels(self.mode).observe(time.perf_counter() - started)
        return result

    async def _run_bwrap(
        self,
        source: str,
        name: str,
        args: dict,
        env: dict[str, str],
        timeout_s: float | None = None,
        installed: Path | None = None,
        network: bool = False,
        limits: ToolRunLimits | None = None,
    ) -> SandboxResult:
        s = self.settings
        run_limits = limits or ToolRunLimits.defaults(s)
        timeout_s = timeout_s or run_limits.timeout_s
        assert self._interpreter is not None
        proxy_socket = self._proxy_socket if network else None
        if network and proxy_socket is None:
            return _failure(name, "this server gives tools no network (it has no outbound policy for them)")
        argv = bwrap_command(
            s.tool_bwrap_path,
            self._interpreter,
            packages_dir=s.tool_packages_dir,
            requirements_dir=installed,
            proxy_socket=proxy_socket,
            data_dir=s.data_dir,
            tmp_bytes=s.tool_file_mb * _MIB,
            runner_source=RUNNER_SOURCE,
        )
        rlimits = {
            "RLIMIT_AS": run_limits.memory_mb * _MIB,
            "RLIMIT_NPROC": run_limits.max_procs,
            "RLIMIT_FSIZE": s.tool_file_mb * _MIB,
            "RLIMIT_NOFILE": s.tool_open_files,
            "RLIMIT_CORE": 0,
        }
        paths = [REQUIREMENTS_MOUNT] if installed is not None else []
        paths += [PACKAGES_MOUNT] if s.tool_packages_dir is not None else []
        proxy = PROXY_SOCKET_MOUNT if proxy_socket is not None else None
        return await self._execute(argv, source, name, args, env, rlimits, paths, timeout_s, self._run_as, proxy)

    async def _run_unsafe(
        self,
        source: str,
        name: str,
        args: dict,
        env: dict[str, str],
        installed: Path | None = None,
        limits: ToolRunLimits | None = None,
    ) -> SandboxResult:
        # The old behaviour: the server's interpreter, its packages, this machine's files and network.
        s = self.settings
        run_limits = limits or ToolRunLimits.defaults(s)
        argv = [sys.executable, "-I", "-X", "utf8", "-c", RUNNER_SOURCE]
        rlimits = {"RLIMIT_AS": run_limits.memory_mb * _MIB, "RLIMIT_FSIZE": s.tool_file_mb * _MIB, "RLIMIT_CORE": 0}
        paths = [str(installed)] if installed is not None else []
        return await self._execute(argv, source, name, args, env, rlimits, paths, run_limits.timeout_s, None)

    async def _execute(
        self,
        argv: list[str],
        source: str,
        name: str,
        args: dict,
        env: dict[str, str],
        limits: dict[str, int],
        paths: list[str],
        timeout_s: float | None,
        user: int | None,
        proxy_socket: str | None = None,
    ) -> SandboxResult:
        s = self.settings
        timeout_s = timeout_s or s.tool_timeout_s
        read_fd, write_fd = os.pipe()
        payload = {
            "source": source,
            "name": name,
            "args": args,
            "result_fd": write_fd,
            "result_bytes": s.tool_output_bytes,
            "limits": limits,
            "paths": paths,
            "proxy_socket": proxy_socket,
        }
        outcome = await run_process(
            argv,
            env=env,
            payload=json.dumps(payload).encode(),
            result_read_fd=read_fd,
            result_write_fd=write_fd,
            timeout_s=timeout_s,
            output_bytes=s.tool_output_bytes,
            result_bytes=s.tool_output_bytes + 1024,
            user=user,
        )
        return _result_of(outcome, name, timeout_s, s.tool_output_bytes)


def _failure(name: str, message: str, stdout: str = "", stderr: str = "") -> SandboxResult:
    return SandboxResult(False, message, stdout, stderr + f"Error executing function {name}: {message}\n")


def _result_of(outcome: ProcessOutcome, name: str, timeout_s: float, output_bytes: int) -> SandboxResult:
    stdout, stderr = outcome.stdout, outcome.stderr
    if outcome.dropped_bytes:
        metrics.TOOL_OUTPUT_TRUNCATED.inc()
        marker = _marker(outcome.dropped_bytes, output_bytes)
        if stderr and not stdout:
            stderr += marker
        else:
            stdout += marker
    if outcome.timed_out:
        metrics.TOOL_TIMEOUTS.inc()
        return _failure(name, f"TimeoutError: the tool ran longer than {timeout_s:g} s and was stopped", stdout, stderr)
    frame = None
    if outcome.result is not None and not outcome.result_over_limit:
        try:
            frame = json.loads(outcome.result)
        except ValueError:
            frame = None
    if outcome.result_over_limit:
        return _failure(name, f"the tool's return value is over the limit of {output_bytes} bytes", stdout, stderr)
    if not isinstance(frame, dict) or "ok" not in frame:
        metrics.TOOL_KILLED.inc()
        code = outcome.returncode
        how = f"was killed by signal {-code}" if code is not None and code < 0 else f"exited with code {code}"
        return _failure(name, f"the tool process {how} without returning a result", stdout, stderr)
    return SandboxResult(bool(frame["ok"]), frame.get("result"), stdout, stderr)
