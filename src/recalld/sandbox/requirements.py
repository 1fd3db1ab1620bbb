"""A tool's `pip_requirements`: installed once per set of requirements into a cache directory the sandbox mounts
read-only, from the package index the operator configures (RECALLD_TOOL_PIP_INDEX_URL).

pip runs outside the sandbox (it needs the index), so it installs wheels only (`--only-binary :all:`): no
package's code runs at install time. Each install has a wall time; an unreachable index fails in seconds
(`--retries 0`, a short socket timeout) and the call gets a tool error saying so.

The cache is bounded: by total size (RECALLD_TOOL_PIP_CACHE_MB; after an install the least recently used whole
sets are removed until it fits) and by sets per organization (RECALLD_TOOL_PIP_SETS_PER_ORG; a new set first
takes the place of the organization's own least recently used one). A set in use is never removed: not while
this instance runs a tool with it, nor within a grace period after its last use (another instance sharing the
directory may be running it). Each set records its size, its last use (the marker's mtime) and its owners.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,98}[A-Za-z0-9])?")
_VERSION = re.compile(r"[A-Za-z0-9.*+!]{1,64}")
_DONE = ".recalld-complete"  # its mtime: the set's last use
_SIZE = ".recalld-size"
_OWNERS = ".recalld-owners"  # one empty file per owning organization (a digest of its id)
_MIB = 1024 * 1024
MAX_REQUIREMENTS = 32
# pip processes at once per instance: installs are rare (once per set) but each is a heavy process.
CONCURRENT_INSTALLS = 2


class RequirementsError(Exception):
    """The requirements could not be installed; the message is for the model and the operator."""


def requirement_strings(items: list[dict]) -> list[str]:
    """Letta's PipRequirement objects ({name, version}) as pip requirement strings; ValueError names what is wrong."""
    if len(items) > MAX_REQUIREMENTS:
        raise ValueError(f"at most {MAX_REQUIREMENTS} requirements")
    out = []
    for item in items:
        name, version = item.get("name"), item.get("version")
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ValueError(f"'{str(name)[:100]}' is not a package name")
        if version is not None and (not isinstance(version, str) or not _VERSION.fullmatch(version)):
            raise ValueError(f"'{str(version)[:100]}' is not a version of {name}")
        unknown = set(item) - {"name", "version"}
        if unknown:
            raise ValueError(f"unknown field(s) {sorted(unknown)} in a requirement")
        out.append(f"{name}=={version}" if version else name)
    return sorted(set(out))


def _tree_bytes(root: Path) -> int:
    total = 0
    for directory, _, files in os.walk(root):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(directory, name)).st_size
    return total


def _touch(path: Path) -> None:
    # An explicit time: the kernel's own file timestamps are coarse (jiffies), two uses in a row would tie.
    now = time.time_ns()
    os.utime(path, ns=(now, now))


def _owner_name(org_id: str) -> str:
    return hashlib.sha256(org_id.encode()).hexdigest()[:24]


@dataclass
class _CachedSet:
    path: Path
    size: int
    last_used: float
    owners: set[str]


class RequirementsCache:
    def __init__(
        self,
        root: Path,
        *,
        index_url: str | None,
        python_version: str,
        timeout_s: float,
        max_bytes: int = 2048 * _MIB,
        sets_per_org: int = 8,
        in_use_grace_s: float = 300.0,
    ):
        self.root = root
        self.index_url = index_url
        self.python_version = python_version
        self.timeout_s = timeout_s
        self.max_bytes = max_bytes
        self.sets_per_org = sets_per_org
        self.in_use_grace_s = in_use_grace_s
        self._locks: dict[str, asyncio.Lock] = {}
        self._installs = asyncio.Semaphore(CONCURRENT_INSTALLS)
        self._in_use: Counter[str] = Counter()  # set -> tool calls of this instance holding it
        self._bookkeeping = asyncio.Lock()  # one eviction pass at a time

    def directory_for(self, requirements: list[str]) -> Path:
        # The index is part of the key: the same names from another index may be other packages.
        key = hashlib.sha256("\n".join([self.index_url or "", *requirements]).encode()).hexdigest()[:32]
        return self.root / key

    @contextlib.asynccontextmanager
    async def use(self, org_id: str, requirements: list[str]) -> AsyncIterator[Path]:
        """The directory holding `requirements` installed (installed the first time), not removed while held."""
        if not self.index_url:
            raise RequirementsError("this server installs no packages for tools (RECALLD_TOOL_PIP_INDEX_URL is unset)")
        target = self.directory_for(requirements)
        self._in_use[target.name] += 1
        try:
            await self._ensure(org_id, requirements, target)
            yield target
        finally:
            self._in_use[target.name] -= 1
            if self._in_use[target.name] <= 0:
                del self._in_use[target.name]

    async def _ensure(self, org_id: str, requirements: list[str], target: Path) -> None:
        owner = _owner_name(org_id)
        if (target / _DONE).exists() and (target / _OWNERS / owner).exists():
            _touch(target / _DONE)
            return
        async with self._bookkeeping:
            await asyncio.to_thread(self._make_room_for_org, owner, target.name)
        lock = self._locks.setdefault(target.name, asyncio.Lock())
        async with lock:
            if not (target / _DONE).exists():
                async with self._installs:
                    await self._install(requirements, target)
                async with self._bookkeeping:
                    await asyncio.to_thread(self._make_room, target.name)
        self._locks.pop(target.name, None)
        (target / _OWNERS).mkdir(exist_ok=True)
        (target / _OWNERS / owner).touch()
        _touch(target / _DONE)

    # --- bounds -----------------------------------------------------------------------------------------

    def _sets(self) -> dict[str, _CachedSet]:
        found: dict[str, _CachedSet] = {}
        if not self.root.is_dir():
            return found
        for path in self.root.iterdir():
            if path.name.startswith("."):
                self._sweep_leftover(path)
                continue
            try:
                last_used = (path / _DONE).stat().st_mtime
                size = int((path / _SIZE).read_text())
            except (OSError, ValueError):
                continue  # not a finished set (or one being removed)
            owners = {p.name for p in (path / _OWNERS).iterdir()} if (path / _OWNERS).is_dir() else set()
            found[path.name] = _CachedSet(path, size, last_used, owners)
        return found

    def _sweep_leftover(self, path: Path) -> None:
        """Staging directories of installs that died with their process, and removals cut short."""
        if not path.name.startswith((".installing-", ".removing-")):
            return
        with contextlib.suppress(OSError):
            if time.time() - path.stat().st_mtime > 2 * self.timeout_s:
                shutil.rmtree(path, ignore_errors=True)

    def _removable(self, key: str, cached: _CachedSet) -> bool:
        return key not in self._in_use and time.time() - cached.last_used > self.in_use_grace_s

    def _remove(self, cached: _CachedSet) -> None:
        # Renamed first, so no tool starts with a half-removed set.
        gone = self.root / f".removing-{cached.path.name}-{os.getpid()}-{time.monotonic_ns()}"
        try:
            cached.path.rename(gone)
        except OSError:
            return
        shutil.rmtree(gone, ignore_errors=True)

    def _make_room_for_org(self, owner: str, key: str) -> None:
        """Before `owner` takes a new set: drop its least recently used ones until it has room."""
        sets = self._sets()
        if key in sets and owner in sets[key].owners:
            return
        owned = sorted(((k, c) for k, c in sets.items() if owner in c.owners), key=lambda kc: kc[1].last_used)
        excess = len(owned) - (self.sets_per_org - 1)
        for k, cached in owned:
            if excess <= 0:
                return
            if not self._removable(k, cached):
                continue
            with contextlib.suppress(FileNotFoundError):
                (cached.path / _OWNERS / owner).unlink()
            if not cached.owners - {owner}:
                self._remove(cached)
            excess -= 1
        if excess > 0:
            raise RequirementsError(
                f"this organization already uses {len(owned)} sets of pip_requirements, the most this server keeps "
                f"per organization is {self.sets_per_org}; retry once one of them has not been used for a while"
            )

    def _make_room(self, new_key: str) -> None:
        """After an install: remove the least recently used sets not in use until the cache fits its size."""
        sets = self._sets()
        total = sum(c.size for c in sets.values())
        fresh = sets.get(new_key)
        if fresh is not None and fresh.size > self.max_bytes:
            self._remove(fresh)
            raise RequirementsError(
                f"the requirements take {fresh.size / _MIB:.1f} MB, more than this server's cache for tool "
                f"packages holds ({self.max_bytes / _MIB:.1f} MB)"
            )
        for key, cached in sorted(sets.items(), key=lambda kc: kc[1].last_used):
            if total <= self.max_bytes:
                return
            if key != new_key and self._removable(key, cached):
                self._remove(cached)
                total -= cached.size
        if total > self.max_bytes and fresh is not None:
            if self._in_use.get(new_key, 0) <= 1:
                self._remove(fresh)
            raise RequirementsError(
                "the server's cache for tool packages is full with sets in use; retry in a few minutes"
            )

    async def _install(self, requirements: list[str], target: Path) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".installing-", dir=self.root))
        staging.chmod(0o755)  # mkdtemp's 0700 would keep out the sandbox's uid when the server runs as root
        argv = [
            sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--no-input", "--quiet",
            "--no-cache-dir", "--target", str(staging), "--only-binary", ":all:",
            "--python-version", self.python_version, "--index-url", self.index_url,
            "--timeout", "5", "--retries", "0", "--", *requirements,
        ]  # fmt: skip
        # Nothing of the server's environment: pip needs a PATH and a HOME, not the provider keys.
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(staging), "PIP_CONFIG_FILE": os.devnull}
        try:
            process = await asyncio.create_subprocess_exec(
                *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, env=env
            )
            try:
                async with asyncio.timeout(self.timeout_s):
                    _, err = await process.communicate()
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
                raise RequirementsError(
                    f"installing {requirements} took longer than {self.timeout_s:g} s and was stopped"
                ) from None
            if process.returncode != 0:
                lines = [line for line in err.decode("utf-8", "replace").splitlines() if line.strip()]
                reason = (lines[-1] if lines else f"pip exited with code {process.returncode}")[:300]
                raise RequirementsError(f"could not install {requirements} from the configured index: {reason}")
            (staging / _SIZE).write_text(str(_tree_bytes(staging)))
            (staging / _DONE).write_text("\n".join(requirements) + "\n")
            try:
                staging.rename(target)
            except OSError:  # another instance sharing the directory finished first
                if not (target / _DONE).exists():
                    raise
            staging = None
        finally:
            if staging is not None:
                shutil.rmtree(staging, ignore_errors=True)
