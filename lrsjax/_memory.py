"""Memory available for one allocation, and the up-front refusal of requests that cannot fit.

Large requests (a sampling batch, a sparse-smoothing table) are checked on the host BEFORE anything
is compiled or allocated, so an absurd argument gives a ValueError that names it and says what to
set, instead of a MemoryError or an XLA RESOURCE_EXHAUSTED deep inside a run.
"""

from __future__ import annotations

import os
import resource
from typing import NamedTuple

from lrsjax import _checks

# A request may use at most this fraction of the available memory: the estimates count the big
# buffers only (noise, noisy inputs, logits, tables), not temporaries or a model's activations.
SAFETY_FRACTION = 0.5


class Available(NamedTuple):
    """Memory available to one allocation.

    Fields:
      num_bytes: int or None (unknown: nothing is refused).
      source: str, where the figure comes from (quoted in error messages).
    """

    num_bytes: int | None
    source: str


def host_available() -> Available:
    """Free host memory: `MemAvailable` of /proc/meminfo, capped by the address-space limit.

    The address-space limit (`ulimit -v`, RLIMIT_AS) counts as what is left of it after this
    process's current virtual size. Returns `num_bytes=None` where neither is known.
    """
    figures = []
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    figures.append((int(line.split()[1]) * 1024, "MemAvailable of /proc/meminfo"))
                    break
    except (OSError, ValueError, IndexError):
        try:
            pages = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
            figures.append((int(pages), "available physical pages (sysconf)"))
        except (AttributeError, OSError, ValueError):
            pass
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        used = _virtual_size()
        figures.append((max(int(soft) - used, 0), "the address-space limit (RLIMIT_AS) left"))
    if not figures:
        return Available(None, "unknown")
    num_bytes, source = min(figures)
    return Available(num_bytes, source)


def _virtual_size() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def device_available(devices) -> tuple[Available, int]:
    """(bytes available to each device's share of a computation, number of sharers).

    Accelerators report `memory_stats()["bytes_limit"]` (minus `bytes_in_use`); the smallest over
    `devices` is returned, with 1 sharer. CPU devices (and accelerators without statistics) share
    the host memory, so every one of them counts as a sharer of `host_available()`.
    """
    devices = tuple(devices)
    free = []
    for device in devices:
        if getattr(device, "platform", "cpu") == "cpu":
            continue
        try:
            stats = device.memory_stats()
        except Exception:  # backends without statistics raise or return None
            stats = None
        if stats and "bytes_limit" in stats:
            free.append(int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0)))
    if free and len(free) == len(devices):
        platform = devices[0].platform
        return Available(min(free), f"{platform} device memory (memory_stats)"), 1
    return host_available(), max(len(devices), 1)


def format_bytes(num_bytes: float) -> str:
    value = float(num_bytes)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if value < 1024 or unit == "PiB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{int(value)} B"
        value /= 1024
    return f"{value:.1f} PiB"  # unreachable


def check_fits(name: str, value, need_bytes: float, available: Available, what: str, fix: str):
    """Raises a ValueError naming `name` when `need_bytes` exceeds the safe share of `available`.

    `what` says what the estimate counts; `fix` what to set instead. Nothing is refused when the
    available memory is unknown.
    """
    if available.num_bytes is None:
        return
    budget = SAFETY_FRACTION * available.num_bytes
    if need_bytes > budget:
        _checks.fail(
            name,
            value,
            f"is too large: it needs an estimated {format_bytes(need_bytes)} ({what}), more than "
            f"{SAFETY_FRACTION:.0%} of the {format_bytes(available.num_bytes)} available "
            f"({available.source})",
            fix,
        )
