"""The allocators set up for reading large feeds, once, by the command (a library leaves process settings alone)."""

from __future__ import annotations

import ctypes
import os
import platform
import sys

M_MXFAST = 1  # glibc's mallopt parameter: the largest request served from the fastbins (0: none)


def tune() -> bool:
    """Turn glibc's fastbins off; False (nothing changed) where the C library is not glibc.

    libxml2 mallocs every node of the tree on its own, and the XML reader frees a chunk's nodes, about
    150,000 of them, all at once. glibc keeps such frees in its fastbins unmerged, and the next large request
    (a block read from the file) makes it merge them all in one go, then split them again for the next chunk's
    nodes: about 7% of the time of reading a large XML feed (0.87-0.95x the wall time with them off, six pairs
    of runs on the 1M-message benchmark; peak memory unchanged). Python's own small objects do not come from
    malloc, and polars has its own allocator, so nothing else changes much (the 1M flat `process`: 0.97-0.98x).
    """
    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return mallopt(M_MXFAST, 0) == 1


# polars' jemalloc reads its settings from this variable when it starts, that is when polars is imported.
POLARS_MALLOC_CONF = "_RJEM_MALLOC_CONF"
ONE_ARENA = "narenas:1"


def tune_polars() -> bool:
    """Give polars' jemalloc one arena instead of four per core, unless polars is imported already (then it is too late)
    or the variable names a number of arenas already (a user's own setting stays); True if set. polars puts its own
    settings in front of what the variable holds when it is imported.

    Each thread that allocates takes an arena of its own, and an arena keeps the pages freed in it for a while. The
    XML reader's worker threads each build a chunk's frames, so with an arena each the pages kept add up: reading the
    1M-message XML peaked at 390-410 MB, and with one arena at 330-350 MB, in 0.95x the time (each thread still has
    its own cache of small blocks, so one arena costs no waiting here). `process` of that feed: 32.0 s and 2.75 GB
    before, 28.0 s and 2.72 GB with one arena.
    """
    given = os.environ.get(POLARS_MALLOC_CONF, "")
    if "polars" in sys.modules or "narenas" in given:
        return False
    os.environ[POLARS_MALLOC_CONF] = f"{given},{ONE_ARENA}" if given else ONE_ARENA
    return True
