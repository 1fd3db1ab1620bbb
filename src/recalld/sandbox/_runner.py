"""What runs inside the sandbox (as `python -I -S -c <this file's text>`; it imports nothing of recalld).

It reads {source, name, args, result_fd, limits, paths} as JSON from stdin, sets the limits, and forks: the child
closes the result pipe and runs the tool (its prints go straight to the sandbox's stdout/stderr), then hands
its return value to the parent over a private pipe; the parent, which the child can neither ptrace nor open
fds of (it is not dumpable), writes the one result frame on the result pipe. So nothing the tool prints or
writes can forge the result of the call: at worst it ends its own process and the call has no result.

With `proxy_socket` (a tool given network) the parent also runs a forwarder thread: 127.0.0.1:<port> inside the
sandbox's network namespace to the server's proxy on that unix socket; the tool's HTTP(S)_PROXY name the port.
"""

import json
import os
import resource
import sys


def _set_limits(limits):
    for name, value in limits.items():
        resource.setrlimit(getattr(resource, name), (value, value))


def _not_dumpable():
    import ctypes

    pr_set_dumpable = 4
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_dumpable, 0, 0, 0, 0)


def _takes_agent_state(fn):
    code = getattr(fn, "__code__", None)
    if code is None:
        return False
    return "agent_state" in code.co_varnames[: code.co_argcount + code.co_kwonlyargcount]


def _run_tool(payload, write_fd):
    # Imports stay lazy: each one costs every tool call its start-up time.
    name = payload["name"]
    try:
        namespace = {"__name__": "__recalld_tool__"}
        exec(compile(payload["source"], "<tool>", "exec"), namespace)
        fn = namespace[name]
        args = dict(payload["args"])
        if _takes_agent_state(fn):
            args.setdefault("agent_state", None)
        value = fn(**args)
        if hasattr(value, "__await__"):
            import asyncio

            value = asyncio.run(value)
        try:
            encoded = json.dumps({"ok": True, "result": value})
        except (TypeError, ValueError):
            encoded = json.dumps({"ok": True, "result": str(value)})
    except BaseException as e:  # noqa: BLE001 - every failure of the tool is its error result
        import traceback

        traceback.print_exc()
        sys.stderr.write(f"Error executing function {name}: {type(e).__name__}: {e}\n")
        encoded = json.dumps({"ok": False, "result": f"{type(e).__name__}: {e}"})
    sys.stdout.flush()
    sys.stderr.flush()
    view = memoryview(encoded.encode("utf-8", "replace"))
    while view:
        view = view[os.write(write_fd, view) :]


def _start_forwarder(socket_path):
    """Listen on 127.0.0.1 and forward each connection to the unix socket, in one thread; returns the port."""
    import selectors
    import socket
    import threading

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    listener.setblocking(False)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    peers, ended = {}, set()

    def close(sock):
        for s in (sock, peers.get(sock)):
            if s is None or s not in peers:
                continue
            del peers[s]
            if s in ended:
                ended.discard(s)
            else:
                selector.unregister(s)
            s.close()

    def serve():
        while True:
            for key, _ in selector.select():
                sock = key.fileobj
                if sock is listener:
                    try:
                        client, _ = listener.accept()
                    except OSError:
                        continue
                    upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    try:
                        upstream.connect(socket_path)
                    except OSError:
                        client.close()
                        upstream.close()
                        continue
                    peers[client], peers[upstream] = upstream, client
                    for s in (client, upstream):
                        selector.register(s, selectors.EVENT_READ)
                    continue
                other = peers.get(sock)
                if other is None:
                    continue
                try:
                    data = sock.recv(65536)
                    if data:
                        other.sendall(data)  # blocking: the peer's pace sets ours
                        continue
                except OSError:
                    close(sock)
                    continue
                # End of this direction: pass it on; once both directions ended, both sockets go.
                selector.unregister(sock)
                ended.add(sock)
                try:
                    other.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                if other in ended:
                    close(sock)

    threading.Thread(target=serve, daemon=True).start()
    return listener, listener.getsockname()[1]


def main():
    payload = json.loads(sys.stdin.buffer.read())
    result_fd = payload["result_fd"]
    sys.path[:0] = payload["paths"]
    _set_limits(payload["limits"])
    _not_dumpable()
    listener = None
    if payload.get("proxy_socket"):
        listener, port = _start_forwarder(payload["proxy_socket"])
        proxy = f"http://127.0.0.1:{port}"
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
            os.environ[name] = proxy
        for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
            os.environ.pop(name, None)
    read_fd, write_fd = os.pipe()
    child = os.fork()
    if child == 0:
        if listener is not None:
            listener.close()
        os.close(result_fd)
        os.close(read_fd)
        os.setpgid(0, 0)
        code = 0
        try:
            _run_tool(payload, write_fd)
        except BaseException:  # noqa: BLE001 - nothing may skip the _exit below (no parent cleanup in the child)
            code = 1
        finally:
            os._exit(code)
    os.close(write_fd)
    limit = payload["result_bytes"]
    chunks, size = [], 0
    while size <= limit:
        chunk = os.read(read_fd, 65536)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if size > limit:
        os.kill(child, 9)  # it would block writing the rest
    os.waitpid(child, 0)
    if size > limit:
        frame = {"ok": False, "result": f"the tool's return value is over the limit of {limit} bytes"}
        data = json.dumps(frame).encode()
    elif not chunks:
        data = json.dumps({"ok": False, "result": "the tool process ended without returning a result"}).encode()
    else:
        data = b"".join(chunks)
    view = memoryview(data)
    while view:
        view = view[os.write(result_fd, view) :]
    os.close(result_fd)


main()
