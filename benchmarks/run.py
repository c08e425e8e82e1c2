#!/usr/bin/env python3
"""Benchmark runner: the simulator's own speed, against the real kernel.

    python benchmarks/run.py [NAME ...] [--repeat 3] [--size 1G] [--json]
                             [--sizes 4K,16K,64K,2M] [--arches arm64,generic]
                             [--checks off,on] [--reference] [--out DIR]

Benchmarks live here, never as timed assertions in tests.  docs/numbers.md: "a
ratio in one run is the only honest comparison on shared machines", so one
run measures the real kernel's fork of ``--size`` of touched anonymous
memory (a real process; the mTHP size set in sysfs as root and restored)
and the simulator's fault-in, fork, child exit and munmap of the same
amount, for every folio size, backend and checker setting, and prints
each simulated figure as a ratio to the real fork of the same folio size.

Benchmarks (default: all):

- ``host``: the real kernel: fault-in (touching every page), fork (parent
  side, median of ``--repeat``) and munmap, per folio size.
- ``sim``: the matrix above (``--reference`` adds the kernel-shaped fork,
  ``kernel.fast_paths = False``, for checker off).
- ``fuzz``: random-workload steps per second (``contpte.workloads.fuzz``).
- ``memory``: simulator memory per mapped page beyond the frames' own
  metadata (tracemalloc, after fault-in and after fork).

Results go to ``--out``/<date>.json and a markdown table <date>.md next to
it (``--out ''``: not written); ``--json`` prints the JSON document only.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gc
import json
import mmap
import os
import platform
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

Result = dict[str, Any]
THP = Path("/sys/kernel/mm/transparent_hugepage")
SIZES = ("4K", "16K", "64K", "2M")
GOAL_FORK_RATIO = 3.0
GOAL_CHECK_RATIO = 3.0
GOAL_BYTES_PER_PAGE = 32.0

_log_enabled = True


def log(msg: str) -> None:
    if _log_enabled:
        print(msg, file=sys.stderr, flush=True)


def parse_size(text: str) -> int:
    units = {"K": 10, "M": 20, "G": 30}
    t = text.strip().upper().removesuffix("B")
    return int(t[:-1]) << units[t[-1]] if t[-1] in units else int(t)


# ---------------------------------------------------------------------------
# The real kernel
# ---------------------------------------------------------------------------
def _read(p: Path) -> str | None:
    try:
        return p.read_text().strip()
    except OSError:
        return None


def _bracketed(text: str | None) -> str | None:
    if text is None:
        return None
    s, e = text.find("["), text.find("]")
    return text[s + 1 : e] if s >= 0 else text


def _thp_files() -> list[Path]:
    return [THP / "enabled", *sorted(THP.glob("hugepages-*kB/enabled"))]


def _set_thp(size: str) -> dict[str, str]:
    """Only folios of ``size`` for anonymous memory (4K: none); returns what to restore."""
    saved = {str(p): _bracketed(_read(p)) or "" for p in _thp_files()}
    kb = parse_size(size) >> 10
    for p in _thp_files():
        if p.name == "enabled" and p.parent == THP:
            want = "always" if size == "2M" else "never"
        else:
            want = "always" if p.parent.name == f"hugepages-{kb}kB" and size != "4K" else "never"
        p.write_text(want)
    return saved


def _restore_thp(saved: dict[str, str]) -> None:
    for path, value in saved.items():
        if value:
            try:
                Path(path).write_text(value)
            except OSError as e:
                log(f"warning: could not restore {path} to {value}: {e}")


def _thp_stat(size: str) -> int | None:
    if size == "4K":
        return None
    kb = parse_size(size) >> 10
    v = _read(THP / f"hugepages-{kb}kB" / "stats" / "anon_fault_alloc")
    return int(v) if v is not None else None


def host_run(size: str, nbytes: int, repeat: int) -> Result:
    """The real kernel: touch ``nbytes`` with folios of ``size``, fork ``repeat`` times, unmap."""
    import numpy as np

    saved: dict[str, str] = {}
    out: Result = {"folio": size}
    try:
        try:
            saved = _set_thp(size)
            out["thp_set"] = True
        except OSError as e:
            out["thp_set"] = False
            out["thp_error"] = str(e)
        before = _thp_stat(size)
        buf = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        pages = np.frombuffer(buf, dtype=np.uint8)
        t0 = time.perf_counter()
        pages[::4096] = 1
        out["fault_in"] = time.perf_counter() - t0
        after = _thp_stat(size)
        if before is not None and after is not None:
            out["anon_fault_alloc"] = after - before
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            pid = os.fork()
            if pid == 0:
                os._exit(0)
            times.append(time.perf_counter() - t0)
            os.waitpid(pid, 0)
        out["fork"] = statistics.median(times)
        out["fork_runs"] = times
        out["fork_first"] = times[0]
        del pages
        t0 = time.perf_counter()
        buf.close()
        out["munmap"] = time.perf_counter() - t0
    finally:
        _restore_thp(saved)
    return out


# ---------------------------------------------------------------------------
# The simulator
# ---------------------------------------------------------------------------
def _machine(arch: str, size: str, check: bool, nbytes: int) -> Any:
    import contpte

    mthp = {} if size in ("4K", "2M") else {size: "always"}
    thp = "always" if size == "2M" else "never"
    mem = max(2 * nbytes, 256 << 20)
    m = contpte.Machine(arch=arch, memory=mem, cpus=2, mthp=mthp, thp=thp, check=check)
    # The vectorised fast paths (model-internal switch; --reference also
    # times the kernel-shaped fork with it off).
    m.kernel.fast_paths = True
    return m


def sim_run(arch: str, size: str, check: bool, nbytes: int, repeat: int, reference: bool) -> Result:
    """Fault-in, fork (+ child exit) ``repeat`` times, munmap of ``nbytes`` in the model."""
    m = _machine(arch, size, check, nbytes)
    p = m.spawn()
    pmd = 2 << 20
    a = p.mmap(nbytes + pmd)
    a = (a + pmd - 1) & ~(pmd - 1)
    out: Result = {"arch": arch, "folio": size, "check": check}
    gc.collect()
    t0 = time.perf_counter()
    p.write(a, nbytes, 1)
    out["fault_in"] = time.perf_counter() - t0
    forks, exits = [], []
    for _ in range(repeat):
        gc.collect()
        t0 = time.perf_counter()
        c = p.fork()
        forks.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        c.exit()
        exits.append(time.perf_counter() - t0)
    out["fork"] = statistics.median(forks)
    out["fork_runs"] = forks
    # the first fork write-protects the freshly faulted parent; later ones
    # find it read-only (so does the real kernel's, measured the same way)
    out["fork_first"] = forks[0]
    out["exit"] = statistics.median(exits)
    if reference and not check:
        m.kernel.fast_paths = False
        t0 = time.perf_counter()
        c = p.fork()
        out["fork_reference"] = time.perf_counter() - t0
        c.exit()
        m.kernel.fast_paths = True
    t0 = time.perf_counter()
    p.munmap(a, nbytes)
    out["munmap"] = time.perf_counter() - t0
    return out


def memory_run(arch: str, size: str, check: bool, nbytes: int, distinct: bool = False) -> Result:
    """Simulator memory (tracemalloc) per mapped page, beyond mem_map and frame contents.

    Tracing starts after the Machine exists (mem_map and frame contents are
    allocated then) and before the first process, so what it sees is the
    page tables, the TLB, the rule checker's shadow, the validators' state
    (their mem_map snapshot included) and transient arrays.  ``distinct``:
    every page written with its own value (the validators' isolation shadow
    keeps a table written with one value compactly; this is its worst case).
    """
    import numpy as np

    m = _machine(arch, size, check, nbytes)
    gc.collect()
    tracemalloc.start()
    p = m.spawn()
    pmd = 2 << 20
    a = p.mmap(nbytes + pmd)
    a = (a + pmd - 1) & ~(pmd - 1)
    pages = nbytes // m.page_size
    p.write(a, nbytes, np.arange(1, pages + 1, dtype=np.uint64) if distinct else 1)
    cur1, peak1 = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    c = p.fork()
    cur2, peak2 = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    c.exit()
    return {
        "arch": arch,
        "folio": size,
        "check": check,
        "values": "distinct" if distinct else "one",
        "pages": pages,
        "after_fault_in_bytes_per_page": cur1 / pages,
        "peak_fault_in_bytes_per_page": peak1 / pages,
        # after fork two address spaces map every page
        "after_fork_bytes_per_mapping": cur2 / (2 * pages),
        "peak_fork_bytes_per_mapping": max(peak1, peak2) / (2 * pages),
    }


def fuzz_run(steps: int) -> Result:
    from contpte.workloads.fuzz import FuzzConfig, fuzz

    out: Result = {}
    for variant in ("arm64", "generic"):
        r = fuzz(FuzzConfig(variants=[variant], steps=steps, seed=1, shrink=False))
        out[variant] = {"steps": r.steps, "seconds": r.seconds, "steps_per_second": r.steps_per_second}
        if r.finding is not None:
            out[variant]["finding"] = r.finding.kind
    return out


# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------
def _ratio(x: float | None, y: float | None) -> float | None:
    return x / y if x is not None and y else None


def analyse(doc: Result) -> Result:
    """Ratios to the real fork and the goals."""
    host = {h["folio"]: h for h in doc.get("host", []) if "fork" in h}
    rows = doc.get("sim", [])
    by = {(r["arch"], r["folio"], r["check"]): r for r in rows if "fork" in r}
    for r in rows:
        h = host.get(r["folio"])
        real = h["fork"] if h else None
        r["ratio_to_real_fork"] = {
            k: _ratio(r.get(k), real) for k in ("fault_in", "fork", "exit", "munmap", "fork_reference")
        }
        if h and r.get("fork_first") is not None:
            # first fork against the real first fork
            r["ratio_to_real_fork"]["fork_first"] = _ratio(r["fork_first"], h.get("fork_first"))
        off = by.get((r["arch"], r["folio"], False))
        if r["check"] and off is not None:
            r["check_on_over_off"] = {
                k: _ratio(r.get(k), off.get(k)) for k in ("fault_in", "fork", "fork_first", "exit", "munmap")
            }
    goals: Result = {"fork_le_3x_real": [], "check_on_le_3x_off": [], "bytes_per_page_le_32": []}
    for (arch, folio, check), r in sorted(by.items()):
        if not check:
            x = r["ratio_to_real_fork"]["fork"]
            goals["fork_le_3x_real"].append(
                {"arch": arch, "folio": folio, "ratio": x, "met": x is not None and x <= GOAL_FORK_RATIO}
            )
        else:
            x = r.get("check_on_over_off", {}).get("fork")
            goals["check_on_le_3x_off"].append(
                {"arch": arch, "folio": folio, "ratio": x, "met": x is not None and x <= GOAL_CHECK_RATIO}
            )
    for mrow in doc.get("memory", []):
        # the goal is on what the simulator keeps per mapped page (after
        # fork: two mappings per page); the transient peak is reported too
        x = mrow.get("after_fork_bytes_per_mapping")
        goals["bytes_per_page_le_32"].append(
            {
                "arch": mrow["arch"],
                "folio": mrow["folio"],
                "check": mrow["check"],
                "values": mrow.get("values", "one"),
                "bytes": x,
                "peak_bytes": mrow.get("peak_fork_bytes_per_mapping"),
                "met": x is not None and x <= GOAL_BYTES_PER_PAGE,
            }
        )
    doc["goals"] = goals
    return doc


def _f(x: float | None, fmt: str = "{:.3f}") -> str:
    return "-" if x is None else fmt.format(x)


def markdown(doc: Result) -> str:
    lines = [f"# Simulator speed, {doc['date']}", ""]
    lines.append(
        f"Machine: {doc['machine']['uname']}, {doc['machine']['cpus']} CPUs; size {doc['size']}, "
        f"repeat {doc['repeat']}."
    )
    lines.append("")
    if doc.get("host"):
        lines += [
            "## The real kernel",
            "",
            "| folio | fault-in s | fork s (median) | first fork s | munmap s | folios allocated |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for h in doc["host"]:
            lines.append(
                f"| {h['folio']} | {_f(h.get('fault_in'))} | {_f(h.get('fork'), '{:.4f}')} "
                f"| {_f(h.get('fork_first'), '{:.4f}')} | {_f(h.get('munmap'))} "
                f"| {h.get('anon_fault_alloc', '-')} |"
            )
        lines.append("")
    if doc.get("sim"):
        lines += [
            "## The model (seconds; x = ratio to the real fork of the same folio size)",
            "",
            "| arch | folio | check | fault-in | fork | fork x | first fork | first x | exit | munmap "
            "| fork (kernel-shaped) | check on/off (fork) |",
            "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in doc["sim"]:
            if "error" in r:
                lines.append(
                    f"| {r.get('arch')} | {r.get('folio')} | {r.get('check')} | error: {r['error']} |"
                )
                continue
            rr = r["ratio_to_real_fork"]
            ref = r.get("fork_reference")
            lines.append(
                f"| {r['arch']} | {r['folio']} | {'on' if r['check'] else 'off'} | {_f(r['fault_in'])} "
                f"| {_f(r['fork'], '{:.4f}')} | {_f(rr['fork'], '{:.2f}')} "
                f"| {_f(r.get('fork_first'), '{:.4f}')} | {_f(rr.get('fork_first'), '{:.2f}')} "
                f"| {_f(r['exit'])} | {_f(r['munmap'])} "
                f"| {_f(ref)} | {_f(r.get('check_on_over_off', {}).get('fork'), '{:.2f}')} |"
            )
        lines.append("")
    if doc.get("memory"):
        lines += [
            "## Simulator memory per mapped page (bytes, beyond mem_map and frame contents)",
            "",
            "| arch | folio | check | values written | after fault-in | peak fault-in | after fork (per mapping) "
            "| peak fork |",
            "|---|---|---|---|---:|---:|---:|---:|",
        ]
        for mrow in doc["memory"]:
            if "error" in mrow:
                continue
            lines.append(
                f"| {mrow['arch']} | {mrow['folio']} | {'on' if mrow['check'] else 'off'} "
                f"| {mrow.get('values', 'one')} per page "
                f"| {_f(mrow['after_fault_in_bytes_per_page'], '{:.1f}')} "
                f"| {_f(mrow['peak_fault_in_bytes_per_page'], '{:.1f}')} "
                f"| {_f(mrow['after_fork_bytes_per_mapping'], '{:.1f}')} "
                f"| {_f(mrow['peak_fork_bytes_per_mapping'], '{:.1f}')} |"
            )
        lines.append("")
    if doc.get("fuzz"):
        lines += ["## Fuzz", ""]
        for v, f in doc["fuzz"].items():
            if isinstance(f, dict) and "steps_per_second" in f:
                lines.append(f"- {v}: {f['steps_per_second']:.1f} steps/s ({f['steps']} steps)")
        lines.append("")
    g = doc.get("goals", {})
    if g:
        lines += ["## Goals", ""]
        for row in g.get("fork_le_3x_real", []):
            lines.append(
                f"- fork <= 3x real, {row['arch']} {row['folio']}: {_f(row['ratio'], '{:.2f}')}x "
                f"{'met' if row['met'] else 'MISSED'}"
            )
        for row in g.get("check_on_le_3x_off", []):
            lines.append(
                f"- checker on <= 3x off (fork), {row['arch']} {row['folio']}: {_f(row['ratio'], '{:.2f}')}x "
                f"{'met' if row['met'] else 'MISSED'}"
            )
        for row in g.get("bytes_per_page_le_32", []):
            lines.append(
                f"- <= 32 B per mapped page, {row['arch']} {row['folio']} check {'on' if row['check'] else 'off'} "
                f"({'one value' if row.get('values', 'one') == 'one' else 'a distinct value per page'} written): "
                f"{_f(row['bytes'], '{:.1f}')} B kept {'met' if row['met'] else 'MISSED'} "
                f"(transient peak {_f(row.get('peak_bytes'), '{:.1f}')} B)"
            )
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    global _log_enabled
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    names = ("host", "sim", "fuzz", "memory")
    parser.add_argument("names", nargs="*", help=f"benchmarks to run (default all: {', '.join(names)})")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--size", default="1G", help="memory touched and forked (default 1G)")
    parser.add_argument("--sizes", default=",".join(SIZES), help="folio sizes")
    parser.add_argument("--arches", default="arm64,generic")
    parser.add_argument("--checks", default="off,on")
    parser.add_argument(
        "--reference", action="store_true", help="also time the kernel-shaped fork (checker off)"
    )
    parser.add_argument("--fuzz-steps", type=int, default=1500)
    parser.add_argument(
        "--out", default=str(Path(__file__).parent / "results"), help="results directory ('' = none)"
    )
    parser.add_argument("--json", action="store_true", help="print the JSON document only")
    args = parser.parse_args(argv)
    _log_enabled = not args.json
    todo = args.names or list(names)
    unknown = [n for n in todo if n not in names]
    if unknown:
        print(f"run.py: unknown benchmark(s) {', '.join(unknown)}; have {', '.join(names)}", file=sys.stderr)
        return 2
    nbytes = parse_size(args.size)
    sizes = [s for s in args.sizes.split(",") if s]
    arches = [a for a in args.arches.split(",") if a]
    checks = [c == "on" for c in args.checks.split(",") if c]
    import numpy as np

    date = _dt.datetime.now().strftime("%Y-%m-%d-%H%M")
    doc: Result = {
        "date": date,
        "size": args.size,
        "repeat": args.repeat,
        "machine": {
            "uname": " ".join(platform.uname()[:3]),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "numpy": np.__version__,
        },
    }

    def guarded(fn: Callable[[], Result], **ident: Any) -> Result:
        try:
            return fn()
        except Exception as e:  # one that cannot run says why; the others still run
            return {**ident, "error": f"{type(e).__name__}: {e}"}

    if "host" in todo:
        doc["host"] = []
        for s in sizes:
            r = guarded(lambda s=s: host_run(s, nbytes, max(args.repeat, 5)), folio=s)
            doc["host"].append(r)
            log(f"host {s}: {json.dumps(r)}")
    if "sim" in todo:
        doc["sim"] = []
        for arch in arches:
            for s in sizes:
                for check in checks:
                    r = guarded(
                        lambda arch=arch, s=s, check=check: sim_run(
                            arch, s, check, nbytes, args.repeat, args.reference
                        ),
                        arch=arch,
                        folio=s,
                        check=check,
                    )
                    doc["sim"].append(r)
                    log(f"sim {arch} {s} check={check}: {json.dumps(r)}")
    if "memory" in todo:
        doc["memory"] = []
        for arch in arches:
            for s in ("4K", "64K"):
                for check in checks:
                    for distinct in (False, True):
                        r = guarded(
                            lambda arch=arch, s=s, check=check, d=distinct: memory_run(
                                arch, s, check, nbytes, d
                            ),
                            arch=arch,
                            folio=s,
                            check=check,
                            values="distinct" if distinct else "one",
                        )
                        doc["memory"].append(r)
                        log(f"memory {arch} {s} check={check} distinct={distinct}: {json.dumps(r)}")
    if "fuzz" in todo:
        doc["fuzz"] = guarded(lambda: fuzz_run(args.fuzz_steps))
        log(f"fuzz: {json.dumps(doc['fuzz'])}")
    analyse(doc)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{date}.json").write_text(json.dumps(doc, indent=2) + "\n")
        (out / f"{date}.md").write_text(markdown(doc) + "\n")
        log(f"wrote {out / (date + '.json')} and {out / (date + '.md')}")
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        print(markdown(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
