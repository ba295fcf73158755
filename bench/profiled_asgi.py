"""The gateway's ASGI application under cProfile, timing CPU, for `bench.profile --cprofile`.

py-spy samples a thread whenever it is runnable, so time spent preempted (on a busy
two-core machine, a write that wakes the client often hands it the core) counts as busy.
cProfile with a CPU-time clock counts only what the worker itself spent. Its own cost
(two clock reads per call) inflates code that makes many small calls, so read its figures
as shares of a slower run, next to py-spy's.

SIGUSR1 starts a fresh profile (after the warm-up); SIGUSR2 stops it and writes the
stats to `CASCADEOPS_PROFILE_OUT`.
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
