"""A syscall state machine over the public API, with its own simple model.

``SyscallMachine`` drives one or more ``contpte.Machine``s in lockstep with
the same random sequence of syscalls (spawn, fork, exit, mmap of the four
kinds, write, read, mprotect, munmap, madvise, pin, unpin) inside a small
arena of each process's address space, and checks after every step:

- each machine's outcome (the values read, or the exception: type, errno,
  SIGSEGV address and code) is what the test's own page-granular model
  predicts (``Model``: what each page maps, its protection, and the value
  a process must read there);
- every validator (``check=True`` runs them after every syscall; the
  invariant calls ``m.check()`` once more);
- with several machines (differential tests), everything a process can
  observe agrees: outcomes, pagemap columns present/order/writable/exclusive,
  which (process, address) pairs share a frame, RSS, /proc/pid/maps, the
  mapcount of each mapped page and the refcount of its folio.

An ``InvariantViolation`` (or any other model error) fails the test.  The
test classes live in ``test_syscalls.py`` and ``test_differential.py``.
"""

from __future__ import annotations

import errno
from collections import Counter
from typing import Any

import hypothesis.strategies as st
import numpy as np
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

import contpte
from contpte.mm.shmem import file_initial_value

__all__ = ["SyscallMachine", "Model", "ProcModel"]

PS = 4096
ARENA = 0x10_0000_0000
"""Base of the arena every mapping of the test lives in (2M aligned)."""
ARENA_PAGES = 2048
"""8 MiB: four PMDs, so 2M folios and PMD-straddling ranges both happen."""
MAX_PROCS = 4

# What a page of the model maps.
NONE, ANON, SHANON, FPRIV, FSHARED = range(5)
KIND_FLAGS = {
    ANON: "private|anonymous|fixed",
    SHANON: "shared|anonymous|fixed",
    FPRIV: "private|fixed",
    FSHARED: "shared|fixed",
}
R, W = 1, 2
PROTS = {"none": 0, "r": R, "rw": R | W}
PROT_NAMES = {v: k for k, v in PROTS.items()}

FILES = (("f0", 512, "64K"), ("f1", 256, "16K"))
"""(name, pages, folio size) of the files each machine opens."""

ADVICE = ("dontneed", "free", "hugepage", "nohugepage", "dontfork", "dofork")
SETTINGS = ("always", "madvise", "inherit", "never")


class ProcModel:
    """One process, page by page over the arena."""

    def __init__(self) -> None:
        n = ARENA_PAGES
        self.kind = np.zeros(n, dtype=np.int8)
        self.prot = np.zeros(n, dtype=np.int8)
        self.obj = np.full(n, -1, dtype=np.int64)
        self.oidx = np.zeros(n, dtype=np.int64)
        self.dontfork = np.zeros(n, dtype=bool)
        #: the private value of the page (private mappings), once written
        self.val = np.zeros(n, dtype=np.uint64)
        self.own = np.zeros(n, dtype=bool)
        #: MADV_FREE'd and not written since: the kernel may have reclaimed it (reads 0)
        self.maybe_zero = np.zeros(n, dtype=bool)

    def fork(self) -> ProcModel:
        c = ProcModel()
        for name in ("kind", "prot", "obj", "oidx", "val", "own", "maybe_zero"):
            setattr(c, name, getattr(self, name).copy())
        gone = self.dontfork & (self.kind != NONE)
        c.kind[gone] = NONE
        c.own[gone] = False
        c.maybe_zero[gone] = False
        return c

    def clear(self, s: slice) -> None:
        self.kind[s] = NONE
        self.prot[s] = 0
        self.obj[s] = -1
        self.dontfork[s] = False
        self.own[s] = False
        self.maybe_zero[s] = False


class Model:
    """The test's own prediction of every syscall's outcome."""

    def __init__(self) -> None:
        self.procs: list[ProcModel] = []
        #: object id -> page values (files and shared anonymous objects)
        self.objects: dict[int, np.ndarray] = {}

    def expected(self, p: ProcModel, i: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(value, may-also-be-zero) for pages ``[i, i+n)``, all mapped."""
        s = slice(i, i + n)
        out = np.zeros(n, dtype=np.uint64)
        for j in range(n):
            k = p.kind[i + j]
            if k in (SHANON, FSHARED) or (k == FPRIV and not p.own[i + j]):
                out[j] = self.objects[int(p.obj[i + j])][int(p.oidx[i + j])]
            elif p.own[i + j]:
                out[j] = p.val[i + j]
        return out, p.maybe_zero[s].copy()

    @staticmethod
    def first_fault(p: ProcModel, i: int, n: int, write: bool) -> tuple[int, str] | None:
        """The first page of an access that faults for good, with the SIGSEGV code."""
        for j in range(i, i + n):
            if p.kind[j] == NONE:
                return j, "MAPERR"
            if (write and not p.prot[j] & W) or (not write and not p.prot[j]):
                return j, "ACCERR"
        return None

    def write(self, p: ProcModel, i: int, values: np.ndarray) -> None:
        for j, v in enumerate(values):
            k = p.kind[i + j]
            if k in (SHANON, FSHARED):
                self.objects[int(p.obj[i + j])][int(p.oidx[i + j])] = v
            else:
                p.val[i + j] = v
                p.own[i + j] = True
                p.maybe_zero[i + j] = False

    def cow_private_file(self, p: ProcModel, i: int, n: int) -> None:
        """A write fault without a store (a write pin): private file pages get their own copy."""
        for j in range(i, i + n):
            if p.kind[j] == FPRIV and not p.own[j]:
                p.val[j] = self.objects[int(p.obj[j])][int(p.oidx[j])]
                p.own[j] = True


def _outcome(fn: Any) -> tuple[Any, ...]:
    """Run ``fn``; return ("ok", result) or the expected error as a tuple."""
    try:
        return ("ok", fn())
    except contpte.SegmentationFault as e:
        return ("segv", e.addr, e.code)
    except OSError as e:
        return ("errno", e.errno)


def _same(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    if a[0] != b[0] or len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            if not (isinstance(x, np.ndarray) and isinstance(y, np.ndarray) and np.array_equal(x, y)):
                return False
        elif x != y:
            return False
    return True


def _page_ranges(draw: Any, model_proc: ProcModel | None, mapped_bias: bool) -> tuple[int, int]:
    """A range of pages in the arena.

    With ``mapped_bias``, mostly a range inside (or just overrunning) a run of
    mapped pages, so accesses and syscalls mostly succeed; otherwise a range
    aligned to a page, 16K, 64K or 2M anywhere in the arena.
    """
    if mapped_bias and model_proc is not None and draw(st.integers(0, 3)) < 3:
        mapped = np.nonzero(model_proc.kind != NONE)[0]
        if len(mapped):
            i = int(mapped[draw(st.integers(0, len(mapped) - 1))])
            if draw(st.booleans()):
                a = i & ~15
                if (model_proc.kind[a : i + 1] != NONE).all():
                    i = a
            holes = np.nonzero(model_proc.kind[i:] == NONE)[0]
            run = int(holes[0]) if len(holes) else ARENA_PAGES - i
            n = draw(st.integers(1, run)) if draw(st.integers(0, 4)) < 4 else run + draw(st.integers(0, 20))
            return i, max(1, min(n, ARENA_PAGES - i))
    unit = draw(st.sampled_from([1, 4, 16, 512]))
    maxlen = {1: 40, 4: 64, 16: 96, 512: 1024}[unit]
    i = draw(st.integers(0, ARENA_PAGES // unit - 1)) * unit
    n = draw(st.integers(1, maxlen // unit)) * unit
    return i, min(n, ARENA_PAGES - i)


class SyscallMachine(RuleBasedStateMachine):
    """Syscalls on N machines in lockstep, against the model.  Subclasses set ``configs``."""

    #: keyword arguments of each Machine (arch and variants); memory, mthp, check are added
    configs: tuple[dict[str, Any], ...] = ({"arch": "generic"},)

    def __init__(self) -> None:
        super().__init__()
        self.machines: list[contpte.Machine] = []
        self.model = Model()
        #: per model process: the Process of each machine
        self.procs: list[list[contpte.Process]] = []
        #: per model process, per machine: pfns pinned through it (a multiset)
        self.pins: list[list[Counter[int]]] = []
        #: per model process: the page ranges pinned (to aim unpins at them)
        self.pin_ranges: list[list[tuple[int, int]]] = []
        #: per machine: the File objects (f0, f1), by model object id
        self.files: list[list[Any]] = []
        self.seq = 0

    # -- setup ------------------------------------------------------------------
    @initialize(
        mthp=st.fixed_dictionaries({s: st.sampled_from(SETTINGS) for s in ("16K", "64K", "2M")}),
        thp=st.sampled_from(["always", "madvise", "never"]),
        data=st.data(),
    )
    def boot(self, mthp: dict[str, str], thp: str, data: st.DataObject) -> None:
        for cfg in self.configs:
            m = contpte.Machine(memory="64M", cpus=2, mthp=mthp, thp=thp, check=True, **cfg)
            self.machines.append(m)
            self.files.append([m.open_file(name, pages * PS, folio_size=fs) for name, pages, fs in FILES])
        for obj, (_, pages, _) in enumerate(FILES):
            fid = self.files[0][obj].id
            assert all(fs[obj].id == fid for fs in self.files)
            self.model.objects[obj] = np.array(
                [file_initial_value(fid, i) for i in range(pages)], dtype=np.uint64
            )
        self.spawn(data)

    def _spawn(self) -> None:
        self.procs.append([m.spawn() for m in self.machines])
        self.model.procs.append(ProcModel())
        self.pins.append([Counter() for _ in self.machines])
        self.pin_ranges.append([])

    def run(self, fn: Any) -> tuple[Any, ...]:
        """Run ``fn(machine index)`` on every machine; all outcomes must agree."""
        outs = [_outcome(lambda i=i: fn(i)) for i in range(len(self.machines))]
        for i, o in enumerate(outs[1:], 1):
            assert _same(outs[0], o), (
                f"machines disagree: {self.describe(0)}: {outs[0]!r} vs {self.describe(i)}: {o!r}"
            )
        return outs[0]

    def describe(self, i: int) -> str:
        cfg = self.configs[i]
        return ",".join(f"{k}={v}" for k, v in cfg.items())

    def pick(self, data: st.DataObject) -> int:
        """A process, mostly one that has something mapped."""
        busy = [k for k, pm in enumerate(self.model.procs) if (pm.kind != NONE).any()]
        if busy and data.draw(st.integers(0, 4), label="prefer a process with mappings") < 4:
            return busy[data.draw(st.integers(0, len(busy) - 1), label="proc")]
        return data.draw(st.integers(0, len(self.procs) - 1), label="proc")

    def next_values(self, n: int, data: st.DataObject) -> int | np.ndarray:
        self.seq += 1
        base = self.seq << 16
        if data.draw(st.booleans(), label="distinct values"):
            return np.arange(base, base + n, dtype=np.uint64)
        return base

    # -- processes --------------------------------------------------------------
    @precondition(lambda self: len(self.procs) < MAX_PROCS)
    @rule(data=st.data())
    def spawn(self, data: st.DataObject) -> None:
        """A new process, which maps itself some anonymous memory at once (a heap)."""
        self._spawn()
        self.mmap(data, ANON, "rw", 0, len(self.procs) - 1)

    @precondition(lambda self: 0 < len(self.procs) < MAX_PROCS)
    @rule(data=st.data())
    def fork(self, data: st.DataObject) -> None:
        k = self.pick(data)
        kids: list[contpte.Process] = []
        out = self.run(lambda i: kids.append(self.procs[k][i].fork()))
        assert out[0] == "ok", out
        assert len({c.pid for c in kids}) == 1
        self.procs.append(kids)
        self.model.procs.append(self.model.procs[k].fork())
        self.pins.append([Counter() for _ in self.machines])
        self.pin_ranges.append([])

    @precondition(lambda self: len(self.procs) > 2)
    @rule(data=st.data())
    def exit(self, data: st.DataObject) -> None:
        k = self.pick(data)
        out = self.run(lambda i: self.procs[k][i].exit())
        assert out[0] == "ok", out
        del self.procs[k], self.model.procs[k], self.pins[k], self.pin_ranges[k]

    # -- mappings -----------------------------------------------------------------
    @precondition(lambda self: len(self.procs) > 0)
    @rule(
        data=st.data(),
        kind=st.sampled_from([ANON, ANON, ANON, SHANON]),
        prot=st.sampled_from(["rw", "rw", "rw", "r", "none"]),
    )
    def mmap_anon(self, data: st.DataObject, kind: int, prot: str) -> None:
        self.mmap(data, kind, prot, 0, self.pick(data))

    @precondition(lambda self: len(self.procs) > 0)
    @rule(
        data=st.data(),
        kind=st.sampled_from([FPRIV, FSHARED]),
        prot=st.sampled_from(["rw", "rw", "r", "none"]),
        fobj=st.sampled_from([0, 1]),
    )
    def mmap_file(self, data: st.DataObject, kind: int, prot: str, fobj: int) -> None:
        self.mmap(data, kind, prot, fobj, self.pick(data))

    def mmap(self, data: st.DataObject, kind: int, prot: str, fobj: int, k: int) -> None:
        pm = self.model.procs[k]
        i, n = _page_ranges(data.draw, None, False)
        off = 0
        if kind in (FPRIV, FSHARED):
            fpages = FILES[fobj][1]
            n = min(n, fpages)
            off = data.draw(st.integers(0, fpages - n), label="file page offset")
        addr = ARENA + i * PS

        def call(m: int) -> int:
            f = self.files[m][fobj] if kind in (FPRIV, FSHARED) else None
            return self.procs[k][m].mmap(
                n * PS, prot=prot, flags=KIND_FLAGS[kind], file=f, offset=off * PS, addr=addr
            )

        out = self.run(call)
        assert out == ("ok", addr), out
        s = slice(i, i + n)
        pm.clear(s)
        pm.kind[s] = kind
        pm.prot[s] = PROTS[prot]
        if kind in (FPRIV, FSHARED):
            pm.obj[s] = fobj
            pm.oidx[s] = np.arange(off, off + n)
        elif kind == SHANON:
            obj = len(self.model.objects)
            self.model.objects[obj] = np.zeros(n, dtype=np.uint64)
            pm.obj[s] = obj
            pm.oidx[s] = np.arange(n)

    @precondition(lambda self: len(self.procs) > 0)
    @rule(data=st.data())
    def munmap(self, data: st.DataObject) -> None:
        k = self.pick(data)
        i, n = _page_ranges(data.draw, self.model.procs[k], True)
        out = self.run(lambda m: self.procs[k][m].munmap(ARENA + i * PS, n * PS))
        assert out == ("ok", None), out
        self.model.procs[k].clear(slice(i, i + n))

    @precondition(lambda self: len(self.procs) > 0)
    @rule(data=st.data(), prot=st.sampled_from(["rw", "r", "none"]))
    def mprotect(self, data: st.DataObject, prot: str) -> None:
        k = self.pick(data)
        pm = self.model.procs[k]
        i, n = _page_ranges(data.draw, pm, True)
        out = self.run(lambda m: self.procs[k][m].mprotect(ARENA + i * PS, n * PS, prot))
        # Linux: ENOMEM if the start is unmapped (nothing changes); otherwise the
        # VMAs up to the first hole change and the call still fails with ENOMEM.
        holes = np.nonzero(pm.kind[i : i + n] == NONE)[0]
        changed = n if not len(holes) else int(holes[0])
        pm.prot[i : i + changed] = PROTS[prot]
        assert out == (("ok", None) if changed == n else ("errno", errno.ENOMEM)), out

    @precondition(lambda self: len(self.procs) > 0)
    @rule(data=st.data(), advice=st.sampled_from(ADVICE))
    def madvise(self, data: st.DataObject, advice: str) -> None:
        k = self.pick(data)
        pm = self.model.procs[k]
        i, n = _page_ranges(data.draw, pm, True)
        out = self.run(lambda m: self.procs[k][m].madvise(ARENA + i * PS, n * PS, advice))
        expect: tuple[Any, ...] = ("ok", None)
        for j in range(i, i + n):
            kind = pm.kind[j]
            if kind == NONE:
                expect = ("errno", errno.ENOMEM)
                continue
            if advice == "free" and kind != ANON:
                expect = ("errno", errno.EINVAL)
                break
            if advice == "dontneed" and kind in (ANON, FPRIV):
                pm.own[j] = False
                pm.maybe_zero[j] = False
            elif advice == "free":
                pm.maybe_zero[j] = pm.own[j]
            elif advice in ("dontfork", "dofork"):
                pm.dontfork[j] = advice == "dontfork"
        assert out == expect, out

    # -- accesses -------------------------------------------------------------------
    @precondition(lambda self: len(self.procs) > 0)
    @rule(data=st.data())
    def write(self, data: st.DataObject) -> None:
        k = self.pick(data)
        pm = self.model.procs[k]
        i, n = _page_ranges(data.draw, pm, True)
        value = self.next_values(n, data)
        out = self.run(lambda m: self.procs[k][m].write(ARENA + i * PS, n * PS, value))
        bad = self.model.first_fault(pm, i, n, write=True)
        done = n if bad is None else bad[0] - i
        vals = value if isinstance(value, np.ndarray) else np.full(n, value, dtype=np.uint64)
        self.model.write(pm, i, vals[:done])
        if bad is None:
            assert out == ("ok", None), out
        else:
            assert out == ("segv", ARENA + bad[0] * PS, bad[1]), out

    @precondition(lambda self: len(self.procs) > 0)
    @rule(data=st.data())
    def read(self, data: st.DataObject) -> None:
        k = self.pick(data)
        pm = self.model.procs[k]
        i, n = _page_ranges(data.draw, pm, True)
        out = self.run(lambda m: self.procs[k][m].read(ARENA + i * PS, n * PS))
        bad = self.model.first_fault(pm, i, n, write=False)
        if bad is not None:
            assert out == ("segv", ARENA + bad[0] * PS, bad[1]), out
            return
        assert out[0] == "ok", out
        exp, maybe_zero = self.model.expected(pm, i, n)
        got = out[1]
        ok = (got == exp) | (maybe_zero & (got == 0))
        if not ok.all():
            j = int(np.nonzero(~ok)[0][0])
            raise AssertionError(
                f"pid {self.procs[k][0].pid} read {int(got[j]):#x} at {ARENA + (i + j) * PS:#x}, "
                f"the model expects {int(exp[j]):#x} (kind {pm.kind[i + j]})"
            )

    # -- pins ---------------------------------------------------------------------------
    @precondition(lambda self: len(self.procs) > 0)
    @rule(data=st.data(), write=st.booleans())
    def pin(self, data: st.DataObject, write: bool) -> None:
        k = self.pick(data)
        pm = self.model.procs[k]
        i, n = _page_ranges(data.draw, pm, True)
        n = min(n, 24)
        out = self.run(lambda m: self.procs[k][m].pin(ARENA + i * PS, n * PS, write=write))
        fails = None
        for j in range(i, i + n):
            kind, prot = pm.kind[j], pm.prot[j]
            if kind == NONE or (write and (not prot & W or kind == FSHARED)) or (not write and not prot):
                fails = j
                break
        if write:
            # Pages before the failing one were faulted for write (CoW), then released.
            self.model.cow_private_file(pm, i, (n if fails is None else fails - i))
        if fails is not None:
            assert out == ("errno", errno.EFAULT), out
            return
        assert out == ("ok", None), out
        self.pin_ranges[k].append((i, n))
        for m, procs in enumerate(self.procs[k]):
            pfns = procs.pagemap(ARENA + i * PS, n * PS)["pfn"]
            self.pins[k][m].update(int(x) for x in pfns)

    @precondition(lambda self: len(self.procs) > 0)
    @rule(data=st.data())
    def unpin(self, data: st.DataObject) -> None:
        k = self.pick(data)
        which = None
        if self.pin_ranges[k] and data.draw(st.integers(0, 3), label="unpin a pinned range") < 3:
            which = data.draw(st.integers(0, len(self.pin_ranges[k]) - 1), label="pin")
            i, n = self.pin_ranges[k][which]
            i += data.draw(st.integers(0, n - 1), label="skip")
            n = data.draw(st.integers(1, n), label="pages")
        else:
            i, n = _page_ranges(data.draw, self.model.procs[k], True)
        n = min(n, 24, ARENA_PAGES - i)
        expect = []
        for m, proc in enumerate(self.procs[k]):
            rows = proc.pagemap(ARENA + i * PS, n * PS)
            want = Counter(int(x) for x in rows["pfn"])
            ok = bool(rows["present"].all()) and all(self.pins[k][m][p] >= c for p, c in want.items())
            expect.append(ok)
            if ok:
                self.pins[k][m].subtract(want)
        assert len(set(expect)) == 1, f"pins differ between machines: {expect}"
        out = self.run(lambda m: self.procs[k][m].unpin(ARENA + i * PS, n * PS))
        assert out == (("ok", None) if expect[0] else ("errno", errno.EINVAL)), out
        if expect[0] and which is not None:
            del self.pin_ranges[k][which]

    # -- invariants ------------------------------------------------------------------------
    @invariant()
    def validators_hold(self) -> None:
        for m in self.machines:
            m.check()

    @invariant()
    def maps_match_model(self) -> None:
        for k, procs in enumerate(self.procs):
            pm = self.model.procs[k]
            for m, p in enumerate(procs):
                mapped = np.zeros(ARENA_PAGES, dtype=bool)
                prot = np.zeros(ARENA_PAGES, dtype=np.int8)
                shared = np.zeros(ARENA_PAGES, dtype=bool)
                for start, end, perms, _name in p.maps():
                    assert start >= ARENA and end <= ARENA + ARENA_PAGES * PS, (start, end)
                    s = slice((start - ARENA) // PS, (end - ARENA) // PS)
                    assert not mapped[s].any(), f"overlapping VMAs at {start:#x}"
                    mapped[s] = True
                    prot[s] = (R if perms[0] == "r" else 0) | (W if perms[1] == "w" else 0)
                    shared[s] = perms[3] == "s"
                assert np.array_equal(mapped, pm.kind != NONE), (
                    f"{self.describe(m)}: VMAs differ from the model"
                )
                assert np.array_equal(prot[mapped], pm.prot[mapped]), (
                    f"{self.describe(m)}: VMA protections differ"
                )
                assert np.array_equal(shared[mapped], np.isin(pm.kind[mapped], (SHANON, FSHARED)))

    @invariant()
    def machines_agree(self) -> None:
        if len(self.machines) < 2:
            return
        views = [self._observe(m) for m in range(len(self.machines))]
        for m, v in enumerate(views[1:], 1):
            for key in v:
                a, b = views[0][key], v[key]
                same = np.array_equal(a, b) if isinstance(a, np.ndarray) else a == b
                assert same, f"{key} differs: {self.describe(0)} vs {self.describe(m)}:\n{a!r}\n{b!r}"

    def _observe(self, m: int) -> dict[str, Any]:
        """Everything a process can observe, except raw PFNs (their sharing classes instead)."""
        mach = self.machines[m]
        mem = mach.kernel.memmap
        out: dict[str, Any] = {}
        pfn_of: dict[tuple[int, int], int] = {}
        for k, procs in enumerate(self.procs):
            p = procs[m]
            rows = p.pagemap(ARENA, ARENA_PAGES * PS)
            for col in ("present", "order", "writable", "exclusive"):
                out[f"proc{k}.{col}"] = rows[col].copy()
            out[f"proc{k}.rss"] = p.rss()
            out[f"proc{k}.maps"] = p.maps()
            pres = np.nonzero(rows["present"])[0]
            pfns = rows["pfn"][pres].astype(np.int64)
            out[f"proc{k}.mapcount"] = np.asarray(mem.mapcount)[pfns].astype(np.int64)
            out[f"proc{k}.refcount"] = np.asarray(mem.refcount)[np.asarray(mem.head)[pfns]].astype(np.int64)
            for j, pfn in zip(pres, pfns):
                pfn_of[(k, int(j))] = int(pfn)
        # Sharing classes: each (process, page) named by the first pair mapping the same frame.
        first: dict[int, tuple[int, int]] = {}
        classes = []
        for key in sorted(pfn_of):
            classes.append((key, first.setdefault(pfn_of[key], key)))
        out["sharing"] = classes
        return out
