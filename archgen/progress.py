"""A progress line on stderr for the slow commands (export, parity): the stage running, a bar of
the stages done, and the time so far, redrawn in place.

It shows only on a terminal (a log or a pipe gets nothing) and never with --quiet; it draws
nothing for a command that finishes within `delay` seconds (1), so quick runs stay silent. The
line is erased before anything else is printed (`done`), so it never mixes with the output.
"""

from __future__ import annotations

import os
import sys
import threading
import time

WIDTH = 20  # characters of the bar
TICK = 0.5  # seconds between redraws within a stage


class Progress:
    """Stages of one command, in order. `stage(name)` marks the start of a stage (a stage
    named again, as parity does per seed, restarts it); `done()` erases the line."""

    def __init__(self, stages: tuple[str, ...] = (), *, stream=None, enabled: bool | None = None,
                 delay: float | None = None, clock=time.monotonic):
        self.stream = stream if stream is not None else sys.stderr
        if enabled is None:
            enabled = _is_terminal(self.stream)
        self.enabled = enabled
        self.stages = list(stages)
        self.delay = _default_delay() if delay is None else delay
        self.clock = clock
        self.start = clock()
        self.current: str | None = None
        self.shown = False
        self._lock = threading.Lock()
        self._ticking: threading.Event | None = None

    def stage(self, name: str) -> None:
        with self._lock:
            if name not in self.stages:
                self.stages.append(name)
            self.current = name
            self._draw()
        if self.enabled and self._ticking is None:
            self._tick()

    def _tick(self) -> None:
        """Redraw the time every TICK seconds while a stage runs (a daemon thread: a stage of
        a minute still shows that it is alive)."""
        stop = self._ticking = threading.Event()

        def run():
            while not stop.wait(TICK):
                with self._lock:
                    self._draw()

        threading.Thread(target=run, name="archgen-progress", daemon=True).start()

    def _draw(self) -> None:
        if not self.enabled or self.current is None:
            return
        elapsed = self.clock() - self.start
        if elapsed < self.delay and not self.shown:
            return
        self.stream.write("\r" + self.line(elapsed) + "\x1b[K")
        self.stream.flush()
        self.shown = True

    def line(self, elapsed: float) -> str:
        """The line drawn: "[######--------------] weights (3/6) 2.1s".

        >>> p = Progress(("render", "check", "weights"), enabled=False, clock=lambda: 0.0)
        >>> p.stage("check")
        >>> p.line(2.0)
        '[######              ] check (2/3) 2.0s'
        """
        n = len(self.stages)
        i = self.stages.index(self.current) if self.current in self.stages else 0
        filled = WIDTH * i // max(n, 1)
        return (f"[{'#' * filled}{' ' * (WIDTH - filled)}] {self.current} ({i + 1}/{n}) "
                f"{elapsed:.1f}s")

    def done(self) -> None:
        """Erase the line (before the command prints its result) and stop redrawing it."""
        if self._ticking is not None:
            self._ticking.set()
            self._ticking = None
        with self._lock:
            if self.shown:
                self.stream.write("\r\x1b[K")
                self.stream.flush()
                self.shown = False
            self.current = None


def _default_delay() -> float:
    """1 s, or ARCHGEN_PROGRESS_DELAY seconds (the tests draw at once with 0)."""
    try:
        value = float(os.environ.get("ARCHGEN_PROGRESS_DELAY", "1"))
    except ValueError:
        return 1.0
    return value if value >= 0 else 1.0


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False
