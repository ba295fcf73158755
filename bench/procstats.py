"""CPU time and memory of another process, read from /proc (Linux), without psutil.

CPU time per request is the benchmark's most robust figure: on a busy two-core machine
latency and throughput move with whatever else runs, while the CPU a server spends on a
request does not.
"""

from __future__ import annotations

import os
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
MB = 1024 * 1024


def cpu_times(pid: int) -> tuple[float, float]:
    """User and system CPU seconds the process has used so far."""
    # The command name (field 2) may hold spaces; the fields after its ')' are fixed.
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return int(fields[11]) / CLOCK_TICKS, int(fields[12]) / CLOCK_TICKS


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far."""
    return sum(cpu_times(pid))


def rss_mb(pid: int) -> float:
    """Resident memory now."""
    resident_pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    return resident_pages * PAGE_BYTES / MB


def peak_rss_mb(pid: int) -> float:
    """The most resident memory the process has had (the kernel's high-water mark)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for process {pid}")


class CpuMeter:
    """CPU milliseconds a process spends per request over a measured stretch."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.started = cpu_times(pid)

    def ms_per_request(self, requests: int) -> float:
        return sum(self.split_ms_per_request(requests))

    def split_ms_per_request(self, requests: int) -> tuple[float, float]:
        """(user, system) milliseconds per request: system time is the kernel's, syscalls and files."""
        user, system = cpu_times(self.pid)
        per = 1000 / max(requests, 1)
        return (user - self.started[0]) * per, (system - self.started[1]) * per


def slope_mb_per_min(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MB) samples, in MB per minute."""
    if len(samples) < 2:
        return 0.0
    n = len(samples)
    mean_t = sum(t for t, _ in samples) / n
    mean_m = sum(m for _, m in samples) / n
    var_t = sum((t - mean_t) ** 2 for t, _ in samples)
    if var_t == 0:
        return 0.0
    cov = sum((t - mean_t) * (m - mean_m) for t, m in samples)
    return cov / var_t * 60
