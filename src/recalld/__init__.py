"""recalld: a Letta-compatible server for stateful LLM agents."""

__version__ = "0.1.0"
# The Letta server version recalld is compatible with; clients compare it (contract R19).
LETTA_COMPAT_VERSION = "0.16.8"
