"""Progress of the running phase: a rich progress bar on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO


class PlainProgress:
    """A line every few seconds and one when the phase ends: readable in CI logs and pipes."""

    def __init__(self, stream: TextIO = sys.stderr, every_s: float = 2.0, quiet: bool = False):
        self.stream = stream
        self.every_s = every_s
        self.quiet = quiet
        self._name = ""
        self._total = 0
        self._done = 0
        self._errors = 0
        self._began = 0.0
        self._last = 0.0

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def note(self, text: str) -> None:
        if not self.quiet:
            print(text, file=self.stream, flush=True)

    def start_phase(self, name: str, total: int) -> None:
        self._name, self._total, self._done, self._errors = name, total, 0, 0
        self._began = self._last = time.monotonic()

    def advance(self, ok: bool) -> None:
        self._done += 1
        self._errors += 0 if ok else 1
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self._last = now
            self._line(now)

    def end_phase(self) -> None:
        self._line(time.monotonic(), final=True)

    def _line(self, now: float, final: bool = False) -> None:
        elapsed = max(now - self._began, 1e-9)
        rate = self._done / elapsed
        mark = "done" if final else "…"
        self.note(
            f"{self._name}: {self._done}/{self._total} ops, {rate:.1f} ops/s, "
            f"{self._errors} errors, {elapsed:.1f} s {mark}"
        )


class RichProgress(PlainProgress):
    """A live bar per phase (rich), drawn on stderr."""

    def __init__(self, stream: TextIO = sys.stderr):
        super().__init__(stream)
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._console = Console(file=stream)
        self._progress = Progress(
            TextColumn("{task.description:<22}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]:>8.1f} ops/s"),
            TextColumn("{task.fields[errors]} err"),
            TimeElapsedColumn(),
            console=self._console,
        )
        self._task: Any = None

    def __enter__(self) -> RichProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def note(self, text: str) -> None:
        self._progress.console.print(text, markup=False, highlight=False)

    def start_phase(self, name: str, total: int) -> None:
        super().start_phase(name, total)
        self._task = self._progress.add_task(name, total=total, rate=0.0, errors=0)

    def advance(self, ok: bool) -> None:
        self._done += 1
        self._errors += 0 if ok else 1
        rate = self._done / max(time.monotonic() - self._began, 1e-9)
        self._progress.update(self._task, advance=1, rate=rate, errors=self._errors)

    def end_phase(self) -> None:
        # A phase cut short by --duration ends below its total: show where it stopped.
        self._progress.update(self._task, total=self._done)


def make_progress(quiet: bool) -> PlainProgress:
    """A rich bar when stderr is a terminal and rich is installed (the `bench` extra); plain lines otherwise."""
    if quiet:
        return PlainProgress(quiet=True)
    if sys.stderr.isatty():
        try:
            return RichProgress()
        except ImportError:
            pass
    return PlainProgress()
