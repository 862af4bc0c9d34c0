"""Times every stage of orderfeeds on generated data and compares with a bare read (the floor).

    python benchmarks/generate.py --seed 1 --orders-lines 2000000 --records 1000000 --out /tmp/bench
    python benchmarks/bench.py /tmp/bench --feed adjustment.txt [--run] [--xml adjustment.xml]

Each measurement runs in a fresh child process so its peak memory is its own.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_floor(snapshot: Path, feed: Path) -> dict:
    """The floor: polars reading both files as text, with no checks at all."""
    import polars as pl

    started = time.perf_counter()
    for path in (snapshot, feed):
        pl.read_csv(path, separator="\t", infer_schema=False, quote_char=None, truncate_ragged_lines=True,
                    skip_rows=1 if path.read_bytes()[:13] == b"TemplateType=" else 0)
    return {"seconds": time.perf_counter() - started, "peak_mb": _peak_mb()}


def _options():
    """`process`'s options; BENCH_CHUNK_RECORDS sets the piece size (default: the library's)."""
    from dataclasses import replace

    from orderfeeds.pipeline import ProcessOptions

    options = ProcessOptions(as_of="2026-11-28T06:00:00+00:00")
    chunk = os.environ.get("BENCH_CHUNK_RECORDS")
    return replace(options, chunk_records=int(chunk)) if chunk else options


def child_process(snapshot: Path, feed: Path) -> dict:
    """`process` end to end: the snapshot, the feed (read, validate and apply, a piece at a time as
    `process_feeds` does; per-stage seconds are the feed's own timings, summed over its pieces),
    then the report files. Peak memory is the high-water mark after the snapshot, the feed and the report."""
    from orderfeeds.pipeline import RunState, advance
    from orderfeeds.report import write_reports
    from orderfeeds.snapshot import read_snapshot

    stages: dict[str, dict] = {}
    started = time.perf_counter()
    lines = read_snapshot(snapshot)
    stages["snapshot"] = {"seconds": time.perf_counter() - started, "peak_mb": _peak_mb()}
    state = RunState(lines=lines)
    del lines
    began = time.perf_counter()
    result = advance(feed, feed.name, state, _options())
    peak = _peak_mb()
    feed_seconds = time.perf_counter() - began
    timed = dict(result.timings)
    # What the feed's timings do not name (hashing the file, combining the pieces) is counted with reading.
    timed["read"] = timed.get("read", 0.0) + feed_seconds - sum(timed.values())
    for stage in ("read", "validate", "apply", "outcomes"):
        stages[stage] = {"seconds": timed.get(stage, 0.0), "peak_mb": peak}
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        write_reports(result, Path(out))
    stages["report"] = {"seconds": time.perf_counter() - began, "peak_mb": _peak_mb()}
    total = time.perf_counter() - started
    return {"stages": stages, "seconds": total, "peak_mb": _peak_mb(), "records": result.records.height}


def child_run(snapshot: Path, feed: Path) -> dict:
    """`run` with the SQLite state: the snapshot is imported first (not timed), then one feed."""
    from orderfeeds.pipeline import ProcessOptions
    from orderfeeds.runner import RunOptions, run_spool
    from orderfeeds.snapshot import read_snapshot
    from orderfeeds.state import open_store

    with tempfile.TemporaryDirectory() as root:
        root_path = Path(root)
        store = open_store(f"sqlite:///{root_path / 'state.db'}")
        began = time.perf_counter()
        store.import_snapshot(read_snapshot(snapshot), snapshot.name, "-")
        store.close()
        imported = time.perf_counter() - began
        (root_path / "inbox").mkdir()
        shutil.copy(feed, root_path / "inbox" / feed.name)
        (root_path / "inbox" / (feed.name + ".done")).touch()
        # The runner's progress lines mark its stages: claim+hash, then read+validate+load+apply piece by
        # piece, then commit+report.
        marks: list[tuple[str, float, float]] = []
        names = {"reading": "claim+hash", "committing": "read+apply"}

        def progress(line: str) -> None:
            word = line.rsplit(": ", 1)[-1].split(" ", 1)[0].rstrip(",")
            marks.append((names.get(word, word), time.perf_counter(), _peak_mb()))

        started = time.perf_counter()
        report = run_spool(RunOptions(root=root_path, state_url=f"sqlite:///{root_path / 'state.db'}",
                                      process=ProcessOptions(as_of="2026-11-28T06:00:00+00:00")), progress=progress)
        seconds = time.perf_counter() - started
        marks.append(("commit+report", time.perf_counter(), _peak_mb()))
    times = [started] + [at for _, at, _ in marks]
    stages = {name: {"seconds": times[i + 1] - times[i], "peak_mb": peak} for i, (name, _, peak) in enumerate(marks)}
    return {"seconds": seconds, "import_seconds": imported, "peak_mb": _peak_mb(), "stages": stages,
            "records": report.feeds[0].entry.records if report.feeds and report.feeds[0].entry else 0}


def child_iterparse(feed: Path) -> dict:
    """The XML floor: a bare, hardened lxml iterparse that clears each Message."""
    from lxml import etree

    started = time.perf_counter()
    count = 0
    for _, element in etree.iterparse(str(feed), events=("end",), tag="Message", resolve_entities=False,
                                      no_network=True, load_dtd=False):
        count += 1
        element.clear()
        while element.getprevious() is not None:
            del element.getparent()[0]
    return {"seconds": time.perf_counter() - started, "peak_mb": _peak_mb(), "messages": count}


def child_xml(snapshot: Path, feed: Path) -> dict:
    """Hashing, reading and validating an XML feed streamed from its file, as `process` and `run` do
    (no snapshot needed for these stages)."""
    from orderfeeds.pipeline import prepared_pieces
    from orderfeeds.readers import feed_sha256

    started = time.perf_counter()
    sha256 = feed_sha256(feed)
    records = 0
    read = 0.0
    for piece in prepared_pieces(feed, sha256, feed.name, _options()):
        records += piece.raw.frame.height
        read += piece.timings["read"]
        del piece
    return {"seconds": time.perf_counter() - started, "read_seconds": read, "peak_mb": _peak_mb(),
            "records": records}


CHILDREN = {"floor": child_floor, "process": child_process, "run": child_run, "iterparse": child_iterparse,
            "xml": child_xml}


def measure(kind: str, *paths: Path) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", kind, *map(str, paths)],
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{kind} failed:\n{out.stderr}")
    return json.loads(out.stdout)


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    return f"{os.cpu_count()} cores, {cpu}, {memory:.0f} GiB, Python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("dir", nargs="?", type=Path)
    parser.add_argument("--feed", default="adjustment.txt")
    parser.add_argument("--snapshot", default="snapshot.tsv")
    parser.add_argument("--run", action="store_true", help="also time `run` with the SQLite state")
    parser.add_argument("--xml", help="also time this XML feed against a bare lxml iterparse")
    parser.add_argument("--xml-only", action="store_true", help="time only the XML feed (skip the flat feed)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="XML: time iterparse and ours this many times, in turn, and quote medians")
    args = parser.parse_args()
    if args.child:
        kind, *paths = args.child
        if kind not in ("iterparse", "floor"):
            from orderfeeds import allocator

            allocator.tune_polars()  # as the `orderfeeds` command does; the floors are bare reads
            allocator.tune()
        print(json.dumps(CHILDREN[kind](*map(Path, paths))))
        return
    snapshot, feed = args.dir / args.snapshot, args.dir / args.feed
    print(f"machine: {machine()}")
    if args.xml_only:
        if not args.xml:
            parser.error("--xml-only needs --xml")
        _xml(args.dir, snapshot, args.xml, args.repeat)
        return
    floor = measure("floor", snapshot, feed)
    result = measure("process", snapshot, feed)
    records = result["records"]
    print(f"feed {feed.name}: {records:,} records, {feed.stat().st_size / 1e6:.0f} MB; "
          f"snapshot {snapshot.stat().st_size / 1e6:.0f} MB")
    print(f"{'stage':<10} {'seconds':>8} {'records/s':>12}   peak so far")
    for stage, figures in result["stages"].items():
        rate = records / figures["seconds"] if figures["seconds"] else float("inf")
        print(f"{stage:<10} {figures['seconds']:>8.2f} {rate:>12,.0f}   {figures['peak_mb']:>6,.0f} MB")
    print(f"{'process':<10} {result['seconds']:>8.2f} {records / result['seconds']:>12,.0f}   "
          f"peak {result['peak_mb']:,.0f} MB")
    print(f"{'floor':<10} {floor['seconds']:>8.2f} {'':>12}   peak {floor['peak_mb']:,.0f} MB   "
          f"(bare pl.read_csv of both files)")
    print(f"ratio process / floor: {result['seconds'] / floor['seconds']:.2f}x")
    if args.run:
        run = measure("run", snapshot, feed)
        for stage, figures in run["stages"].items():
            print(f"  run {stage:<14} {figures['seconds']:>8.2f}   peak so far {figures['peak_mb']:,.0f} MB")
        print(f"{'run':<10} {run['seconds']:>8.2f} {records / run['seconds']:>12,.0f}   peak {run['peak_mb']:,.0f} MB"
              f"   (snapshot import {run['import_seconds']:.2f} s, not counted)")
        process_without_snapshot = result["seconds"] - result["stages"]["snapshot"]["seconds"]
        print(f"ratio run / process (without the snapshot read): {run['seconds'] / process_without_snapshot:.2f}x")
    if args.xml:
        _xml(args.dir, snapshot, args.xml, args.repeat)


def _xml(folder: Path, snapshot: Path, name: str, repeat: int = 1) -> None:
    """Ours against the bare iterparse, `repeat` pairs run in turn (so a drift in the machine's speed
    touches both); medians, with the ratio taken pair by pair."""
    xml_feed = folder / name
    pairs = [(measure("iterparse", xml_feed), measure("xml", snapshot, xml_feed)) for _ in range(max(1, repeat))]
    bare, ours = pairs[0]
    print(f"xml {xml_feed.name}: {xml_feed.stat().st_size / 1e6:.0f} MB, {bare['messages']:,} messages"
          + (f", median of {len(pairs)} runs in turn (min-max)" if len(pairs) > 1 else ""))

    def spread(values: list[float], unit: str, digits: int = 2) -> str:
        shown = f"{statistics.median(values):,.{digits}f}{unit}"
        return shown + (f" ({min(values):,.{digits}f}-{max(values):,.{digits}f})" if len(values) > 1 else "")

    print(f"  bare iterparse {spread([b['seconds'] for b, _ in pairs], ' s')}, "
          f"peak {spread([b['peak_mb'] for b, _ in pairs], ' MB', 0)}")
    print(f"  hash+read+validate {spread([o['seconds'] for _, o in pairs], ' s')} "
          f"(read {spread([o['read_seconds'] for _, o in pairs], ' s')}), "
          f"peak {spread([o['peak_mb'] for _, o in pairs], ' MB', 0)}")
    print(f"  ratio: {spread([o['seconds'] / b['seconds'] for b, o in pairs], 'x')}")


if __name__ == "__main__":
    main()
