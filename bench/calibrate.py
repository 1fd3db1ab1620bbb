"""A fixed CPU workload timed beside each benchmark run, so that figures from different hours (or machines) can
be compared: a shared VM's speed changes by 1.5x or more between hours, and a per-message CPU figure moves
with it. The workload is plain Python of the kind the server runs per message (JSON, dicts, strings, regex);
its CPU time, not its wall time, is reported, so waiting for a core doesn't count but a slower core does."""

from __future__ import annotations

import json
import re
import statistics
import time

_WORD = re.compile(r"\w+")
_MESSAGE = {
    "id": "message-00000000-0000-4000-8000-000000000000",
    "role": "assistant",
    "content": [{"type": "text", "text": "The quick brown fox jumps over the lazy dog. " * 8}],
    "tool_calls": [{"id": "call_1", "function": {"name": "send_message", "arguments": '{"message": "hi"}'}}],
    "seq": 12345,
}


def _workload(rounds: int) -> int:
    total = 0
    for i in range(rounds):
        encoded = json.dumps(_MESSAGE)
        decoded = json.loads(encoded)
        words = _WORD.findall(decoded["content"][0]["text"])
        index = {word: n for n, word in enumerate(words)}
        total += len(index) + len(f"{decoded['id']}:{i}:{decoded['seq']}")
    return total


def calibration_ms(rounds: int = 4000, repeats: int = 5) -> float:
    """Median CPU milliseconds of the fixed workload (80 ms on this 2-core VM in a quiet hour of 2026-11-24)."""
    samples = []
    for _ in range(repeats):
        start = time.process_time()
        _workload(rounds)
        samples.append((time.process_time() - start) * 1000)
    return round(statistics.median(samples), 1)


def chunk_ms(pause_s: float, chunks: int = 400, rounds: int = 10) -> float:
    """CPU milliseconds of a small piece of the workload (about 0.3 ms) when the process pauses for pause_s
    between pieces, as a server does between requests at a low rate."""
    start = time.process_time()
    for _ in range(chunks):
        _workload(rounds)
        if pause_s:
            time.sleep(pause_s)
    return (time.process_time() - start) * 1000 / chunks


if __name__ == "__main__":
    import sys

    print(f"calibration: {calibration_ms()} ms CPU")
    if "--pauses" in sys.argv:  # the same work costs more CPU when the process sleeps between pieces of it
        for pause_ms in (0, 1, 10, 30):
            print(f"pause {pause_ms:>2} ms between pieces: {chunk_ms(pause_ms / 1000):.3f} ms CPU per piece")
