"""What a tool sees of the filesystem: the bwrap command line of the sandbox.

Read-only: /usr (the system libraries the interpreter links against), the interpreter's prefix, and the operator's
tool packages directory. Hidden under empty tmpfs: every site-packages of that interpreter and anything of the
server (its virtualenv, recalld's code, RECALLD_DIR) that happens to lie below a mounted tree. Writable: an empty,
size-capped /tmp. Own /proc (of its PID namespace) and a minimal /dev. Nothing else exists in it.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import recalld

PACKAGES_MOUNT = "/opt/recalld-tool-packages"
REQUIREMENTS_MOUNT = "/opt/recalld-tool-requirements"
PROXY_SOCKET_MOUNT = "/run/recalld-proxy.sock"  # a tool with network: the server's proxy (sandbox/network.py)
SANDBOX_UID = 65534  # the tool's uid and gid inside its user namespace
_ETC_FILES = ("/etc/ld.so.cache", "/etc/localtime")


@dataclass(frozen=True)
class Interpreter:
    """The Python a tool runs with: its executable, its prefix and version (asked of it once, at start)."""

    executable: str
    prefix: str
    version: str  # "3.11"


def _under(path: Path, roots: list[Path]) -> bool:
    return any(path == root or root in path.parents for root in roots)


def _hidden_dirs(interpreter: Interpreter, roots: list[Path], data_dir: Path) -> list[Path]:
    """Directories below a mounted tree that a tool must not see."""
    version = interpreter.version
    candidates = [
        Path(interpreter.prefix, "lib", f"python{version}", "site-packages"),
        Path(interpreter.prefix, "local", "lib", f"python{version}", "dist-packages"),
        Path(interpreter.prefix, "lib", "python3", "dist-packages"),
        Path("/usr/lib/python3/dist-packages"),
        Path(f"/usr/local/lib/python{version}/dist-packages"),
        Path(f"/usr/local/lib/python{version}/site-packages"),
        Path(sys.prefix),  # the server's virtualenv (the base prefix itself when it has none)
        Path(recalld.__file__).resolve().parent.parent,  # where recalld's own code is installed
        data_dir,
    ]
    hidden: list[Path] = []
    for path in candidates:
        path = path.resolve() if path.exists() else path
        if path.is_dir() and _under(path, roots) and path not in roots and path not in hidden:
            hidden.append(path)
    return hidden


def bwrap_command(
    bwrap: str,
    interpreter: Interpreter,
    *,
    packages_dir: Path | None,
    requirements_dir: Path | None = None,
    proxy_socket: Path | None = None,
    data_dir: Path,
    tmp_bytes: int,
    runner_source: str,
) -> list[str]:
    """The argv that starts the runner in a fresh sandbox."""
    argv = [
        bwrap,
        "--unshare-all",
        "--unshare-user",
        "--disable-userns",
        "--die-with-parent",
        "--new-session",
        "--uid", str(SANDBOX_UID),
        "--gid", str(SANDBOX_UID),
        "--hostname", "sandbox",
        "--ro-bind", "/usr", "/usr",
    ]
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        host = Path("/", name)
        if host.is_symlink():
            argv += ["--symlink", os.readlink(host), str(host)]
        elif host.is_dir():
            argv += ["--ro-bind", str(host), str(host)]
    for name in _ETC_FILES:
        argv += ["--ro-bind-try", name, name]
    roots = [Path("/usr")]
    prefix = Path(interpreter.prefix)
    if not _under(prefix, roots):
        argv += ["--ro-bind", str(prefix), str(prefix)]
        roots.append(prefix)
    for hidden in _hidden_dirs(interpreter, roots, data_dir):
        argv += ["--tmpfs", str(hidden)]
    if packages_dir is not None:
        argv += ["--ro-bind", str(packages_dir), PACKAGES_MOUNT]
    if requirements_dir is not None:
        argv += ["--ro-bind", str(requirements_dir), REQUIREMENTS_MOUNT]
    if proxy_socket is not None:  # the network namespace stays empty: this socket is the only way out
        argv += ["--ro-bind", str(proxy_socket), PROXY_SOCKET_MOUNT]
    argv += [
        "--size", str(tmp_bytes), "--tmpfs", "/tmp",
        "--proc", "/proc",
        "--dev", "/dev",
        "--chdir", "/tmp",
        interpreter.executable, "-I", "-S", "-X", "utf8", "-c", runner_source,
    ]  # fmt: skip
    return argv
