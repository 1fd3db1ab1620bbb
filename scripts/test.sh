#!/usr/bin/env bash
# Set everything up and run the whole test suite: installs recalld with its test dependencies,
# makes sure PostgreSQL and Redis are running (starting or installing them when needed), checks the layer
# contracts (lint-imports, [tool.importlinter] in pyproject.toml) and ruff, then pytest.
# Extra arguments go to pytest (e.g. scripts/test.sh -x tests/api/test_agents.py).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test
scripts/ensure_services.sh
.venv/bin/lint-imports --no-cache --no-logo
.venv/bin/ruff check src tests bench
exec .venv/bin/python -m pytest "$@"
