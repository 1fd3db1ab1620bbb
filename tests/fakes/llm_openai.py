"""The scripted OpenAI-compatible server, under the name the tests import it by.

The implementation lives in `recalld.testing.scripted_llm` (so `recalld bench --fake-llm` can run it from an
installed package); this module re-exports its public pieces. `python -m tests.fakes.llm_openai --port N
--latency-ms M` still prints the base URL and serves.
"""

from __future__ import annotations

import sys

from recalld.testing.scripted_llm import (
    CREATED,
    Script,
    ScriptedHandler,
    ScriptedOpenAI,
    ScriptedServer,
    cli_args,
    fake_embedding,
    json_pieces,
    main,
    parse_script,
    serve_forever,
    text_pieces,
    tokens,
)

__all__ = [
    "CREATED",
    "Script",
    "ScriptedHandler",
    "ScriptedOpenAI",
    "ScriptedServer",
    "cli_args",
    "fake_embedding",
    "json_pieces",
    "main",
    "parse_script",
    "serve_forever",
    "text_pieces",
    "tokens",
]

if __name__ == "__main__":
    main(sys.argv[1:])
