"""asyncssh, imported once for every module that uses it, without the compiler runs of its import.

At import, asyncssh looks for two optional C libraries with ctypes.util.find_library: nettle (UMAC MACs) and liboqs
(post-quantum key exchanges). On Linux, find_library asks ldconfig's cache first; for a library not in it (liboqs,
on most hosts) it goes on to run gcc, collect2 and ld twice each: ~25 ms and six processes at every start of a
server or `controlroom run`, on the path of a cold deploy. Here the lookup is ldconfig's cache only (where a
library installed from a package is), unless LD_LIBRARY_PATH is set, whose directories only the full search reads.
A library outside both is not used, exactly as asyncssh does when it finds none.
"""

from __future__ import annotations

import contextlib
import ctypes.util
import os
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def _ldconfig_only() -> Iterator[None]:
    cached = getattr(ctypes.util, "_findSoname_ldconfig", None)  # CPython's own first step on Linux
    if "asyncssh" in sys.modules or cached is None or not sys.platform.startswith("linux") or \
            os.environ.get("LD_LIBRARY_PATH"):
        yield
        return
    full = ctypes.util.find_library
    ctypes.util.find_library = cached
    try:
        yield
    finally:
        ctypes.util.find_library = full


with _ldconfig_only():
    import asyncssh  # noqa: E402
    from asyncssh.encryption import get_default_encryption_algs  # noqa: E402

__all__ = ["asyncssh", "get_default_encryption_algs"]
