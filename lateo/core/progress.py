"""A rich progress bar that updates between jitted chunks of iterations.

``progress="auto"`` (the estimators' default) shows the bar only on an
interactive terminal and only once a fit has run for more than a second, so
quick fits and logs stay quiet; ``True`` always shows it, ``False`` never.
"""

from __future__ import annotations

import sys
import time

_AUTO_DELAY_S = 1.0


def check_progress(progress) -> None:
    """Raise a clear error for a ``progress`` argument that is not understood."""
    if progress not in (True, False, "auto"):
        raise ValueError(f"progress must be True, False or 'auto', got {progress!r}.")


class FitProgress:
    """Progress of an iterative fit, shown lazily with rich.

    Parameters
    ----------
    total : int
        Maximum number of iterations.
    description : str
        Label shown left of the bar.
    enabled : {True, False, "auto"}
        See the module docstring.
    """

    def __init__(self, total: int, description: str = "fit", enabled="auto"):
        check_progress(enabled)
        self.total = int(total)
        self.description = description
        self.enabled = enabled
        self._start = time.perf_counter()
        self._bar = None
        self._task = None

    def _should_show(self) -> bool:
        if self.enabled is True:
            return True
        if self.enabled is False:
            return False
        interactive = hasattr(sys.stderr, "isatty") and sys.stderr.isatty()
        return interactive and time.perf_counter() - self._start > _AUTO_DELAY_S

    def update(self, completed: int, objective: float | None = None) -> None:
        """Move the bar to ``completed`` iterations; show the latest objective."""
        if self._bar is None:
            if not self._should_show():
                return
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[objective]}"),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                transient=False,
            )
            self._bar.start()
            self._task = self._bar.add_task(self.description, total=self.total, objective="")
        text = "" if objective is None else f"objective {objective:.6g}"
        self._bar.update(self._task, completed=completed, objective=text)

    def close(self) -> None:
        """Stop the bar (if it was shown)."""
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
