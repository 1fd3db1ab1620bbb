"""Running custom tools: the tool's source in a fresh Python subprocess, with a timeout, its output captured.

The subprocess gets the agent's secrets as environment variables and nothing of the server's own
environment (no provider keys, no database URI).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import dataclass
from typing import Any

_RUNNER = r"""
import contextlib, inspect, io, json, sys, traceback
payload = json.loads(sys.stdin.read())
out, err = io.StringIO(), io.StringIO()
result = {"ok": False, "result": None}
try:
    namespace = {"__name__": "__recalld_tool__"}
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        exec(compile(payload["source"], "<tool>", "exec"), namespace)
        fn = namespace[payload["name"]]
        args = dict(payload["args"])
        if "agent_state" in inspect.signature(fn).parameters:
            args.setdefault("agent_state", None)
        value = fn(**args)
        if inspect.isawaitable(value):
            import asyncio
            value = asyncio.run(value)
    try:
        json.dumps(value)
        result = {"ok": True, "result": value}
    except (TypeError, ValueError):
        result = {"ok": True, "result": str(value)}
except BaseException as e:
    err.write(f"Error executing function {payload['name']}: {type(e).__name__}: {e}\n")
    result = {"ok": False, "result": f"{type(e).__name__}: {e}"}
result["stdout"] = out.getvalue()
result["stderr"] = err.getvalue()
sys.__stdout__.write("\n@@RECALLD_RESULT@@" + json.dumps(result))
"""

_MARKER = "@@RECALLD_RESULT@@"


@dataclass
class SandboxResult:
    ok: bool
    result: Any
    stdout: str
    stderr: str


async def run_python_tool(
    source: str, name: str, args: dict[str, Any], *, env: dict[str, str] | None = None, timeout_s: float = 60.0
) -> SandboxResult:
    """Run function `name` of `source` with `args` in a subprocess."""
    child_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONIOENCODING": "utf-8", **(env or {})}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-I",
        "-c",
        _RUNNER,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=child_env,
    )
    payload = json.dumps({"source": source, "name": name, "args": args}).encode()
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(payload), timeout=timeout_s)
    except TimeoutError:
        process.kill()
        await process.wait()
        return SandboxResult(
            False,
            f"TimeoutError: the tool ran longer than {timeout_s:g} s",
            "",
            f"Error executing function {name}: TimeoutError: exceeded {timeout_s:g} s",
        )
    text = stdout.decode("utf-8", "replace")
    if _MARKER not in text:
        detail = stderr.decode("utf-8", "replace")[-2000:]
        return SandboxResult(
            False,
            f"the tool process exited with code {process.returncode}",
            "",
            f"Error executing function {name}: {detail}",
        )
    before, _, encoded = text.rpartition(_MARKER)
    outcome = json.loads(encoded)
    return SandboxResult(
        ok=bool(outcome["ok"]),
        result=outcome["result"],
        stdout=(before.rstrip("\n") + outcome.get("stdout", "")) or "",
        stderr=outcome.get("stderr", "") or "",
    )
