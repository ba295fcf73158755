"""The gateway's ASGI application under cProfile, timing CPU, for `bench.profile --cprofile`.

cProfile with a CPU-time clock counts only what the worker itself spent (py-spy counts
preempted time as busy), at the price of its own cost per call. SIGUSR1 starts a fresh
profile (after the warm-up); SIGUSR2 stops it and writes the stats to
`CASCADEOPS_PROFILE_OUT`. See docs/testing.md.
"""

from __future__ import annotations

import cProfile
import os
import signal
import time
from typing import Any

from cascadeops.asgi import application

__all__ = ["application"]

_profile: cProfile.Profile | None = None


def _start(*_: Any) -> None:
    global _profile
    if _profile is not None:
        _profile.disable()
    _profile = cProfile.Profile(time.thread_time)
    _profile.enable()


def _stop(*_: Any) -> None:
    if _profile is not None:
        _profile.disable()
        _profile.dump_stats(os.environ["CASCADEOPS_PROFILE_OUT"])


# Python runs signal handlers on the main thread, the one serving the event loop.
signal.signal(signal.SIGUSR1, _start)
signal.signal(signal.SIGUSR2, _stop)
