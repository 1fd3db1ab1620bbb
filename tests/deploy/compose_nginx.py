"""deploy/compose/nginx.conf is deploy/nginx.conf filled in for Compose; this module fills it in.

The balancer of the Compose stack and the one `recalld cluster` (and the cluster tests) run share one template,
so they cannot drift apart: tests/deploy/test_compose.py fails when the committed file differs from a fresh
rendering. After changing the template, regenerate it:

    .venv/bin/python -m tests.deploy.compose_nginx > deploy/compose/nginx.conf
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "deploy" / "nginx.conf"
RENDERED = REPO / "deploy" / "compose" / "nginx.conf"
_FIELD = re.compile(r"\{\{(\w+)\}\}")

# The service name and port of the recalld replicas in deploy/compose.yaml, and recalld's default body limit.
SERVICE = "recalld"
PORT = 8283
MAX_BODY_BYTES = 8 * 1024 * 1024

HEADER = """\
# GENERATED from deploy/nginx.conf by `python -m tests.deploy.compose_nginx` -- edit the template, then regenerate.
# The balancer of deploy/compose.yaml (nginx >= 1.27.3, for `resolve` in an upstream): Docker's DNS answers the
# service name with every replica, re-resolved every few seconds, so `docker compose up --scale recalld=N`
# needs no reload.
"""

VALUES = {
    # The image's master runs as root and its workers as the compiled-in user (nginx).
    "user_directive": "",
    "run_dir": "/var/cache/nginx",
    "error_log": "stderr",
    "access_log": "/dev/stdout recalld",
    "listen": str(PORT),
    "upstream_servers": "\n".join(
        (
            "        zone recalld 256k;",
            "        resolver 127.0.0.11 valid=5s ipv6=off;",
            f"        server {SERVICE}:{PORT} resolve max_fails=1 fail_timeout=5s;",
        )
    ),
    "max_body_bytes": str(MAX_BODY_BYTES),
}


def render(template: str | None = None) -> str:
    """The template with every field filled in; an unknown field is an error."""
    text = TEMPLATE.read_text() if template is None else template
    missing = sorted({m for m in _FIELD.findall(text) if m not in VALUES})
    if missing:
        raise ValueError(f"deploy/nginx.conf has fields the Compose rendering does not fill: {', '.join(missing)}")
    return HEADER + _FIELD.sub(lambda m: VALUES[m.group(1)], text)


if __name__ == "__main__":
    sys.stdout.write(render())
