"""A tool's `pip_requirements`: installed once per set of requirements into a cache directory the sandbox mounts
read-only, from the package index the operator configures (RECALLD_TOOL_PIP_INDEX_URL).

pip runs outside the sandbox (it needs the index), so it installs wheels only (`--only-binary :all:`): no
package's code runs at install time. Each install has a wall time; an unreachable index fails in seconds
(`--retries 0`, a short socket timeout) and the call gets a tool error saying so.
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
from pathlib import Path

_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,98}[A-Za-z0-9])?")
_VERSION = re.compile(r"[A-Za-z0-9.*+!]{1,64}")
_DONE = ".recalld-complete"
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


class RequirementsCache:
    def __init__(self, root: Path, *, index_url: str | None, python_version: str, timeout_s: float):
        self.root = root
        self.index_url = index_url
        self.python_version = python_version
        self.timeout_s = timeout_s
        self._locks: dict[str, asyncio.Lock] = {}
        self._installs = asyncio.Semaphore(CONCURRENT_INSTALLS)

    def directory_for(self, requirements: list[str]) -> Path:
        # The index is part of the key: the same names from another index may be other packages.
        key = hashlib.sha256("\n".join([self.index_url or "", *requirements]).encode()).hexdigest()[:32]
        return self.root / key

    async def ensure(self, requirements: list[str]) -> Path:
        """The directory holding `requirements` installed; installs them the first time."""
        if not self.index_url:
            raise RequirementsError("this server installs no packages for tools (RECALLD_TOOL_PIP_INDEX_URL is unset)")
        target = self.directory_for(requirements)
        if (target / _DONE).exists():
            return target
        lock = self._locks.setdefault(target.name, asyncio.Lock())
        async with lock:
            if not (target / _DONE).exists():
                async with self._installs:
                    await self._install(requirements, target)
        self._locks.pop(target.name, None)
        return target

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
