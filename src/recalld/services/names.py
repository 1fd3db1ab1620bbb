"""Random two-word agent names, for agents created without one."""

from __future__ import annotations

import secrets

_ADJECTIVES = (
    "amber",
    "brisk",
    "calm",
    "clever",
    "crimson",
    "curious",
    "daring",
    "eager",
    "gentle",
    "golden",
    "honest",
    "humble",
    "jolly",
    "keen",
    "lively",
    "lucid",
    "mellow",
    "nimble",
    "patient",
    "quiet",
    "radiant",
    "rapid",
    "serene",
    "steady",
    "sunny",
    "swift",
    "tidy",
    "vivid",
    "warm",
    "wise",
)
_NOUNS = (
    "badger",
    "beacon",
    "canyon",
    "cedar",
    "comet",
    "falcon",
    "fern",
    "harbor",
    "heron",
    "lantern",
    "maple",
    "meadow",
    "otter",
    "pebble",
    "pine",
    "quartz",
    "raven",
    "river",
    "sparrow",
    "summit",
    "thistle",
    "tiger",
    "tundra",
    "valley",
    "willow",
    "wren",
    "zephyr",
    "orchid",
    "glacier",
    "marten",
)


def random_agent_name() -> str:
    return f"{secrets.choice(_ADJECTIVES)}-{secrets.choice(_NOUNS)}"
