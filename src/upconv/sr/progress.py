"""A rich progress bar with a rate column (frames/s, files/s) on stderr."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text


class RateColumn(ProgressColumn):
    """``12.3 frames/s``: the task's speed in its ``unit`` field (rich's moving average)."""

    def render(self, task: Task) -> Text:
        unit = task.fields.get("unit", "items")
        speed = task.finished_speed or task.speed
        return Text("?" if speed is None else f"{speed:.2f} {unit}/s", style="progress.data.speed")


def progress_bar(enabled: bool = True, console: Console | None = None) -> Progress:
    """A transient progress display; tasks need a ``unit`` field (``add_task(..., unit=...)``)."""
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    RateColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
                    console=console or Console(stderr=True), disable=not enabled,
                    transient=True)
