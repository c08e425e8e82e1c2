"""A hand-built machine for the validators' unit tests: kernel state without the system layer.

``World`` holds a descriptor pool, an arch backend, a ``Kernel`` and the
``Validators``, and offers the few kernel-like operations the tests need,
each written directly (PTE stores through the pool, rmap through
``mm/rmap.py``, RSS through the mm): fault-in of anon folios, fork (copy,
write-protect, rmap dup), CoW of one page, zap, pins and user accesses
(frame contents in ``data``).  It keeps every invariant the validators
check, so a test can break one behind its back.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import contpte.system.machine  # noqa: F401  (every module: its counters declared before a Counters exists)
from contpte.arch import make_arch
from contpte.check.validators import Validators
from contpte.counters import Counters
from contpte.hw.hardware import Hardware
from contpte.mm.kernel import Kernel
from contpte.mm.memmap import GUP_PIN_COUNTING_BIAS, PG_anon_exclusive
from contpte.mm.mm_types import (
    MM_ANONPAGES,
    VM_MAYREAD,
    VM_MAYWRITE,
    VM_READ,
    VM_SHARED,
    VM_WRITE,
    MmStruct,
    Vma,
)
from contpte.mm.rmap import (
    RMAP_EXCLUSIVE,
    anon_vma_prepare,
    folio_add_new_anon_rmap,
    folio_remove_rmap_ptes,
    folio_try_dup_anon_rmap_ptes,
)

PAGE = 4096
RW = VM_READ | VM_WRITE | VM_MAYREAD | VM_MAYWRITE


class Proc:
    """What the validators read of a process: ``pid`` and ``mm``."""

    def __init__(self, pid: int, mm: MmStruct) -> None:
        self.pid = pid
        self.mm = mm

    def __repr__(self) -> str:
        return f"<Proc {self.pid}>"


class World:
    def __init__(self, arch: str = "arm64", frames: int = 1 << 14, check: bool = True) -> None:
        self.counters = Counters()
        # the hardware without its rule checker: the tests write descriptors directly
        hw = Hardware(
            frames, fmt="vmsa" if arch == "arm64" else "flat", counters=self.counters, checker=False
        )
        self.hw = hw
        self.pool = hw.pool
        self.memory = hw.memory
        self.arch = make_arch(arch, hw)
        self.k = Kernel(hw, self.arch, self.counters)
        self.check_enabled = check
        self.kernel = self.k
        self.v = Validators(self)
        self.procs: dict[int, Proc] = {}
        self._asid = 1

    # -- processes ---------------------------------------------------------------
    def spawn(self) -> Proc:
        pid = self._asid
        space = self.hw.new_space(self._asid)
        self._asid += 1
        mm = MmStruct(self.k, space, pid)
        self.k.mms.append(mm)
        p = Proc(pid, mm)
        self.procs[pid] = p
        self.v.on_spawn(p)
        return p

    def mmap(self, p: Proc, addr: int, length: int, flags: int = RW) -> Vma:
        v = Vma(p.mm, addr, addr + length, flags, self.arch.vm_get_page_prot(flags & 0xF), addr >> 12)
        p.mm.vmas.append(v)
        p.mm.vmas.sort(key=lambda x: x.vm_start)
        self.v.on_unmap(p, addr, length)
        return v

    def ptep(self, p: Proc, va: int) -> int:
        space = p.mm.space
        s = space.alloc_pte_table(va >> space.pmd_shift)
        return (s << self.pool.shift) | ((va >> 12) & (self.pool.ptrs_per_pte - 1))

    def pte(self, p: Proc, va: int) -> int:
        ptep = p.mm.space.pte_ptr(va)
        return 0 if ptep < 0 else self.pool.peek(ptep)

    # -- kernel-like operations ----------------------------------------------------------
    def fault_anon(self, p: Proc, va: int, order: int = 0, value: int = 0) -> int:
        """A write fault that maps a new exclusive anon folio of ``order`` at ``va`` (aligned)."""
        vma = p.mm.vma_lookup(va)
        assert vma is not None
        anon_vma_prepare(vma)
        folio = self.k.folio_alloc(order, True)
        assert folio >= 0
        nr = 1 << order
        self.k.memmap.refcount[folio] += nr - 1  # one reference per mapping, before the rmap
        folio_add_new_anon_rmap(folio, vma, va, RMAP_EXCLUSIVE)
        a = self.arch
        for i in range(nr):
            pte = a.pte_mkdirty(a.pte_mkwrite(a.pte_mkyoung(a.pfn_pte(folio + i, vma.vm_page_prot))))
            self.pool.store(self.ptep(p, va + i * PAGE), pte)
        p.mm.add_mm_counter(MM_ANONPAGES, nr)
        self.memory.data[folio : folio + nr] = value
        self.v.on_write(p, va, nr, value)
        return folio

    def fork(self, p: Proc, plant: Any = None) -> Proc:
        """dup_mmap: every present PTE copied and write-protected in both, rmap and refs
        duplicated; a pinned exclusive page is copied for the child (``copy_present_page``).
        ``plant(parent, child)`` runs after the copy, before the validators hear of it."""
        self.v.before_fork(p)
        c = self.spawn()
        a = self.arch
        mem = self.k.memmap
        for v in p.mm.vmas:
            cv = v.copy(c.mm)
            c.mm.vmas.append(cv)
            for va in range(v.vm_start, v.vm_end, PAGE):
                pte = self.pte(p, va)
                if not pte or not a.pte_present(pte):
                    continue
                pfn = a.pte_pfn(pte)
                head = int(mem.head[pfn])
                mem.refcount[head] += 1
                if folio_try_dup_anon_rmap_ptes(head, pfn, 1, cv, v) != 0:
                    mem.refcount[head] -= 1
                    new = self.k.folio_alloc(0, False)
                    folio_add_new_anon_rmap(new, cv, va, RMAP_EXCLUSIVE)
                    self.memory.data[new] = self.memory.data[pfn]
                    self.pool.store(self.ptep(c, va), a.pfn_pte(new, a.pte_pgprot(pte)))
                    c.mm.add_mm_counter(MM_ANONPAGES, 1)
                    continue
                if not v.vm_flags & VM_SHARED:
                    pte = a.pte_wrprotect(pte)
                    self.pool.store(p.mm.space.pte_ptr(va), pte)
                self.pool.store(self.ptep(c, va), a.pte_mkold(pte))
                c.mm.add_mm_counter(MM_ANONPAGES, 1)
        if plant is not None:
            plant(p, c)
        self.v.on_fork(p, c)
        self.v.after_syscall(p, "fork")
        return c

    def pin(self, p: Proc, va: int, n: int = 1) -> list[int]:
        """FOLL_PIN | FOLL_LONGTERM of present pages (GUP_PIN_COUNTING_BIAS / pincount)."""
        mem = self.k.memmap
        pfns = []
        for i in range(n):
            pfn = self.arch.pte_pfn(self.pte(p, va + i * PAGE))
            head = int(mem.head[pfn])
            if mem.order[head]:
                mem.pincount[head] += 1
                mem.refcount[head] += 1
            else:
                mem.refcount[head] += GUP_PIN_COUNTING_BIAS
            pfns.append(pfn)
        p.mm.has_pinned = True
        self.v.on_pin(p, va, n, True)
        self.v.after_syscall(p, "pin")
        return pfns

    def map_pmd(self, p: Proc, va: int) -> int:
        """A PMD-mapped anon THP at ``va`` (PMD aligned)."""
        a = self.arch
        vma = p.mm.vma_lookup(va)
        anon_vma_prepare(vma)
        folio = self.k.folio_alloc(a.HPAGE_PMD_ORDER, True)
        folio_add_new_anon_rmap(folio, vma, va, RMAP_EXCLUSIVE, True)
        pte = a.pte_mkdirty(a.pte_mkwrite(a.pte_mkyoung(a.pfn_pte(folio, vma.vm_page_prot))))
        p.mm.space.pmd_store(va >> a.PMD_SHIFT, a.pte_pmd(pte))
        p.mm.add_mm_counter(MM_ANONPAGES, a.HPAGE_PMD_NR)
        return folio

    def zap(self, p: Proc, va: int, n: int = 1) -> None:
        """Unmap ``n`` pages (MADV_DONTNEED): clear, rmap, RSS, drop the references."""
        a = self.arch
        mem = self.k.memmap
        for i in range(n):
            ptep = p.mm.space.pte_ptr(va + i * PAGE)
            pte = self.pool.peek(ptep) if ptep >= 0 else 0
            if not pte:
                continue
            pfn = a.pte_pfn(pte)
            head = int(mem.head[pfn])
            self.pool.store(ptep, 0)
            vma = p.mm.vma_lookup(va + i * PAGE)
            folio_remove_rmap_ptes(head, pfn, 1, vma)
            p.mm.add_mm_counter(MM_ANONPAGES, -1)
            self.k.folio_put(head, 1)
        self.v.on_unmap(p, va, n * PAGE, True)

    def cow(self, p: Proc, va: int, value: int) -> int:
        """A write to a write-protected shared page: copy to a new exclusive page."""
        a = self.arch
        mem = self.k.memmap
        ptep = p.mm.space.pte_ptr(va)
        old = self.pool.peek(ptep)
        opfn = a.pte_pfn(old)
        vma = p.mm.vma_lookup(va)
        new = self.k.folio_alloc(0, False)
        folio_add_new_anon_rmap(new, vma, va, RMAP_EXCLUSIVE)
        self.pool.store(ptep, a.pte_mkdirty(a.pte_mkwrite(a.pfn_pte(new, vma.vm_page_prot))))
        ohead = int(mem.head[opfn])
        folio_remove_rmap_ptes(ohead, opfn, 1, vma)
        self.k.folio_put(ohead, 1)
        self.memory.data[new] = value
        self.v.on_write(p, va, 1, value)
        return new

    def write(self, p: Proc, va: int, value: int, npages: int = 1) -> None:
        """A user write of already-writable pages (frames written, shadow told)."""
        for i in range(npages):
            pfn = self.arch.pte_pfn(self.pte(p, va + i * PAGE))
            self.memory.data[pfn] = value
        self.v.on_write(p, va, npages, value)
        self.v.after_syscall(p, "write")

    def read(self, p: Proc, va: int, npages: int = 1) -> np.ndarray:
        out = np.array(
            [self.memory.data[self.arch.pte_pfn(self.pte(p, va + i * PAGE))] for i in range(npages)],
            dtype=np.uint64,
        )
        self.v.on_read(p, va, out)
        self.v.after_syscall(p, "read")
        return out

    def exit(self, p: Proc) -> None:
        for vma in list(p.mm.vmas):
            self.zap(p, vma.vm_start, (vma.vm_end - vma.vm_start) // PAGE)
        for idx in list(p.mm.space.tables):
            p.mm.space.free_pte_table(idx)
        self.k.mms.remove(p.mm)
        del self.procs[p.pid]
        self.v.on_exit(p)
        self.v.after_syscall(p, "exit")

    def syscall(self, p: Proc | None = None, what: str = "test") -> None:
        self.v.after_syscall(p, what)

    def excl(self, pfn: int) -> bool:
        return bool(int(self.k.memmap.flags[pfn]) & PG_anon_exclusive)


def outcome(f: Any) -> tuple[str, str, str | None] | None:
    """The exact outcome of ``f()``: None, or (exception type, message, rule)."""
    try:
        f()
    except Exception as e:  # the exact outcome is compared
        return (type(e).__name__, str(e), getattr(e, "rule", None))
    return None
