"""Custom tools in a sandbox (R23): bubblewrap namespaces, resource limits, bounded output, concurrency slots."""

from recalld.sandbox.executor import SandboxResult, ToolRunLimits, ToolSandbox

__all__ = ["SandboxResult", "ToolRunLimits", "ToolSandbox"]
