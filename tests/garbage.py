"""What a piece of code leaves for Python's cycle collector (objects only it can free), for tests."""

from __future__ import annotations

import gc
from collections import Counter
from collections.abc import Callable


def cyclic_garbage(run: Callable[[], object]) -> Counter[str]:
    """Run ``run`` and count, by ``module.type``, the objects it left in reference cycles."""
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        run()
        gc.collect()
        return Counter(f"{type(obj).__module__}.{type(obj).__qualname__}" for obj in gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
