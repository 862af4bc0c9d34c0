"""glibc's allocator set up for the XML reader, once, by the command (a library leaves process settings alone)."""

from __future__ import annotations

import ctypes
import platform

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
