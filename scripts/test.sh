#!/usr/bin/env bash
# Set everything up and run the whole test suite: installs recalld with its test dependencies,
# makes sure PostgreSQL and Redis are running (starting or installing them when needed), then pytest.
# Extra arguments go to pytest (e.g. scripts/test.sh -x tests/api/test_agents.py).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test
scripts/ensure_services.sh
exec .venv/bin/python -m pytest "$@"
