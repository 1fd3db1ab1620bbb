"""CPU time and resident memory of a local process tree, read from /proc (Linux).

CPU is user+sys of the process and of every live descendant, plus the times of children already reaped
(cutime/cstime), so a server that forks workers is measured whole. RSS is the sum over the live tree, sampled
on a background thread so each phase gets its peak.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
_TICKS_PER_S = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
USER_HZ = _TICKS_PER_S  # /proc/stat counts in the same ticks
_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


@dataclass
class _Stat:
    ppid: int
    cpu_ticks: int  # utime + stime + cutime + cstime
    rss_pages: int


def _read_stat(pid: int) -> _Stat | None:
    try:
        raw = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: the fields proper start after the last ')'.
    fields = raw[raw.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state): ppid is field 4, utime..cstime fields 14-17, rss field 24.
    return _Stat(
        ppid=int(fields[1]),
        cpu_ticks=int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14]),
        rss_pages=int(fields[21]),
    )


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            stat = _read_stat(int(entry.name))
            if stat is not None:
                children.setdefault(stat.ppid, []).append(int(entry.name))
    return children


def machine_cpu_ticks() -> tuple[int, int] | None:
    """(busy, total) jiffies of the whole machine since boot, from /proc/stat."""
    try:
        first = (PROC / "stat").read_text().splitlines()[0].split()
    except OSError:
        return None
    values = [int(v) for v in first[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    total = sum(values[:8])
    return total - idle, total


@dataclass
class Snapshot:
    cpu_s: float
    rss_bytes: int


class ProcessSampler:
    """Measures one process tree; `begin()`/`end()` bracket a phase and return its CPU seconds and peak RSS."""

    def __init__(self, pid: int, interval_s: float = 0.1):
        self.pid = pid
        self.interval_s = interval_s
        self._tree: list[int] = [pid]
        self._peak_rss = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def available(self) -> bool:
        return _read_stat(self.pid) is not None

    def _refresh_tree(self) -> None:
        children = _children_map()
        tree, queue = [], [self.pid]
        while queue:
            pid = queue.pop()
            tree.append(pid)
            queue.extend(children.get(pid, []))
        self._tree = tree

    def snapshot(self) -> Snapshot | None:
        """CPU seconds used so far and RSS now, over the tree (None once the process is gone)."""
        stats = [_read_stat(pid) for pid in self._tree]
        if stats[0] is None:
            return None
        live = [s for s in stats if s is not None]
        return Snapshot(
            cpu_s=sum(s.cpu_ticks for s in live) / _TICKS_PER_S,
            rss_bytes=sum(s.rss_pages for s in live) * _PAGE_BYTES,
        )

    def _run(self) -> None:
        rounds = 0
        while not self._stop.wait(self.interval_s):
            rounds += 1
            if rounds % 10 == 0:  # workers may come and go; rescanning /proc each sample would cost more
                self._refresh_tree()
            self._sample()

    def _sample(self) -> Snapshot | None:
        snap = self.snapshot()
        if snap is not None:
            with self._lock:
                self._peak_rss = max(self._peak_rss, snap.rss_bytes)
        return snap

    def start(self) -> ProcessSampler:
        self._refresh_tree()
        self._thread = threading.Thread(target=self._run, name="bench-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)

    def begin(self) -> Snapshot | None:
        """Start of a phase: resets the RSS peak and returns the CPU reading to subtract at the end."""
        self._refresh_tree()
        with self._lock:
            self._peak_rss = 0
        return self._sample()

    def end(self, began: Snapshot | None) -> dict[str, float | int] | None:
        """CPU seconds since `begin()`, the peak RSS seen since then and the RSS now."""
        self._refresh_tree()
        snap = self._sample()
        if began is None or snap is None:
            return None
        with self._lock:
            peak = self._peak_rss
        return {
            "cpu_s": round(snap.cpu_s - began.cpu_s, 3),
            "peak_rss_bytes": peak,
            "rss_end_bytes": snap.rss_bytes,
        }


class PostgresBackends:
    """CPU of the PostgreSQL backends serving one database, when that server runs on this machine.

    The backends are found in pg_stat_activity (through a connection of our own, which is left out) at the
    start and the end of each phase and read from /proc; a backend that appears during a phase counts whole.
    """

    def __init__(self, pg_uri: str):
        self.pg_uri = pg_uri
        self.note: str | None = None

    async def _backend_pids(self) -> list[int]:
        import asyncpg

        dsn = self.pg_uri.replace("postgresql+asyncpg://", "postgresql://")
        conn = await asyncpg.connect(dsn, timeout=10)
        try:
            rows = await conn.fetch(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        finally:
            await conn.close()
        return [r["pid"] for r in rows]

    async def snapshot(self) -> dict[int, int] | None:
        """CPU ticks so far of each backend of the database (None when they can't be read here)."""
        if self.note:
            return None
        try:
            pids = await self._backend_pids()
        except Exception as e:  # noqa: BLE001 - the figures are optional; the run goes on without them
            self.note = f"database CPU not measured: {type(e).__name__}: {e}"
            return None
        ticks = {}
        for pid in pids:
            stat = _read_stat(pid)
            if stat is not None:
                ticks[pid] = stat.cpu_ticks
        if pids and not ticks:
            self.note = "database CPU not measured: its backends are not readable in /proc (another machine?)"
            return None
        return ticks

    @staticmethod
    def cpu_s(began: dict[int, int] | None, ended: dict[int, int] | None) -> dict[str, float | int] | None:
        if began is None or ended is None:
            return None
        ticks = sum(t - began.get(pid, 0) for pid, t in ended.items())
        return {"cpu_s": round(ticks / _TICKS_PER_S, 3), "backends": len(ended)}
