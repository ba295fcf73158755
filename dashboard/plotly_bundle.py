"""Plotly's browser bundle, served from the `plotly` package rather than a copy in the tree.

The charts' `plotly.min.js` is the one the installed `plotly` package ships, so the browser
and Python halves are always the same release, and upgrading is a dependency bump.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from django.contrib.staticfiles.finders import BaseFinder
from django.core.checks import CheckMessage, Error
from django.core.files.storage import FileSystemStorage

BUNDLE = "plotly.min.js"
PREFIX = "dashboard/vendor"
STATIC_PATH = f"{PREFIX}/{BUNDLE}"


def package_data() -> Path | None:
    """The plotly package's `package_data` folder, found without importing the package."""
    spec = importlib.util.find_spec("plotly")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "package_data"


class PlotlyBundleFinder(BaseFinder):
    """Finds `dashboard/vendor/plotly.min.js` in the installed plotly package."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        folder = package_data()
        self.storage = FileSystemStorage(location=str(folder)) if folder else None
        if self.storage is not None:
            self.storage.prefix = PREFIX  # type: ignore[attr-defined]  # collectstatic copies it there

    def check(self, **kwargs: Any) -> list[CheckMessage]:
        if self.storage is None or not self.storage.exists(BUNDLE):
            missing = "The plotly package's plotly.min.js is missing: the dashboard's charts need it."
            return [Error(missing, hint="Install the project's dependencies (pip install -e .).", id="dashboard.E001")]
        return []

    def find(self, path: str, find_all: bool = False, **kwargs: Any) -> Any:
        found = self.storage.path(BUNDLE) if self.storage is not None and path == STATIC_PATH else None
        if find_all or kwargs.get("all"):
            return [found] if found else []
        return found or []  # as Django's finders: nothing found is an empty list

    def list(self, ignore_patterns: Any) -> Iterator[tuple[str, FileSystemStorage]]:
        if self.storage is not None and self.storage.exists(BUNDLE):
            yield BUNDLE, self.storage
