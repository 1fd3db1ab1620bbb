"""Fixtures shared by every test: the scripted LLM servers."""

from __future__ import annotations

import pytest

from tests.fakes.llm_openai import ScriptedOpenAI


@pytest.fixture(scope="session")
def fake_openai():
    with ScriptedOpenAI(models=("gpt-4o-mini", "gpt-4o", "text-embedding-3-small")) as server:
        yield server
