"""Progress bars for work that takes a while, drawn only where a person is watching.

Library code reports progress through an optional callback, ``progress(done, total, label)``:
``done`` units of ``total`` (None when the total is unknown) are finished and ``label`` names what
runs now. Only the command line decides to show a bar: ``ProgressBar`` is such a callback that
draws on stderr when stderr is a terminal, and only once the work has run for ``delay`` seconds,
so short work prints nothing and piped or machine-read output stays clean.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import TextIO

#: ``progress(done, total, label)``: what library layers call as their work advances.
Progress = Callable[[int, "int | None", str], None]

#: Erases from the cursor to the end of the line (ANSI EL), so a shorter redraw leaves no tail.
_ERASE = "\x1b[K"
#: Seconds of work before a bar appears (short work prints nothing), and at least between redraws.
DELAY, INTERVAL = 1.0, 0.1


class ProgressBar:
    """A one-line bar redrawn in place on a terminal stream; a no-op on anything else.

    Nothing is drawn during the first ``delay`` seconds, and redraws come at most every
    ``interval`` seconds (each costs a write to the terminal); ``DELAY`` and ``INTERVAL`` by
    default. ``close`` erases the line, so the output that follows (a summary, or the one-line
    error) starts on a clean line.
    """

    def __init__(self, title: str, stream: TextIO | None = None, enabled: bool = True, delay: float | None = None,
                 interval: float | None = None, clock: Callable[[], float] = time.monotonic):
        self.title = title
        self.stream = sys.stderr if stream is None else stream
        self.shown = enabled and _is_terminal(self.stream)
        self.delay = DELAY if delay is None else delay
        self.interval = INTERVAL if interval is None else interval
        self.clock = clock
        self.started = clock()
        self.drawn_at: float | None = None

    def __call__(self, done: int, total: int | None, label: str = "") -> None:
        if not self.shown:
            return
        now = self.clock()
        if now - self.started < self.delay or (self.drawn_at is not None and now - self.drawn_at < self.interval):
            return
        self.drawn_at = now
        line = self.line(done, total, label, now - self.started)
        self.stream.write("\r" + line[: _columns(self.stream) - 1] + _ERASE)
        self.stream.flush()

    def line(self, done: int, total: int | None, label: str, elapsed: float) -> str:
        """The bar's text: a filled gauge when the total is known, else a count."""
        if total:
            filled = round(20 * min(done, total) / total)
            gauge = f"[{'#' * filled}{'.' * (20 - filled)}] {done}/{total}"
        else:
            gauge = str(done)
        return " ".join(part for part in (self.title, gauge, label, f"{elapsed:.0f} s") if part)

    def message(self, text: str) -> None:
        """Print a line on the bar's stream, whether or not a bar is shown: the bar is erased first
        (it would otherwise prefix the line) and comes back at the next update."""
        self.close()
        print(text, file=self.stream, flush=True)

    def close(self) -> None:
        if self.drawn_at is not None:
            self.stream.write("\r" + _ERASE)
            self.stream.flush()
            self.drawn_at = None

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def _columns(stream: TextIO) -> int:
    """The terminal's width: a line longer than it would wrap, and ``\\r`` would then redraw only
    its last part."""
    try:
        return os.get_terminal_size(stream.fileno()).columns or 80
    except (AttributeError, ValueError, OSError):
        return 80
