"""Pinning a web process to chosen CPUs (``WEB_CPUS``), as a web process per core runs best.

A web process runs its Python under one interpreter lock: the event loop and the database threads take
turns and never run Python at the same time, so a second core adds little. Left to the OS, the turns
land on different cores, and each handover moves the shared objects' cache lines from one core to the
other. Pinned to one core, one process carried 10-25 % more chat messages per second at a fifth less CPU
per message, and its latency fell too (bench/realtime.py, RT1/RT2; docs/PERFORMANCE.md). Run one web
process per core and give each its own ``WEB_CPUS``.

``WEB_CPUS`` lists CPU numbers and ranges (``1``, ``0,2``, ``2-3``); empty (the default) leaves the choice to
the OS. Linux only: elsewhere a set value is refused at start.
"""

from __future__ import annotations

import contextlib
import os

from django.core.exceptions import ImproperlyConfigured

ENV_NAME = "WEB_CPUS"


def parse_cpus(spec: str) -> set[int]:
    """``"0,2-3"`` → ``{0, 2, 3}``; a clear error for anything else."""
    cpus: set[int] = set()
    for part in spec.split(","):
        part = part.strip()
        first, dash, last = part.partition("-")
        try:
            low = int(first)
            high = int(last) if dash else low
        except ValueError:
            raise ImproperlyConfigured(
                f"{ENV_NAME}={spec!r}: list CPU numbers or ranges, e.g. 1 or 0,2 or 2-3"
            ) from None
        if low < 0 or high < low:
            raise ImproperlyConfigured(f"{ENV_NAME}={spec!r}: {part!r} is not a CPU number or range")
        cpus.update(range(low, high + 1))
    return cpus


def pin_from_environment(environ=os.environ) -> set[int] | None:
    """Pin every thread of this process to the CPUs ``WEB_CPUS`` names; returns them (None when unset).

    Threads made later inherit the setting from the thread that makes them.
    """
    spec = environ.get(ENV_NAME, "").strip()
    if not spec:
        return None
    cpus = parse_cpus(spec)
    if not hasattr(os, "sched_setaffinity"):
        raise ImproperlyConfigured(f"{ENV_NAME} is set, but this system cannot pin a process to CPUs")
    allowed = os.sched_getaffinity(0)
    if not cpus <= allowed:
        raise ImproperlyConfigured(
            f"{ENV_NAME}={spec!r}: CPU {sorted(cpus - allowed)} not available to this process "
            f"(available: {','.join(map(str, sorted(allowed)))})"
        )
    try:
        threads = [int(name) for name in os.listdir("/proc/self/task")]
    except OSError:
        threads = [0]
    for thread in threads:
        with contextlib.suppress(ProcessLookupError):  # the thread ended meanwhile
            os.sched_setaffinity(thread, cpus)
    return cpus
