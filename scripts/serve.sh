#!/usr/bin/env bash
# Set everything up and start recalld on the embedded default (one SQLite file under ~/.recalld,
# or RECALLD_DIR). Extra arguments go to `recalld serve` (e.g. --port 8284).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/recalld serve "$@"
