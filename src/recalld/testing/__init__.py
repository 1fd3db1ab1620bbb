"""Test doubles that ship with recalld: a scripted OpenAI-compatible LLM server (used by tests and `recalld bench`)."""
