"""One line per image while images are built or resolved (rich), instead of make's output.

Each image's line says what its build is doing (waiting, vendoring, building from a snapshot)
and ends with what came of it (up to date, built in N s, failed); the compiler's and package
managers' output is in the image's log under the cache (controller.images.build). On a
terminal the lines update in place; in a CI log each is printed once, in its final state.
"""

from __future__ import annotations

import threading
from types import TracebackType

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn


class BuildDisplay:
    """`status(image, text)` for controller.images.build.Builder, as a rich progress display."""

    def __init__(self, console: Console):
        self._progress = Progress(SpinnerColumn(finished_text=" "), TextColumn("{task.fields[image]}"),
                                  TextColumn("{task.description}"), TimeElapsedColumn(),
                                  console=console)
        self._rows: dict[str, TaskID] = {}
        self._lock = threading.Lock()
        self._width = 0

    def __enter__(self) -> BuildDisplay:
        self._progress.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        for row in self._rows.values():
            task = self._progress.tasks[row]
            if not task.finished:  # a failed or interrupted build: its line says so
                self._progress.update(row, description=f"{task.description} (stopped)")
                self._progress.stop_task(row)
        self._progress.stop()

    def expect(self, images: list[str]) -> None:
        """Show every image the pass needs at once, waiting until its build starts."""
        for image in images:
            self._row(image, "waiting")

    def status(self, image: str, text: str) -> None:
        self._progress.update(self._row(image, text), description=text)

    def done(self, image: str, text: str) -> None:
        row = self._row(image, text)
        self._progress.update(row, description=text, total=1, completed=1)
        self._progress.stop_task(row)

    def _row(self, image: str, text: str) -> TaskID:
        with self._lock:
            if image not in self._rows:
                self._width = max(self._width, len(image))
                self._rows[image] = self._progress.add_task(text, total=None, image=image)
                for name, row in self._rows.items():  # names in one column
                    self._progress.update(row, image=f"{name:<{self._width}}")
            return self._rows[image]
