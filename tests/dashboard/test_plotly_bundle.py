"""The charts' plotly.min.js comes from the installed plotly package, through the static files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from django.conf import settings
from django.contrib.staticfiles import finders

from dashboard.plotly_bundle import STATIC_PATH


def test_the_bundle_is_found_at_the_path_the_pages_use() -> None:
    found = finders.find(STATIC_PATH)

    assert found is not None
    assert Path(found).parent.name == "package_data"
    assert b"plotly.js v" in Path(found).read_bytes()[:200]
    assert finders.find("dashboard/vendor/widgetbundle.js") is None  # only the bundle is served


def test_collectstatic_copies_it_under_the_same_path(tmp_path: Path) -> None:
    """As `make run` and a deployment collect it: a process of its own, with its own STATIC_ROOT."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "cascadeops.settings", "STATIC_ROOT": str(tmp_path / "static"),
           "CASCADEOPS_VAR_DIR": str(tmp_path / "var")}  # fmt: skip

    command = [sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"]
    subprocess.run(command, env=env, cwd=settings.BASE_DIR, check=True)

    assert (tmp_path / "static" / STATIC_PATH).stat().st_size > 1_000_000
