"""Redis Lua scripts live in `.lua` files beside the feature that runs them."""

from __future__ import annotations

from functools import cache
from importlib.resources import files


@cache
def lua_script(package: str, name: str) -> str:
    """The text of `<package>/lua/<name>.lua`, read once per process."""
    return files(package).joinpath("lua", f"{name}.lua").read_text(encoding="utf-8")
