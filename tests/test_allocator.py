"""The command's allocator setting (`orderfeeds.allocator`): made once at start, only where glibc runs."""

from __future__ import annotations

import ctypes
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from orderfeeds import allocator
from orderfeeds.cli import main

SAMPLES = Path(__file__).resolve().parent.parent / "samples"

# Frees 10,000 small blocks and prints how many bytes glibc keeps in its fastbins for the main arena.
FASTBIN_BYTES = """
import ctypes, sys
from orderfeeds import allocator

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
if sys.argv[1] == "tuned":
    assert allocator.tune()
blocks = [libc.malloc(48) for _ in range(10_000)]
for block in blocks:
    libc.free(block)
print(libc.mallinfo2().fsmblks)
"""

glibc = pytest.mark.skipif(platform.libc_ver()[0] != "glibc" or not hasattr(ctypes.CDLL(None), "mallinfo2"),
                           reason="glibc 2.33 or later only")


@glibc
def test_tune_keeps_freed_small_blocks_out_of_the_fastbins():
    def fastbin_bytes(how: str) -> int:
        out = subprocess.run([sys.executable, "-c", FASTBIN_BYTES, how], capture_output=True, text=True, check=True)
        return int(out.stdout)

    assert fastbin_bytes("default") > 0
    assert fastbin_bytes("tuned") == 0


def test_tune_changes_nothing_without_glibc(monkeypatch: pytest.MonkeyPatch):
    def no_library(*args, **kwargs):
        raise AssertionError("the C library was opened")

    monkeypatch.setattr(platform, "libc_ver", lambda: ("", ""))
    monkeypatch.setattr(ctypes, "CDLL", no_library)
    assert allocator.tune() is False


def test_the_command_tunes_the_allocator_before_it_works(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    calls = []
    monkeypatch.setattr(allocator, "tune", lambda: calls.append("tune") or True)
    result = CliRunner().invoke(main, ["process", str(SAMPLES / "feeds" / "order-cancellation.txt"),
                                       "--snapshot", str(SAMPLES / "orders-snapshot.tsv"), "--out", str(tmp_path)])
    assert result.exit_code == 1, result.output  # the sample has rejected records
    assert calls == ["tune"]


# What the variable holds once polars is imported in a fresh process, after `import orderfeeds.cli` or on its own.
POLARS_CONF = """
import os, sys
if sys.argv[1] == "cli":
    import orderfeeds.cli
else:
    import orderfeeds
    assert "polars" not in sys.modules  # the package's names are imported when first used
    import polars
print(os.environ.get("_RJEM_MALLOC_CONF", ""))
"""


def polars_conf(how: str, **env: str) -> str:
    environment = {key: value for key, value in os.environ.items() if key != allocator.POLARS_MALLOC_CONF}
    out = subprocess.run([sys.executable, "-c", POLARS_CONF, how], capture_output=True, text=True, check=True,
                         env={**environment, **env})
    return out.stdout.strip()


def test_the_command_gives_polars_one_arena_before_polars_starts():
    # polars puts its own settings first, then what the variable held when it was imported: one arena.
    assert polars_conf("cli").endswith(",narenas:1")
    assert "narenas" not in polars_conf("library")  # importing the library changes nothing


def test_a_number_of_arenas_given_stays():
    assert polars_conf("cli", _RJEM_MALLOC_CONF="narenas:3").endswith(",narenas:3")
    assert "polars" in sys.modules
    assert allocator.tune_polars() is False  # too late once polars is imported
