"""One tool process: started with its payload on stdin, its stdout/stderr read incrementally into a bounded
buffer, its result read from a pipe of its own, killed (its whole process group, and with it the sandbox's PID
namespace) when it outlives its wall time."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from dataclasses import dataclass, field

_CHUNK = 65536
# After the process ends, how long its output pipes may stay open (something it left behind still holds them).
_DRAIN_GRACE_S = 1.0


@dataclass
class OutputBudget:
    """What stdout and stderr may hold together; what comes beyond it is counted and dropped."""

    remaining: int
    dropped: int = 0


@dataclass
class Captured:
    parts: list[bytes] = field(default_factory=list)

    def text(self) -> str:
        return b"".join(self.parts).decode("utf-8", "replace")


@dataclass
class ProcessOutcome:
    returncode: int | None
    result: bytes | None  # the runner's result frame; None when it wrote none
    result_over_limit: bool
    stdout: str
    stderr: str
    dropped_bytes: int
    timed_out: bool


async def _read_into(stream: asyncio.StreamReader, into: Captured, budget: OutputBudget) -> None:
    while chunk := await stream.read(_CHUNK):
        kept = chunk[: budget.remaining]
        if kept:
            into.parts.append(kept)
            budget.remaining -= len(kept)
        budget.dropped += len(chunk) - len(kept)


async def _read_result(fd: int, limit: int) -> tuple[bytes, bool]:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=_CHUNK)
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", buffering=0)
    )
    parts: list[bytes] = []
    size = 0
    try:
        while chunk := await reader.read(_CHUNK):
            size += len(chunk)
            if size > limit:
                return b"", True
            parts.append(chunk)
        return b"".join(parts), False
    finally:
        transport.close()


def _kill_group(process: asyncio.subprocess.Process) -> None:
    # The process leads its own session (start_new_session): its group holds everything it started that
    # did not move away; bwrap's --die-with-parent takes the sandbox's PID namespace down with it.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        process.kill()


async def run_process(
    argv: list[str],
    *,
    env: dict[str, str],
    payload: bytes,
    result_read_fd: int,
    result_write_fd: int,
    timeout_s: float,
    output_bytes: int,
    result_bytes: int,
    user: int | None = None,
) -> ProcessOutcome:
    """Run argv to its end or its wall time (as `user`, when given); never holds more than the output and
    result limits."""
    if user is not None:  # through setpriv: uvloop's subprocesses take no user/group arguments
        argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", "--", *argv]
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            pass_fds=(result_write_fd,),
            start_new_session=True,
            close_fds=True,
        )
    except BaseException:
        os.close(result_read_fd)
        raise
    finally:
        os.close(result_write_fd)
    budget = OutputBudget(output_bytes)
    out, err = Captured(), Captured()
    readers = [
        asyncio.ensure_future(_read_into(process.stdout, out, budget)),
        asyncio.ensure_future(_read_into(process.stderr, err, budget)),
    ]
    result_task = asyncio.ensure_future(_read_result(result_read_fd, result_bytes))
    timed_out = False
    try:
        try:
            async with asyncio.timeout(timeout_s):
                process.stdin.write(payload)
                with contextlib.suppress(ConnectionError):
                    await process.stdin.drain()
                process.stdin.close()
                await process.wait()
        except TimeoutError:
            timed_out = True
        finally:
            _kill_group(process)  # also on a normal exit: whatever it left in its group goes with it
            await asyncio.shield(process.wait())
        done, _ = await asyncio.wait([*readers, result_task], timeout=_DRAIN_GRACE_S)
    finally:  # a cancelled turn too: no reader outlives the call
        for task in (*readers, result_task):
            task.cancel()
        await asyncio.gather(*readers, result_task, return_exceptions=True)
    result, over = (None, False)
    if result_task in done and result_task.exception() is None:
        result, over = result_task.result()
    return ProcessOutcome(
        returncode=process.returncode,
        result=result or None,
        result_over_limit=over,
        stdout=out.text(),
        stderr=err.text(),
        dropped_bytes=budget.dropped,
        timed_out=timed_out,
    )
