"""The kernel-invariant validators of one Machine, and their entry points.

Every check compares the kernel's bookkeeping with the validators' own
shadow state, never the other way round: per-frame and per-mm counts derived
from the page tables (``incremental.MapShadow``) and what each process last
wrote (``isolation.ValueShadow``).

Rules (``InvariantViolation.rule``):

- ``mapcount``: each page's mapcount equals the PTEs mapping it in all
  processes; each folio's entire mapcount equals its PMD mappings; no PTE
  maps a frame that is not allocated.
- ``refcount>=mapcount``: a folio holds at least one reference per mapping;
  also at every rmap increase, not only between syscalls
  (``Kernel.rmap_observer``): another CPU may look at a folio as soon as its
  mapcount changed.
- ``rss``: each mm's RSS counters match its tables.
- ``writable-anon-exclusive``: a writable PTE (or PMD) of a private mapping
  maps an anon page that is PageAnonExclusive.
- ``writable-shared``: no page is writable in two places unless every
  mapping of it is shared.
- ``pinned-anon-exclusive``: an anon page pinned with ``pin`` (its frame
  recorded at pin time) that is still mapped is mapped once, and
  PageAnonExclusive: pinned pages are never shared with a child.
- ``pin-mapped``: a page GUP pins is the page its address maps when the
  pin is taken (``pin_page``, through ``Kernel.on_pin_page``): GUP-fast
  must re-read the PTE after grabbing the folio.
- ``isolation``: a process reads exactly what it last wrote there or
  inherited at fork (or the file's current content, or zero); after
  MADV_FREE a page not written since may also read zero (reclaim may have
  discarded it); a write pin of a private file page snapshots the file's
  content.
- ``swap-count``, ``swap-cache``, ``swap-rss``, ``swap-leak``: on a
  machine with swap, the swap device's counts and cache against the swap
  PTEs of every table (``check/swap.py``).
- ``chp-frame``, ``chp-block``, ``chp-cma-leak``, ``chp-count``: on a
  machine with the OnePlus hugepage pool, every frame is in exactly one
  place and the pool's counts add up (``check/chp_pool.py``).
- ``fork-copy``: the child's page tables are a faithful copy of the parent's
  before the fork (``incremental.fork_copy``); where other threads ran at
  a lock break, of the parent's state then; not below a lock break where
  reclaim ran (``fork_rebase``).

When they run (the system layer calls them; see docs/core.md):
``after_syscall`` after every syscall and user access applies the store log
to the shadow and checks what it touched; on any suspect, and for
``run_all`` (``m.check()``), the dense check recounts everything and gives
the verdict, so every verdict is the dense one.

Compiled (docs/core.md).
"""

from __future__ import annotations

from typing import Any

import cython
import numpy as np

from ..counters import counter
from ..errors import InvariantViolation

if not cython.compiled:
    from ..cdefs import U64View, i64, u64
    from ..mm.memmap import folio_test_anon, page_folio
    from ..mm.mm_types import VM_SHARED, MmStruct, Vma
    from .incremental import MapShadow, RmapHook, fork_copy
    from .isolation import ValueShadow
    from .pagemap import page_pfn, page_pfns

__all__ = ["Validators"]

RUNS = cython.declare(i64, counter("check.runs"))
READS_CHECKED = cython.declare(i64, counter("check.isolation_pages"))
_U64_MAX = cython.declare(u64, (1 << 64) - 1)


@cython.cclass
class Validators:
    """All validators of one Machine, with their shadow state.

    ``shadow``: the mapping counts (``MapShadow``); ``values``: pid ->
    ``ValueShadow``; ``files``: file id -> ``ValueShadow`` of what shared
    mappings wrote; ``pins``: pid -> frames pinned (a multiset, as pins nest).
    """

    def __init__(self, machine: Any) -> None:
        self.m = machine
        self.k = machine.kernel
        self.counters = machine.counters
        self.per = self.k.arch.PTRS_PER_PTE
        self.page_shift = self.k.page_shift
        self.page_size = 1 << self.k.page_shift
        self.shadow = MapShadow(self.k)
        self.values: dict[int, ValueShadow] = {}
        self.files: dict[int, ValueShadow] = {}
        self.pins: dict[int, list[int]] = {}
        #: MADV_DONTNEEDs in progress: [process, start, end, zapped up to].
        self.zapping: list[list[Any]] = []
        #: ASIDs of mms that exited since the last sync
        self.retired: list[int] = []
        #: the parent's level-2 block indices just before a fork
        self.pre_pmds: set[int] | None = None
        #: While a fork runs with other threads' steps at its lock breaks
        #: (``fork_rebase``): per level-2 index of the parent, the
        #: descriptors each entry had when fork copied it (numpy, one table).
        self.fork_base: dict[int, Any] | None = None
        #: Writes other threads made during a fork (at its lock breaks): (pid, addr, pages).
        self.fork_racy: list[tuple[int, int, int]] = []
        #: fork-copy does not compare below this address (reclaim ran in the fork)
        self.fork_skip_below = 0
        #: ``mm.shmem.file_initial_value`` (imported on first use)
        self.initial: Any = None
        self.hook: RmapHook | None = None
        self.enabled = bool(machine.check_enabled)
        #: The swap validator (check/swap.py), on machines with swap.
        self.swap: Any = None
        if getattr(machine, "swap", None) is not None:
            from .swap import SwapCheck

            self.swap = SwapCheck(machine)
        #: The hugepage-pool validator (check/chp_pool.py), on machines with the OnePlus pool.
        self.chp: Any = None
        if self.k.chp_pool is not None:
            from .chp_pool import ChpPoolCheck

            self.chp = ChpPoolCheck(machine)
        #: The OnePlus block validator (check/cont_pte.py), under policy="oneplus".
        self.cont_pte: Any = None
        if self.k.oneplus:
            from .cont_pte import ContPteCheck

            self.cont_pte = ContPteCheck(machine)
        if self.enabled:
            self.shadow.start()
            self.hook = RmapHook(self.shadow)
            self.k.rmap_observer = self.hook
            self.k.on_pin_page = self.pin_page
            self.k.arch.pool.new_epoch()  # start the store log

    def nbytes(self) -> int:
        """Memory the validators keep (approximately): shadows and isolation tables."""
        n = int(self.shadow.nbytes())
        for sh in self.values.values():
            n += sh.nbytes()
        for sh in self.files.values():
            n += sh.nbytes()
        return n

    # -- structural validators ----------------------------------------------------
    def after_syscall(self, p: Any, what: str) -> None:
        """After every syscall and user access: check what it touched.

        ``p``: the process (None for machine-wide work such as reclaim);
        ``what``: the syscall's name (diagnostics only).
        """
        self.counters.inc(RUNS, 1)
        sh: MapShadow = self.shadow
        sh.sync()
        if self.retired:
            for asid in self.retired:
                sh.retire(asid)
            self.retired = []
        if sh.check():
            self._dense()
        if self.swap is not None:
            self.swap.after_syscall(what == "exit")
        if self.chp is not None:
            self.chp.after_syscall(False)
        if self.cont_pte is not None:
            self.cont_pte.after_syscall()

    def run_all(self) -> None:
        """Run every structural validator from scratch (``m.check()``)."""
        self.counters.inc(RUNS, 1)
        self.retired = []
        self._dense()
        if self.swap is not None:
            self.swap.after_syscall(True)
        if self.chp is not None:
            self.chp.after_syscall(True)
        if self.cont_pte is not None:
            self.cont_pte.after_syscall()

    def _dense(self) -> None:
        got = self.shadow.dense(self.pins)
        if got is not None:
            raise got

    # -- isolation shadow hooks ------------------------------------------------
    @cython.cfunc
    def _values(self, pid: i64) -> ValueShadow:
        sh = self.values.get(pid)
        if sh is None:
            sh = ValueShadow(self.per)
            self.values[pid] = sh
        return sh

    def on_spawn(self, p: Any) -> None:
        """A new process (empty address space)."""
        self.values[p.pid] = ValueShadow(self.per)

    def before_fork(self, parent: Any) -> None:
        """Just before ``dup_mmap``: the store log then holds exactly the fork's writes."""
        if not self.enabled:
            return
        self.shadow.sync()
        self.pre_pmds = set(parent.mm.space.pmds)
        self.fork_base = None
        self.fork_racy = []
        self.fork_skip_below = 0

    def fork_rebase(self, mm: Any, addr: int, reclaimed: bool = False) -> None:
        """Other threads ran at a lock break of fork at ``addr``: what fork copies from here is the parent's now.

        ``fork-copy`` compares the child with the parent as fork read it:
        before ``addr`` (copied already) the state before the fork, from
        ``addr`` on the current one (a page fault of another thread on a
        VMA fork has not reached yet, a hardware access/dirty update).  The
        store log itself is left alone: the mapcount shadow needs it.
        ``reclaimed``: reclaim ran there; its rmap walk also changed what
        fork had copied already, in the parent and the child, and not
        always alike (a lazyfree folio's clean pages discarded in the first
        mm walked, the walk stopped at a dirty one), so below ``addr``
        fork-copy no longer compares (the mapcount, RSS, swap and value
        validators still do).
        """
        if not self.enabled or self.pre_pmds is None:
            return
        if reclaimed:
            self.fork_skip_below = max(self.fork_skip_below, addr)
        pool = self.m.hw.pool
        space = mm.space
        per = self.per
        pmd_shift = self.page_shift + (per.bit_length() - 1)
        base = self.fork_base if self.fork_base is not None else {}
        e = np.asarray(pool.e)
        for ent in pool.log:
            if ent.asid != space.asid:
                continue
            idx = ent.pmd_index
            t0 = idx << pmd_shift
            if t0 + (per << self.page_shift) <= addr:
                continue
            cur = base.get(idx)
            if cur is None:
                cur = np.zeros(per, dtype=np.uint64)
                if ent.old_at >= 0:
                    cur[:] = np.asarray(pool.log_old)[ent.old_at * per : (ent.old_at + 1) * per]
            first = max(0, (addr - t0) >> self.page_shift)
            s = space.pte_table(idx)
            if s >= 0:
                cur[first:] = e[s * per + first : (s + 1) * per]
            else:
                cur[first:] = 0
            base[idx] = cur
        self.fork_base = base

    def on_fork(self, parent: Any, child: Any) -> None:
        """After ``dup_mmap``: the child inherits what the parent would read; ``fork-copy``."""
        sh = self._values(parent.pid).copy()
        # VM_DONTCOPY ranges are not in the child: forget them.
        ps = self.page_shift
        child_ranges = [(v.vm_start, v.vm_end) for v in child.mm.vmas]
        for v in parent.mm.vmas:
            if (v.vm_start, v.vm_end) not in child_ranges and not any(
                s <= v.vm_start and v.vm_end <= e for s, e in child_ranges
            ):
                sh.forget(v.vm_start >> ps, (v.vm_end - v.vm_start) >> ps)
        self.values[child.pid] = sh
        if self.fork_racy:
            self._fork_racy_copies(parent, child, sh)
        pre = self.pre_pmds
        self.pre_pmds = None
        base = self.fork_base
        self.fork_base = None
        skip = self.fork_skip_below
        self.fork_skip_below = 0
        if pre is not None and self.enabled:
            fork_copy(self.shadow, parent.mm, child.mm, pre, base, skip)

    def _fork_racy_copies(self, parent: Any, child: Any, sh: ValueShadow) -> None:
        """Pages another thread wrote during the fork that the child got as a copy: it holds what was copied.

        fork copies a maybe-pinned anon page at once (``copy_present_page``);
        a write racing with the fork lands in the parent's page before or
        after that copy, and the child legitimately has either value.  A page
        the child shares with the parent, or does not map, keeps the
        parent's value (a write that raced with its copy went to the shared
        frame, or fork copied the page after it).
        """
        data = self.m.hw.memory.data
        ps = self.page_shift
        for pid, addr, n in self.fork_racy:
            if pid != parent.pid:
                continue
            for i in range(n):
                va = addr + (i << ps)
                v = child.mm.vma_lookup(va)
                if v is None or v.vm_flags & VM_SHARED:
                    continue
                cpfn = page_pfn(child.mm, va)
                if cpfn >= 0 and cpfn != page_pfn(parent.mm, va):
                    sh.set(va >> ps, 1, int(data[cpfn]))
        self.fork_racy = []

    def on_exit(self, p: Any) -> None:
        """The process exited (its tables are freed; ``after_syscall`` follows)."""
        sh = self.values.pop(p.pid, None)
        if sh is not None:
            sh.release()
        for pfn in self.pins.pop(p.pid, []):
            self.shadow.pin(pfn, -1)
        self.retired.append(p.mm.space.asid)

    def on_madvise_free(self, p: Any, addr: int, length: int) -> None:
        """MADV_FREE: private anon pages not written again may read zero from now on."""
        ps = self.page_size
        sh = self._values(p.pid)
        n = (length + ps - 1) // ps
        for v in p.mm.vmas_in(addr, addr + n * ps):
            if v.vm_file is not None or v.vm_flags & VM_SHARED:
                break  # madvise stops with EINVAL at the first VMA MADV_FREE refuses
            s, e = max(addr, v.vm_start), min(addr + n * ps, v.vm_end)
            sh.mark_lazy(s >> self.page_shift, (e - s) >> self.page_shift, True)

    def on_unmap(self, p: Any, addr: int, length: int, dontneed: bool = False) -> None:
        """The range lost its pages (munmap, MADV_DONTNEED, a new mmap over it)."""
        ps = self.page_size
        self._values(p.pid).forget(addr >> self.page_shift, (length + ps - 1) // ps)

    def dontneed_begin(self, p: Any, addr: int, length: int) -> None:
        """MADV_DONTNEED of ``[addr, addr+length)`` starts (``zap_progress`` follows it)."""
        ps = self.page_size
        self.zapping.append([p, addr, addr + (length + ps - 1) // ps * ps, addr])

    def zap_progress(self, mm: Any, upto: int) -> None:
        """MADV_DONTNEED's zap is at ``upto`` (a preemption point): the PTEs before it are clear.

        Other threads may run there: what they write to those pages (a
        fault maps a new page) comes after the zap, what they write to the
        pages after ``upto`` before it.  The zap has not flushed the TLBs
        yet and frees the pages only after it does (``tlb_finish_mmu``), so
        until madvise returns a read of a cleared page may still see its
        old value through a cached translation, or zero through a new
        fault: both are Linux's behaviour for a program that races with its
        own MADV_DONTNEED.  Those pages are marked lazy here (they may read
        their old value or what a new fault maps: zero, or in a private
        file mapping the file's page) and forgotten at ``dontneed_end``
        unless written again.
        """
        for z in reversed(self.zapping):
            if z[0].mm is mm:
                hi = min(upto, z[2])
                if hi > z[3]:
                    ps = self.page_size
                    self._values(z[0].pid).mark_lazy(z[3] // ps, (hi - z[3]) // ps, True)
                    z[3] = hi
                return

    def dontneed_end(self, p: Any) -> int:
        """MADV_DONTNEED returns; where its zap was last reported (``dontneed_begin``'s addr if never).

        The TLBs are flushed now: the pages ``zap_progress`` passed that no
        thread wrote again read zero from here on.
        """
        for i in range(len(self.zapping) - 1, -1, -1):
            if self.zapping[i][0] is p:
                z = self.zapping.pop(i)
                ps = self.page_size
                sh = self._values(p.pid)
                vpn = z[1] // ps
                n = (int(z[3]) - z[1]) // ps
                if n > 0:
                    lazy = sh.get_lazy(vpn, n)
                    j = 0
                    while j < n:
                        if lazy[j]:
                            k = j
                            while k < n and lazy[k]:
                                k += 1
                            self.on_unmap(p, (vpn + j) * ps, (k - j) * ps, dontneed=True)
                            j = k
                        else:
                            j += 1
                return int(z[3])
        return -1

    def mremap_begin(self, p: Any, addr: int, npages: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Before an mremap: what the old range's pages should read (values, owned, lazyfree)."""
        sh = self._values(p.pid)
        vpn = addr >> self.page_shift
        vals, own = sh.get(vpn, npages)
        return vals, own, sh.get_lazy(vpn, npages)

    def on_mremap_move(
        self, p: Any, saved: tuple[np.ndarray, np.ndarray, np.ndarray] | None, old: int, new: int, npages: int
    ) -> None:
        """mremap moved the first ``npages`` pages of ``old`` to ``new`` (their PTEs went along).

        The old range reads what an unfaulted page reads from now on (it is
        unmapped, or kept empty by MREMAP_DONTUNMAP); the new range reads
        what the old one did, MADV_FREE state included.  Shared mappings
        are followed by file index already.
        """
        sh = self._values(p.pid)
        ov = old >> self.page_shift
        nv = new >> self.page_shift
        sh.forget(ov, npages)
        if saved is None:
            return
        vals, own, lazy = saved
        i = 0
        while i < npages:
            if not own[i]:
                i += 1
                continue
            j = i
            while j < npages and own[j]:
                j += 1
            sh.set(nv + i, j - i, np.ascontiguousarray(vals[i:j]))
            i = j
        for k in np.nonzero(lazy[:npages])[0]:
            sh.mark_lazy(nv + int(k), 1, True)

    # -- pins ----------------------------------------------------------------------
    def pin_page(self, mm: Any, addr: int, pfn: int) -> None:
        """GUP pinned ``pfn`` for ``addr`` (``Kernel.on_pin_page``): it must be the page mapped there now.

        GUP-fast reads the PTE without a lock and grabs the folio after: it
        re-reads the PTE so that a pin it keeps is of the page still mapped
        (the slow path holds the PTL).  A pin of a page the address no longer
        maps (unmapped, replaced, reallocated elsewhere) is ``pin-mapped``.
        """
        got = page_pfn(mm, addr)
        if got != pfn:
            raise InvariantViolation(
                "pin-mapped",
                f"GUP pinned pfn {pfn:#x} for {addr:#x}, which maps "
                + ("nothing" if got < 0 else f"pfn {got:#x}")
                + " now: the pin is not of the page mapped there",
                addr,
            )

    def on_pin(
        self, p: Any, addr: int, npages: int, write: bool = True, pfns: list[int] | None = None
    ) -> None:
        """``pin`` took long-term pins: ``pfns``, the pages GUP returned (each
        checked by ``pin_page`` when taken), or the present pages of the range."""
        if pfns is None:
            pfns = page_pfns(p.mm, addr, npages)
        self.pins.setdefault(p.pid, []).extend(pfns)
        for pfn in pfns:
            self.shadow.pin(pfn, 1)
        if write:
            # A write pin of a private file mapping breaks CoW (FOLL_WRITE):
            # those pages are now private snapshots of the file's content.
            self._gup_broke_cow(p, addr, npages, False)

    def on_pin_failed(self, p: Any, addr: int, npages: int, write: bool = True) -> None:
        """``pin`` failed part-way (an errno): nothing stays pinned, but the
        faults it took are not undone (as in Linux), so a write pin broke CoW
        on the private file pages it reached before failing."""
        if write:
            self._gup_broke_cow(p, addr, npages, True)

    def _gup_broke_cow(self, p: Any, addr: int, npages: int, faulted_only: bool) -> None:
        """Private file pages of the range that GUP's write faults copied keep
        the file's content of now (the copy happened in this syscall, which
        wrote nothing).  ``faulted_only``: only the pages now mapped by an
        anon copy that the process had not written (the others were not
        reached)."""
        sh = self._values(p.pid)
        ps = self.page_size
        mem = self.k.memmap
        for v, i, c in self._segments(p, addr, npages, faulted_only):
            if v.vm_file is None or v.vm_flags & VM_SHARED:
                continue
            a0 = addr + i * ps
            vpn = a0 >> self.page_shift
            first = v.linear_page_index(a0)
            for j in range(c):
                if sh.state(vpn + j) & 1:
                    continue
                if faulted_only:
                    pf = page_pfn(p.mm, a0 + j * ps)
                    if pf < 0 or not folio_test_anon(mem, page_folio(mem, pf)):
                        continue
                sh.set(vpn + j, 1, np.full(1, self._file_value(v.vm_file, first + j), dtype=np.uint64))

    def on_unpin(self, p: Any, pfns: list[int]) -> None:
        """``unpin`` released these pins."""
        mine = self.pins.get(p.pid, [])
        for pfn in pfns:
            if pfn in mine:
                mine.remove(pfn)
                self.shadow.pin(pfn, -1)

    # -- accesses --------------------------------------------------------------------
    def _segments(
        self, p: Any, addr: int, npages: int, upto_hole: bool = False
    ) -> list[tuple[Any, int, int]]:
        """(vma, first page position, count) covering the accessed pages
        (``upto_hole``: those before the first page outside any VMA)."""
        ps = self.page_size
        out = []
        i = 0
        while i < npages:
            a = addr + i * ps
            v = p.mm.vma_lookup(a)
            if v is None:
                if upto_hole:
                    break
                raise InvariantViolation(
                    "isolation", f"pid {p.pid}: access at {a:#x} succeeded outside any VMA", a
                )
            c = min(npages - i, (v.vm_end - a) // ps)
            out.append((v, i, c))
            i += c
        return out

    def on_write(self, p: Any, addr: i64, npages: i64, value: Any) -> None:
        """The process wrote ``value`` (an int, or one per page) to ``npages`` pages."""
        sh: ValueShadow = self._values(p.pid)
        if self.pre_pmds is not None and self.m.sched is not None and self.m.sched.stack:
            self.fork_racy.append((p.pid, addr, npages))  # another thread, during a fork
        mm: MmStruct = p.mm
        arr: cython.bint = isinstance(value, np.ndarray)
        i: i64 = 0
        c: i64
        a: i64
        v: Vma
        while i < npages:
            a = addr + (i << self.page_shift)
            got = mm.vma_lookup(a)
            if got is None:
                self._outside(p, a)
            v = got
            c = min(npages - i, (v.vm_end - a) >> self.page_shift)
            val = value[i : i + c] if arr else value
            if v.vm_flags & VM_SHARED:
                f = v.vm_file
                fsh = self.files.get(f.id)
                if fsh is None:
                    fsh = self.files[f.id] = ValueShadow(self.per)
                cython.cast(ValueShadow, fsh).set(v.linear_page_index(a), c, val)
            else:
                sh.set(a >> self.page_shift, c, val)
            i += c

    def _outside(self, p: Any, a: int) -> None:
        raise InvariantViolation("isolation", f"pid {p.pid}: access at {a:#x} succeeded outside any VMA", a)

    @cython.cfunc
    @cython.exceptval(-1, check=True)
    def _file_value(self, f: object, idx: i64) -> u64:
        """What page ``idx`` of file ``f`` holds now: written through a shared mapping, or initial."""
        fsh = self.files.get(f.id)  # type: ignore[attr-defined]
        if fsh is not None and cython.cast(ValueShadow, fsh).state(idx) & 1:
            return cython.cast(ValueShadow, fsh).last
        if f.shmem and not f.written:  # type: ignore[attr-defined]
            return 0  # shmem starts zeroed; a tmpfs file written whole holds the initial values
        if self.initial is None:
            from ..mm.shmem import file_initial_value

            self.initial = file_initial_value
        return cython.cast(u64, int(self.initial(f.id, idx)) & _U64_MAX)  # type: ignore[attr-defined]

    def on_read(self, p: Any, addr: i64, got: np.ndarray) -> None:
        """The process read ``got`` (one value per page) from ``addr``."""
        n: i64 = len(got)
        self.counters.inc(READS_CHECKED, n)
        sh: ValueShadow = self._values(p.pid)
        mm: MmStruct = p.mm
        g: U64View
        try:
            g = got
        except (ValueError, TypeError):  # not a contiguous u64 array
            g = np.ascontiguousarray(got, dtype=np.uint64)
        i: i64 = 0
        c: i64
        a: i64
        v: Vma
        while i < n:
            a = addr + (i << self.page_shift)
            found = mm.vma_lookup(a)
            if found is None:
                self._outside(p, a)
            v = found
            c = min(n - i, (v.vm_end - a) >> self.page_shift)
            self._check_read(p, sh, v, a, g, i, c)
            i += c

    @cython.cfunc
    def _check_read(self, p: object, sh: ValueShadow, v: Vma, a0: i64, got: U64View, g0: i64, c: i64) -> None:
        """The isolation check of ``c`` pages read from ``a0`` in VMA ``v``."""
        shared: cython.bint = (v.vm_flags & VM_SHARED) != 0
        f = v.vm_file
        first: i64 = v.linear_page_index(a0) if f is not None else 0
        vpn: i64 = a0 >> self.page_shift
        j: i64
        st: i64
        exp: u64
        nbad: i64 = 0
        bad_j: i64 = -1
        bad_exp: u64 = 0
        for j in range(c):
            if shared:
                exp = self._file_value(f, first + j)
            else:
                st = sh.state(vpn + j)
                if st & 1:
                    exp = sh.last
                elif f is None:
                    exp = 0
                else:
                    exp = self._file_value(f, first + j)
                if st == 3 and got[g0 + j] != exp:
                    if f is None:
                        if got[g0 + j] == 0:
                            # Discarded by reclaim after MADV_FREE: zero from now on.
                            exp = 0
                            sh.set(vpn + j, 1, 0)
                    elif got[g0 + j] == self._file_value(f, first + j):
                        # A private file page a concurrent MADV_DONTNEED's zap
                        # passed (zap_progress): a new fault maps the file's
                        # page again, which it reads from now on.
                        exp = got[g0 + j]
                        sh.forget(vpn + j, 1)
            if got[g0 + j] != exp:
                nbad += 1
                if bad_j < 0:
                    bad_j = j
                    bad_exp = exp
        if nbad:
            va: i64 = a0 + (bad_j << self.page_shift)
            val: u64 = got[g0 + bad_j]
            pid = p.pid  # type: ignore[attr-defined]
            who = ", ".join(
                str(q)
                for q, s in self.values.items()
                if q != pid and cython.cast(ValueShadow, s).contains(val)
            )
            raise InvariantViolation(
                "isolation",
                f"pid {pid} read {val:#x} at {va:#x}, expected {bad_exp:#x}"
                + (f" (the value pid(s) {who} wrote)" if who else "")
                + f"; {nbad} page(s) wrong in this access",
                va,
            )


# C constants are invisible to Python importers: publish their values.
if cython.compiled:
    globals().update(RUNS=RUNS, READS_CHECKED=READS_CHECKED)
