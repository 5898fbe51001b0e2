"""Progress of long commands on stderr: a tqdm bar on a terminal, a plain line every so often otherwise.

Not a paper's method: the command-line convention of issue 28 (item 3). A log file or nohup output
has no use for a bar redrawn in place, so when stderr is not a terminal the same progress is
printed as one line every `every` seconds (default 30, or $VISIONZOO_PROGRESS_SECONDS) and once
at the end. Progress never goes to stdout, which `--json` keeps for the JSON alone.

`status` is a callable giving the fields shown after the count (loss, img/s, …); it is called
only when something is shown, so a value that needs a host sync (a loss on the GPU) costs one
sync per display, not one per step.
"""
from __future__ import annotations

import os
import sys
import time
from typing import Callable, Iterable, Iterator, TextIO

DEFAULT_SECONDS = 30.0
_BAR_REFRESH_SECONDS = 0.5


def plain_interval() -> float:
    """Seconds between plain progress lines: $VISIONZOO_PROGRESS_SECONDS, else 30."""
    from .errors import UsageError
    text = os.environ.get("VISIONZOO_PROGRESS_SECONDS")
    if text is None:
        return DEFAULT_SECONDS
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise UsageError(f"VISIONZOO_PROGRESS_SECONDS={text!r}: give a positive number of seconds")
    return seconds


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _field(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


class Progress:
    """Count of `total` steps (None: unknown) shown as `desc`; iterate it to wrap `iterable`, or call
    `update`. Use as a context manager (or call `close`) so that the final line is printed."""

    def __init__(self, iterable: Iterable | None = None, total: int | None = None, desc: str = "",
                 quiet: bool = False, unit: str = "it", status: Callable[[], dict] | None = None,
                 initial: int = 0, final: bool = True, every: float | None = None, stream: TextIO | None = None):
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.iterable, self.total, self.desc, self.unit, self.status = iterable, total, desc, unit, status
        self.count, self.final, self.closed = initial, final, False
        self.stream = stream if stream is not None else sys.stderr
        self.mode = "off" if quiet else ("bar" if _is_terminal(self.stream) else "plain")
        self.started = self.last_shown = time.perf_counter()
        self.every = plain_interval() if every is None and self.mode == "plain" else every or DEFAULT_SECONDS
        self.bar = None
        if self.mode == "bar":
            from tqdm import tqdm
            self.bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, file=self.stream, leave=False,
                            dynamic_ncols=True, mininterval=_BAR_REFRESH_SECONDS)

    def __iter__(self) -> Iterator:
        if self.iterable is None:
            raise TypeError("this Progress wraps no iterable; call update() instead")
        try:
            for item in self.iterable:
                yield item
                self.update()
        finally:
            self.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, kind, error, traceback) -> None:
        self.close(finished=kind is None)

    def update(self, steps: int = 1) -> None:
        self.count += steps
        if self.mode == "off":
            return
        now = time.perf_counter()
        if self.mode == "bar":
            if self.status is not None and now - self.last_shown >= _BAR_REFRESH_SECONDS:
                self.bar.set_postfix({k: _field(v) for k, v in self.status().items()}, refresh=False)
                self.last_shown = now
            self.bar.update(steps)
        elif now - self.last_shown >= self.every and not (self.total and self.count >= self.total and self.final):
            self.last_shown = now
            self._line(now, done=False)

    def close(self, finished: bool = True) -> None:
        """End the display; the final plain line only when the work ran to its end."""
        if self.closed:
            return
        self.closed = True
        if self.bar is not None:
            self.bar.close()
        elif self.mode == "plain" and self.final and finished:
            self._line(time.perf_counter(), done=True)

    def _line(self, now: float, done: bool) -> None:
        elapsed = now - self.started
        count = f"{self.count}/{self.total}" if self.total else str(self.count)
        parts = [f"{count} {self.unit}"]
        if self.total and not done:
            parts[0] += f" ({self.count / self.total:.0%})"
        parts += [f"{key} {_field(value)}" for key, value in (self.status() if self.status else {}).items()]
        if done:
            parts.append(f"done in {_duration(elapsed)}")
        else:
            parts.append(f"{_duration(elapsed)} elapsed")
            if self.total and self.count:
                parts.append(f"~{_duration(elapsed * (self.total - self.count) / self.count)} left")
        prefix = f"{self.desc}: " if self.desc else ""
        print(prefix + ", ".join(parts), file=self.stream, flush=True)


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):   # a replaced or closed stream is no terminal
        return False


def progress(iterable: Iterable | None = None, total: int | None = None, desc: str = "", quiet: bool = False,
             **options) -> Progress:
    """The shared progress display of every long command (see the module's docstring)."""
    return Progress(iterable, total=total, desc=desc, quiet=quiet, **options)


def note(text: str, quiet: bool = False) -> None:
    """One line of progress on stderr (a stage of a command), unless `quiet`."""
    if not quiet:
        print(text, file=sys.stderr, flush=True)
