"""How a process that has done its work ends: without the interpreter's last full garbage collection.

A KFP task or a CLI command that imported torch and mlflow holds millions of objects; at exit the
interpreter's final collections walk all of them, about 2 s per process on the 2-core development box
(docs/training.md, "Speed"). :func:`skip_final_collection` freezes the live objects at exit
(:func:`gc.freeze`), so the collector skips them; reference counting still frees everything, every ``atexit``
handler still runs and the exit status is unchanged.
"""

from __future__ import annotations

import atexit
import gc

__all__ = ["skip_final_collection"]

_registered = False


def skip_final_collection() -> None:
    """Register (once per process) an exit hook that freezes every live object before the final collections."""
    global _registered
    if not _registered:
        atexit.register(gc.freeze)
        _registered = True
