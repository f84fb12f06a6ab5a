"""Progress bars and log lines on stderr (rich), so stdout stays clean for tables."""

from __future__ import annotations

import time
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

console = Console(stderr=True)


def log(message: str) -> None:
    console.log(message)


@contextmanager
def progress_bar(description: str, total: int | None):
    """``with progress_bar("scoring", n) as advance: advance(k)``. Silent when total is 0."""
    if not total:
        yield lambda n=1: None
        return
    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n=1: bar.advance(task, n)


class Timings:
    """Wall-clock seconds of named steps, kept in a JSON file (rewritten after every step)."""

    def __init__(self, path):
        self.path, self.seconds = path, {}

    @contextmanager
    def __call__(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.update({name: time.perf_counter() - start})

    def update(self, seconds: dict[str, float]) -> None:
        from dear.utils.io import atomic_write_json

        self.seconds.update(seconds)
        atomic_write_json(self.path, self.seconds)

    def table(self) -> str:
        rows = "".join(f"| {name} | {secs / 60:.1f} |\n" for name, secs in self.seconds.items())
        return f"| step | minutes |\n|---|---:|\n{rows}"
