"""The machine under the kernel: CPUs with TLBs, the table walker, TLB maintenance.

Arm ARM vocabulary throughout (DDI 0487): the walker follows D8.2 (two
materialised levels: level-2 blocks in ``space.pmds``, level-3 tables in
the ``PtePool``), hardware Access flag and dirty state follow D8.5
(FEAT_HAFDBS), the Contiguous bit D8.7.1, TLB maintenance D8.17 (TLBI by VA,
by ASID, by range with FEAT_TLBIRANGE; DSB completion).  The Flat format adds
x86 semantics (INVLPG, INVPCID, IPIs; hardware-set A/D; no contiguous hint).

The model is sequential: an instruction takes effect when it is called.
A TLBI removes entries at once on every CPU it reaches; whether it was
*completed* by a DSB matters only to the rule checker, which reports
sequences that would leave stale translations on real hardware.

The user access path (``access``) is one compiled loop: per page a TLB
lookup, a walk on a miss (with the hardware Access flag / dirty update and
the fill), then the data move; the pages a resolved entry covers are then
served from it without further lookups (as long as no two entries of the
CPU's TLB overlap, a lookup of any of them would return it).

TLB maintenance has int-coded entry points for compiled callers
(``tlbi_op``, ``tlbi_range_op``, ``dsb_op`` with the codes of
``contpte.hw.tlbi``) and the Arm-named forms (``tlbi("VALE1IS", ...)``,
``dsb("ish")``) for tests and tools.

Compiled (docs/core.md).  Nothing here knows Linux.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import cython
import numpy as np
import numpy.typing as npt

from ..counters import counter
from ..errors import InvariantViolation, ModelUsageError
from .features import DEFAULT_CPU, PRESETS, CpuFeatures, preset, system_features
from .format import make_format
from .tlbi import (
    DSB_DOMAINS,
    RANGE_TLBI_OPS,
    TLBI_OPS,
    dsb_code,
    tlbi_code,
    tlbi_name,
    tlbi_range_pages,
)

if not cython.compiled:
    from ..cdefs import U64View, i64, u64
    from ..counters import Counters
    from .checker import RuleChecker
    from .format import DescriptorFormat
    from .memory import PhysMemory
    from .tables import AddressSpace, PtePool
    from .tlb import ASID_LIMIT, VPN_LIMIT, Tlb, TlbFrameIndex
    from .tlbi import (
        DSB_ISH,
        DSB_OSH,
        DSB_SY,
        SCOPE_ASID,
        SCOPE_VA,
        TLBI_INVLPG,
        TLBI_INVPCID,
        tlbi_broadcast,
        tlbi_by_asid,
        tlbi_is_range,
        tlbi_scope,
        tlbi_valid,
    )

__all__ = [
    "HwFault",
    "Hardware",
    "TLBI_OPS",
    "RANGE_TLBI_OPS",
    "DSB_DOMAINS",
    "tlbi_range_pages",
    "FAULT_KINDS",
]

U64 = npt.NDArray[np.uint64]
_U64_MAX_PY = (1 << 64) - 1

C_HIT = cython.declare(i64, counter("tlb.hit"))
C_MISS = cython.declare(i64, counter("tlb.miss"))
C_WALK = cython.declare(i64, counter("tlb.walk"))
C_CONFLICT = cython.declare(
    i64,
    counter("tlb.conflict"),
)
C_AF = cython.declare(
    i64,
    counter("hw.af_update"),
)
C_DIRTY = cython.declare(
    i64,
    counter("hw.dirty_update"),
)
C_IPI = cython.declare(i64, counter("ipi.sent"))
C_DVM_SYNC = cython.declare(i64, counter("dvm.sync"))

#: Fault kinds (``HwFault.kind``), by code.
FAULT_KINDS = ("translation", "permission", "access_flag")
_F_TRANSLATION = cython.declare(i64, 0)
_F_PERMISSION = cython.declare(i64, 1)
_F_ACCESS_FLAG = cython.declare(i64, 2)
C_FAULT_TRANSLATION = cython.declare(i64, counter("fault.translation"))
C_FAULT_PERMISSION = cython.declare(i64, counter("fault.permission"))
C_FAULT_ACCESS_FLAG = cython.declare(i64, counter("fault.access_flag"))


@dataclass(frozen=True)
class HwFault:
    """A fault taken by a user access (Arm ARM D8.15 "MMU faults").

    ``kind``: ``"translation"``, ``"permission"`` or ``"access_flag"``.
    ``va``: faulting address; ``level``: lookup level; ``write``: a store.
    ``ptep``: the level-3 descriptor the walk evaluated and faulted on (for
    a Contiguous block, the member it chose), -1 for a fault from a TLB
    entry, a translation fault or a level-2 descriptor; ``desc``: its value
    (neither takes part in comparisons).
    """

    kind: str
    va: int
    level: int
    write: bool
    ptep: int = field(default=-1, compare=False)
    desc: int = field(default=0, compare=False)


@cython.final
@cython.cclass
class Hardware:
    """A machine: physical memory, CPUs with TLBs, a walker, TLB maintenance.

    ``nr_frames``: physical pages.  ``page_shift``: translation granule.
    ``features``: a ``CpuFeatures`` or a preset name (default: Neoverse N1 for
    ``fmt="vmsa"``, the x86 preset for ``fmt="flat"``), or one per CPU (a
    list of ``ncpus``, a heterogeneous machine: the CPUs may differ only in
    their hardware Access flag / dirty management and TLB size; ``features``
    then holds the system-wide set, with the highest ``hafdbs``).  ``checker``: run the
    Arm ARM ``RuleChecker``.  ``adversarial_tlb``: TLBs never evict.
    ``seed``: seeds the choices the architecture leaves open (which
    descriptor of a Contiguous block a walk takes).
    """

    def __init__(
        self,
        nr_frames: i64,
        page_shift: i64 = 12,
        ncpus: i64 = 4,
        features: CpuFeatures | str | list[CpuFeatures | str] | tuple[CpuFeatures | str, ...] | None = None,
        fmt: str = "vmsa",
        counters: Counters | None = None,
        checker: cython.bint = True,
        adversarial_tlb: cython.bint = False,
        seed: i64 = 0,
    ) -> None:
        if ncpus < 1:
            raise ModelUsageError(f"ncpus must be >= 1, not {ncpus}")
        per_cpu: list[CpuFeatures]
        if features is None:
            features = PRESETS[DEFAULT_CPU["flat" if fmt == "flat" else "vmsa"]]
        if isinstance(features, (list, tuple)):
            per_cpu = [preset(f) if isinstance(f, str) else f for f in features]
            if len(per_cpu) != ncpus:
                raise ModelUsageError(f"{len(per_cpu)} CPU feature sets for ncpus={ncpus}")
            features = system_features(per_cpu)
        else:
            if isinstance(features, str):
                features = preset(features)
            per_cpu = [features] * ncpus
        self.features = features
        self.cpu_features = per_cpu
        #: Per CPU: TCR_EL1.HA / TCR_EL1.HD in effect (1/0).
        self.ha_of = np.array([int(f.ha) for f in per_cpu], dtype=np.int64)
        self.hd_of = np.array([int(f.hd) for f in per_cpu], dtype=np.int64)
        self.fault_ptep = -1
        self.fault_desc = 0
        self.fmt = make_format(fmt, page_shift)
        self.flat = not self.fmt.has_contiguous
        self.page_shift = page_shift
        self.page_size = 1 << page_shift
        self.ptrs_per_pte = 1 << (page_shift - 3)
        self.pmd_shift = page_shift + (page_shift - 3)
        self.ncpus = ncpus
        self.counters = counters if counters is not None else Counters()
        self.memory = PhysMemory(nr_frames, self.page_size)
        self.pool = PtePool(page_shift, self.counters)
        self.adversarial_tlb = adversarial_tlb
        self.ha = features.ha
        self.hd = features.hd
        self.rng = random.Random(seed)
        self.getrandbits = self.rng.getrandbits
        #: Pages per TLB entry made from a Contiguous descriptor (1: cached per page).
        self.cont_entry_pages = self.fmt.cont_ptes if self.fmt.has_contiguous and features.contig_tlb else 1
        self.tlbs = [
            Tlb(f.tlb_entries, adversarial_tlb, self.cont_entry_pages, self.ptrs_per_pte) for f in per_cpu
        ]
        self.spaces: dict[int, AddressSpace] = {}
        self.retired: set[int] = set()
        #: The CPU executing kernel code now (TLBI/DSB issue here); set by system.
        self.current_cpu = 0
        self.tlbi_cid = np.full(64, -1, dtype=np.int64)
        self.dsb_cid = np.array([counter("dsb." + d) for d in DSB_DOMAINS], dtype=np.int64)
        #: Per CPU: 1 while broadcast TLBIs it issued wait for a completing DSB (``dvm.sync``).
        self.dvm_pending = np.zeros(ncpus, dtype=np.int64)
        self.last_fault: HwFault | None = None
        #: A scheduler's preemption hook, None when none is installed: the
        #: arch layer calls ``yield_hook(point, space, va)`` where a kernel
        #: reader without a lock may be overtaken by another CPU (the
        #: hardware is not involved; it only carries the hook to both layers).
        self.yield_hook: Any = None
        self.zero1 = np.zeros(1, dtype=np.uint64)
        self.n_hit = 0
        self.n_miss = 0
        self.n_walk = 0
        self.wc_space: AddressSpace | None = None
        self.wc_pmd = -1
        self.wc_slot = -1
        self.wc_l2 = 0
        self.checker: RuleChecker | None = None
        if checker:
            self.checker = RuleChecker(self.pool, self.fmt, features, ncpus, self.memory)
            self.pool.observer = self.checker
            # The frames the TLBs map, for the check at each free (freed-frame-in-tlb).
            frames = TlbFrameIndex(nr_frames, self.cont_entry_pages, self.ptrs_per_pte)
            t: Tlb
            for t in self.tlbs:
                t.frames = frames
            self.checker.frames = frames
            self.checker.tlbs = self.tlbs

    # ------------------------------------------------------------------
    # Address spaces
    # ------------------------------------------------------------------
    def new_space(self, asid: int, name: str = "") -> AddressSpace:
        """Create the translation regime of a process: ASID ``asid``, empty tables.

        The rule checker (when on) observes the descriptor pool and learns
        the space's name.  ASIDs are never reused.
        """
        if asid in self.spaces or asid in self.retired:
            raise ModelUsageError(f"ASID {asid} is already in use (ASIDs are never reused)")
        if not 0 <= asid < ASID_LIMIT:
            raise ModelUsageError(f"ASID {asid} out of the model's range 0..{ASID_LIMIT - 1}")
        space = AddressSpace(asid, self.pool, name)
        self.spaces[asid] = space
        if self.checker is not None:
            self.pool.observer = self.checker
            self.checker.add_space(space)
        return space

    def release_space(self, space: AddressSpace) -> None:
        """No CPU will use ``space``'s ASID again (its last user is gone).

        Its TLB entries stay until ``retire_space`` (the ASID is not
        reallocated before the TLBs are invalidated) but can no longer reach
        memory: the frames they map may be freed (the rule checker stops
        counting them).
        """
        t: Tlb
        for t in self.tlbs:
            if t.frames is not None:
                t.unindex_asid(space.asid)

    def retire_space(self, space: AddressSpace) -> None:
        """The process is gone: drop its ASID's TLB entries everywhere."""
        t: Tlb
        for t in self.tlbs:
            t.invalidate_asid(space.asid)
        self.spaces.pop(space.asid, None)
        self.retired.add(space.asid)
        if self.checker is not None:
            self.checker.retire_space(space)

    # ------------------------------------------------------------------
    # The user access path
    # ------------------------------------------------------------------
    def access(
        self,
        cpu: i64,
        space: AddressSpace,
        va: i64,
        npages: i64,
        write: cython.bint,
        value: int | np.integer[Any] | U64 | None = None,
        out: U64 | None = None,
    ) -> tuple[int, HwFault | None]:
        """Load or store ``npages`` pages from ``va`` at EL0 on ``cpu``.

        A store puts ``value`` (an int, or one value per page) in each page's
        frame; a load puts each page's value in ``out[i]`` (if given).  Stops
        at the first fault: returns (pages done, ``HwFault``), or
        (``npages``, None).
        """
        if cpu < 0 or cpu >= self.ncpus:
            raise ModelUsageError(f"no CPU {cpu} (ncpus={self.ncpus})")
        if va & (self.page_size - 1):
            raise ModelUsageError(f"access address {va:#x} is not page aligned")
        if npages < 0:
            raise ModelUsageError(f"access of {npages} pages")
        if va < 0 or (va >> self.page_shift) + npages > VPN_LIMIT:
            raise ModelUsageError(f"access of {npages} pages at {va:#x} beyond the model's address range")
        vals: U64View = self.zero1
        outv: U64View = self.zero1
        scalar: u64 = 0
        per_page: cython.bint = False
        has_out: cython.bint = False
        tmp: U64 | None = None
        if write:
            if value is None:
                raise ModelUsageError("a store needs a value")
            if isinstance(value, int):
                if value < 0 or value > _U64_MAX_PY:
                    raise ModelUsageError(f"store value {value!r} is not a 64-bit unsigned integer")
                scalar = value
            elif isinstance(value, np.ndarray):
                if len(value) < npages:
                    raise ModelUsageError(f"{len(value)} values for a store of {npages} pages")
                try:
                    vals = value
                except (ValueError, TypeError):  # another dtype, or not contiguous
                    vals = np.ascontiguousarray(value[:npages], dtype=np.uint64)
                per_page = True
            else:
                scalar = int(value)
        elif out is not None:
            if len(out) < npages:
                raise ModelUsageError(f"out has {len(out)} slots for a load of {npages} pages")
            try:
                outv = out
            except (ValueError, TypeError):
                tmp = np.zeros(npages, dtype=np.uint64)
                outv = tmp
            has_out = True
        done: i64 = 0
        try:
            done = self._access(
                cpu, space, va >> self.page_shift, npages, write, per_page, vals, scalar, has_out, outv
            )
        finally:
            if tmp is not None:
                assert out is not None
                out[:npages] = tmp
        fault = self.last_fault
        if fault is None:
            return done, None
        self.last_fault = None
        return done, fault

    @cython.cfunc
    @cython.exceptval(-1, check=True)
    def _access(
        self,
        cpu: i64,
        space: AddressSpace,
        vpn0: i64,
        npages: i64,
        write: cython.bint,
        per_page: cython.bint,
        vals: U64View,
        scalar: u64,
        has_out: cython.bint,
        outv: U64View,
    ) -> i64:
        """The access loop: pages ``[vpn0, vpn0+npages)``; pages done (a fault in ``last_fault``)."""
        tlb: Tlb = self.tlbs[cpu]
        chk: RuleChecker | None = self.checker
        data: U64View = self.memory.v
        nf: i64 = self.memory.nr_frames
        i: i64 = 0
        k: i64
        m: i64
        vpn: i64
        pfn: i64
        off: i64
        ptep: i64
        stop: i64
        self.wc_space = None
        try:
            while i < npages:
                vpn = vpn0 + i
                k = self._resolve(cpu, tlb, space, vpn, write)
                if k < 0:
                    return i
                pfn = tlb.e_pfn[k] + (vpn - tlb.e_vbase[k])
                if pfn >= nf:
                    self._oa_range(pfn)
                if write:
                    data[pfn] = vals[i] if per_page else scalar
                elif has_out:
                    outv[i] = data[pfn]
                i += 1
                if tlb.n_flagged != 0:
                    continue
                # The other pages of entry k: a lookup would return k for
                # each (no entry of this TLB overlaps another), and it
                # passed the permission checks for this access.
                m = tlb.e_vbase[k] + tlb.e_npages[k] - vpn0
                if m > npages:
                    m = npages
                if i >= m:
                    continue
                off = tlb.e_pfn[k] - tlb.e_vbase[k] + vpn0
                if off + m > nf:
                    m = nf - off
                if chk is not None:
                    # the pages memory still grants are served; the first
                    # it does not is reported (on_tlb_use raises)
                    ptep = tlb.e_ptep[k]
                    stop = i + chk.tlb_use_ok(space, vpn0 + i, m - i, ptep, off + i, write)
                    if stop < m:
                        m = stop + 1
                    while i < m:
                        self.n_hit += 1
                        if i == stop:
                            chk.on_tlb_use(cpu, space, vpn0 + i, ptep, off + i, int(tlb.e_desc[k]), write)
                        if write:
                            data[off + i] = vals[i] if per_page else scalar
                        elif has_out:
                            outv[i] = data[off + i]
                        i += 1
                else:
                    self.n_hit += m - i
                    if write:
                        if per_page:
                            while i < m:
                                data[off + i] = vals[i]
                                i += 1
                        else:
                            while i < m:
                                data[off + i] = scalar
                                i += 1
                    elif has_out:
                        while i < m:
                            outv[i] = data[off + i]
                            i += 1
                    else:
                        i = m
            return npages
        finally:
            self._flush_counts()

    @cython.cfunc
    def _flush_counts(self) -> None:
        """Add the access's page counts to the counters (the loop counts in C fields)."""
        self.counters.inc(C_HIT, self.n_hit)
        self.counters.inc(C_MISS, self.n_miss)
        self.counters.inc(C_WALK, self.n_walk)
        self.n_hit = 0
        self.n_miss = 0
        self.n_walk = 0
        self.wc_space = None

    def _oa_range(self, pfn: int) -> None:
        raise InvariantViolation(
            "oa-range",
            f"translation to pfn {pfn:#x} beyond physical memory ({self.memory.nr_frames:#x} frames)",
        )

    def translate(self, cpu: int, space: AddressSpace, va: int, write: bool) -> int | HwFault:
        """Translate one page for an EL0 access: its pfn, or the fault.

        Same rules, counters and side effects (TLB fill, HW A/D update) as
        ``access`` of one page, without touching the frame.
        """
        if not 0 <= cpu < self.ncpus:
            raise ModelUsageError(f"no CPU {cpu} (ncpus={self.ncpus})")
        tlb: Tlb = self.tlbs[cpu]
        vpn = va >> self.page_shift
        self.wc_space = None
        try:
            k = self._resolve(cpu, tlb, space, vpn, write)
        finally:
            self._flush_counts()
        if k < 0:
            fault = self.last_fault
            self.last_fault = None
            assert isinstance(fault, HwFault)
            return fault
        return int(tlb.e_pfn[k]) + (vpn - int(tlb.e_vbase[k]))

    @cython.cfunc
    @cython.exceptval(-2, check=True)
    def _resolve(self, cpu: i64, tlb: Tlb, space: AddressSpace, vpn: i64, write: cython.bint) -> i64:
        """The TLB entry serving ``vpn`` for this access, walking on a miss (Arm ARM D8.2, D8.5).

        -1 on a fault (``last_fault``).  A hit is checked by the rule checker
        (stale-tlb); a fill by the walk.
        """
        fmt: DescriptorFormat = self.fmt
        k: i64 = tlb.lookup(space.asid, vpn)
        if k < 0:
            self.n_miss += 1
            return self._walk(cpu, space, vpn, write, True)
        self.n_hit += 1
        desc: u64 = int(tlb.e_desc[k])
        if not desc & fmt.user_bit:
            return self._fault(cpu, space, _F_PERMISSION, vpn, tlb.e_level[k], write)
        if write and (desc & fmt.dirty_mask) != fmt.dirty_val:
            if self.hd_of[cpu] and (desc & fmt.clean_mask) == fmt.clean_val:
                # RSGJBL: before a dirty update the PE re-reads the
                # descriptor from memory and uses that (it may now fault).
                tlb.remove(k)
                return self._walk(cpu, space, vpn, write, False)
            return self._fault(cpu, space, _F_PERMISSION, vpn, tlb.e_level[k], write)
        if self.checker is not None:
            self.checker.on_tlb_use(
                cpu, space, vpn, tlb.e_ptep[k], tlb.e_pfn[k] + (vpn - tlb.e_vbase[k]), desc, write
            )
        return k

    @cython.cfunc
    @cython.exceptval(-2, check=True)
    def _fault(
        self, cpu: i64, space: AddressSpace, kind: i64, vpn: i64, level: i64, write: cython.bint
    ) -> i64:
        if kind == _F_TRANSLATION:
            self.counters.inc(C_FAULT_TRANSLATION, 1)
        elif kind == _F_PERMISSION:
            self.counters.inc(C_FAULT_PERMISSION, 1)
        else:
            self.counters.inc(C_FAULT_ACCESS_FLAG, 1)
        t: Tlb
        if self.flat:
            # x86: a page fault invalidates the faulting address's TLB entries.
            t = self.tlbs[cpu]
            t.invalidate_range(space.asid, vpn, 1, 0)
        self.last_fault = HwFault(
            FAULT_KINDS[kind],
            vpn << self.page_shift,
            level,
            write,
            self.fault_ptep,
            self.fault_desc if self.fault_ptep >= 0 else 0,
        )
        self.fault_ptep = -1
        return -1

    @cython.cfunc
    @cython.exceptval(-2, check=True)
    def _walk(
        self, cpu: i64, space: AddressSpace, vpn: i64, write: cython.bint, after_miss: cython.bint
    ) -> i64:
        """Walk the tables for ``vpn``; apply HW A/D updates; fill the TLB.

        Arm ARM D8.2 (walk), D8.5.1/D8.5.2 (AF and dirty state with
        FEAT_HAFDBS), D8.7.1 (Contiguous: one entry for the block, made from
        one descriptor of the set, chosen with the seeded RNG: D8.5.5 IQDCMP).
        ``after_miss``: the lookup just missed (no entry contains ``vpn``).
        """
        self.n_walk += 1
        fmt: DescriptorFormat = self.fmt
        pool: PtePool = self.pool
        pmd_index: i64 = vpn >> (self.page_shift - 3)
        if space is not self.wc_space or pmd_index != self.wc_pmd:
            # Within one access nothing but this walker changes the
            # tables, so the level-2 step is looked up once per region.
            self.wc_space = space
            self.wc_pmd = pmd_index
            v = space.pmds.get(pmd_index)
            self.wc_l2 = 0 if v is None else v
            self.wc_slot = space.pte_table(pmd_index)
        pmd: u64 = self.wc_l2
        if pmd:
            if not pmd & 1:
                return self._fault(cpu, space, _F_TRANSLATION, vpn, 2, write)
            if (pmd & fmt.l2_block_mask) == fmt.l2_block_val:
                return self._use_descriptor(cpu, space, -1, pmd_index, pmd, 2, vpn, write, after_miss)
        slot: i64 = self.wc_slot
        if slot < 0:
            return self._fault(cpu, space, _F_TRANSLATION, vpn, 2, write)
        ptep: i64 = (slot << pool.shift) | (vpn & (self.ptrs_per_pte - 1))
        d: u64 = int(pool.e[ptep])
        if (d & fmt.valid_mask) != fmt.valid_val:
            return self._fault(cpu, space, _F_TRANSLATION, vpn, 3, write)
        n: i64 = self.cont_entry_pages
        cand: i64
        dc: u64
        if n > 1 and d & fmt.cont_bit:
            cand = (ptep & ~(n - 1)) + self._randbelow(n)
            dc = int(pool.e[cand])
            if (dc & fmt.valid_mask) == fmt.valid_val and dc & fmt.cont_bit:
                ptep = cand
                d = dc
        return self._use_descriptor(cpu, space, ptep, pmd_index, d, 3, vpn, write, after_miss)

    @cython.cfunc
    @cython.exceptval(-1, check=True)
    def _randbelow(self, n: i64) -> i64:
        """``self.rng.randrange(n)`` for ``n`` >= 1, the same draws from the same stream.

        CPython's ``Random._randbelow_with_getrandbits``: k = n.bit_length()
        bits at a time until below ``n``; called directly on ``getrandbits``
        (a C method) instead of through ``randrange`` (Python code).
        """
        k: i64 = 0
        while (cython.cast(i64, 1) << k) <= n:
            k += 1
        r: i64 = self.getrandbits(k)
        while r >= n:
            r = self.getrandbits(k)
        return r

    @cython.cfunc
    @cython.exceptval(-2, check=True)
    def _use_descriptor(
        self,
        cpu: i64,
        space: AddressSpace,
        ptep: i64,
        pmd_index: i64,
        d: u64,
        level: i64,
        vpn: i64,
        write: cython.bint,
        after_miss: cython.bint,
    ) -> i64:
        """Check AF and permissions of the walked descriptor, update it, fill the TLB."""
        fmt: DescriptorFormat = self.fmt
        af: cython.bint = (d & fmt.af_bit) != 0
        if level == 3:
            self.fault_ptep = ptep  # what a fault below reports (HwFault.ptep)
            self.fault_desc = d
        if not af and not self.ha_of[cpu]:
            return self._fault(cpu, space, _F_ACCESS_FLAG, vpn, level, write)
        if not d & fmt.user_bit:
            return self._fault(cpu, space, _F_PERMISSION, vpn, level, write)
        dirty: cython.bint = (d & fmt.dirty_mask) == fmt.dirty_val
        clean: cython.bint = not dirty and (d & fmt.clean_mask) == fmt.clean_val
        if write and not dirty and not (clean and self.hd_of[cpu]):
            return self._fault(cpu, space, _F_PERMISSION, vpn, level, write)
        self.fault_ptep = -1
        new: u64 = d
        if not af:
            new |= fmt.af_bit
            self.counters.inc(C_AF, 1)
        if write and clean:
            new = (new | fmt.set_dirty_or) & fmt.set_dirty_and
            self.counters.inc(C_DIRTY, 1)
        if new != d:
            # an atomic RMW by the walker, not a software write
            if level == 2:
                space.pmd_hw_store(pmd_index, new)
                self.wc_l2 = new
            else:
                self.pool.hw_store(ptep, new)
        npages: i64
        if level == 2:
            npages = self.ptrs_per_pte
        elif new & fmt.cont_bit:
            npages = self.cont_entry_pages
        else:
            npages = 1
        vbase: i64 = vpn & ~(npages - 1)
        pfn: i64 = cython.cast(i64, (new & fmt.oa_mask) >> self.page_shift) & ~(npages - 1)
        tlb: Tlb = self.tlbs[cpu]
        ov: i64 = 0
        if not (after_miss and npages == 1):
            ov = tlb.overlaps(space.asid, vbase, npages)
        if ov:
            self.counters.inc(C_CONFLICT, 1)
        j: i64
        if self.checker is not None:
            self.checker.note_walk(space.asid, cpu)
        if self.checker is not None and (ov or (level == 3 and new & fmt.cont_bit)):
            j = tlb.last_overlap
            self.checker.on_fill(
                cpu,
                space,
                vbase,
                npages,
                new,
                ptep,
                level,
                ov,
                int(tlb.e_npages[j]) if ov else 0,
                int(tlb.e_desc[j]) if ov else 0,
            )
        return tlb.insert(space.asid, vbase, npages, pfn, new, ptep, level, ov > 0)

    # ------------------------------------------------------------------
    # TLB maintenance (Arm ARM D8.17)
    # ------------------------------------------------------------------
    @cython.cfunc
    @cython.exceptval(-2, check=True)
    def _ttl_level(self, ttl: i64) -> i64:
        """The level a TTL hint names: 0 for "no hint", -1 for "matches nothing".

        Accepts the FEAT_TTL operand field (TTL[3:2] granule: 01 4K, 10 16K,
        11 64K; TTL[1:0] level) or a bare level 1..3.  A hint for another
        granule need not invalidate anything (RXKMMX), modelled as nothing.
        """
        if ttl == 0:
            return 0
        if ttl < 4:
            return ttl
        tg: i64 = (ttl >> 2) & 3
        if tg == 0 or 10 + 2 * tg != self.page_shift:
            return -1
        return ttl & 3

    @cython.cfunc
    @cython.exceptval(-1, check=True)
    def _tlbi_counter(self, op: i64) -> i64:
        cid: i64 = self.tlbi_cid[op]
        if cid < 0:
            cid = counter("tlbi." + tlbi_name(op))
            self.tlbi_cid[op] = cid
        return cid

    @cython.ccall
    def tlbi_op(self, op: i64, asid: i64, va: i64, ttl: i64) -> None:
        """Execute ``TLBI <op>`` (a ``contpte.hw.tlbi`` code) on ``current_cpu``.

        ``asid``: for the by-ASID forms (-1: none).  ``va``: address (bytes)
        for the by-VA forms (-1: none).  ``ttl``: FEAT_TTL hint, 0 for none.
        There are no walk caches, so the last-level (``VALE``) forms act
        like the others on the (leaf) entries that exist.
        """
        if not tlbi_valid(op) or tlbi_is_range(op) or (op & 15) == TLBI_INVLPG or (op & 15) == TLBI_INVPCID:
            raise ModelUsageError(f"no non-range TLBI op code {op}")
        scope: i64 = tlbi_scope(op)
        by_asid: cython.bint = tlbi_by_asid(op)
        if by_asid and asid < 0:
            raise ModelUsageError(f"TLBI {tlbi_name(op)} needs an ASID")
        if scope == SCOPE_VA and va < 0:
            raise ModelUsageError(f"TLBI {tlbi_name(op)} needs a VA")
        # the counter id _tlbi_counter caches, added in place: two calls per
        # TLBI (the look-up, Counters.inc) cost more than the test and the add
        cid: i64 = int(self.tlbi_cid[op])
        if cid < 0:
            cid = self._tlbi_counter(op)
        self.counters.v[cid] += 1
        level: i64 = self._ttl_level(ttl) if scope == SCOPE_VA else 0
        tag: i64 = asid if by_asid else -1
        vpn: i64 = (va >> self.page_shift) if scope == SCOPE_VA else 0
        broadcast: cython.bint = tlbi_broadcast(op)
        if broadcast:
            self.dvm_pending[self.current_cpu] = 1
        cpu: i64
        t: Tlb
        if level >= 0:
            for cpu in range(self.ncpus):
                if not broadcast and cpu != self.current_cpu:
                    continue
                t = self.tlbs[cpu]
                if scope == SCOPE_VA:
                    t.invalidate_range(tag, vpn, 1, level)
                elif scope == SCOPE_ASID:
                    t.invalidate_asid(asid)
                else:
                    t.invalidate_all()
        if self.checker is not None:
            self.checker.on_tlbi(
                self.current_cpu, broadcast or self.ncpus == 1, scope, tag, vpn, 1, level, False
            )

    @cython.ccall
    def tlbi_range_op(self, op: i64, asid: i64, va: i64, scale: i64, num: i64, ttl: i64) -> None:
        """Execute a range ``TLBI <op>`` (FEAT_TLBIRANGE) on ``current_cpu``.

        Covers ``(num+1) << (5*scale+1)`` pages from ``va`` (Arm ARM
        D8.17.5.2); ``asid`` -1 for the VAA forms.  ``ttl``: the range
        operand's 2-bit level hint (0: none).  Without FEAT_TLBIRANGE the
        instruction is UNDEFINED: ModelUsageError.
        """
        if not tlbi_valid(op) or not tlbi_is_range(op):
            raise ModelUsageError(f"no range TLBI op code {op}")
        if not self.features.tlbirange:
            raise ModelUsageError(
                f"TLBI {tlbi_name(op)} is UNDEFINED: {self.features.name} lacks FEAT_TLBIRANGE"
            )
        by_asid: cython.bint = tlbi_by_asid(op)
        if by_asid and asid < 0:
            raise ModelUsageError(f"TLBI {tlbi_name(op)} needs an ASID")
        npages: i64 = tlbi_range_pages(scale, num)
        cid: i64 = int(self.tlbi_cid[op])  # as in tlbi_op
        if cid < 0:
            cid = self._tlbi_counter(op)
        self.counters.v[cid] += 1
        tag: i64 = asid if by_asid else -1
        vpn: i64 = va >> self.page_shift
        broadcast: cython.bint = tlbi_broadcast(op)
        if broadcast:
            self.dvm_pending[self.current_cpu] = 1
        cpu: i64
        t: Tlb
        for cpu in range(self.ncpus):
            if not broadcast and cpu != self.current_cpu:
                continue
            t = self.tlbs[cpu]
            t.invalidate_range(tag, vpn, npages, ttl)
        if self.checker is not None:
            self.checker.on_tlbi(
                self.current_cpu, broadcast or self.ncpus == 1, SCOPE_VA, tag, vpn, npages, ttl, False
            )

    @cython.ccall
    def dsb_op(self, domain: i64) -> None:
        """Execute ``DSB <domain>`` (a ``contpte.hw.tlbi.DSB_*`` code) on ``current_cpu``.

        ``ish``/``osh``/``sy`` complete every TLBI this CPU issued; ``nsh``
        completes its local ones; the ``st`` forms order stores only
        (Arm ARM D8.17.8).  A completing DSB that has broadcast TLBIs of
        this CPU outstanding waits for every CPU to finish them (a DVM
        Sync): counted as ``dvm.sync``, the event the cost model prices as
        completion latency.
        """
        if not 0 <= domain < 8:
            raise ModelUsageError(f"no DSB domain code {domain}")
        self.counters.inc(self.dsb_cid[domain], 1)
        if (domain in (DSB_ISH, DSB_OSH, DSB_SY)) and self.dvm_pending[self.current_cpu]:
            self.dvm_pending[self.current_cpu] = 0
            self.counters.inc(C_DVM_SYNC, 1)
        if self.checker is not None:
            self.checker.on_dsb(self.current_cpu, domain)

    def tlbi(self, op: str, asid: int | None = None, va: int | None = None, ttl: int = 0) -> None:
        """Execute ``TLBI <op>`` on ``current_cpu``, by Arm name.

        ``op``: ``VAE1``, ``VALE1``, ``VAAE1``, ``VAALE1``, ``ASIDE1``,
        ``VMALLE1``, each optionally with ``IS``/``OS`` (broadcast to every
        CPU) -- e.g. ``"VALE1IS"``.  ``va``: address (bytes) for the by-VA
        forms; ``asid`` for the by-ASID forms; ``ttl``: FEAT_TTL hint.
        """
        code = tlbi_code(op)
        if tlbi_is_range(code) or (code & 15) in (TLBI_INVLPG, TLBI_INVPCID):
            raise ModelUsageError(f"unknown TLBI operation {op!r}")
        if tlbi_by_asid(code) and asid is None:
            raise ModelUsageError(f"TLBI {op} needs an ASID")
        if tlbi_scope(code) == SCOPE_VA and va is None:
            raise ModelUsageError(f"TLBI {op} needs a VA")
        self.tlbi_op(code, -1 if asid is None else asid, -1 if va is None else va, ttl)

    def tlbi_range(self, op: str, asid: int | None, va: int, scale: int, num: int, ttl: int = 0) -> None:
        """Execute a range ``TLBI <op>`` (FEAT_TLBIRANGE) on ``current_cpu``, by Arm name.

        ``op``: ``RVAE1``, ``RVALE1``, ``RVAAE1``, ``RVAALE1`` with optional
        ``IS``/``OS``.
        """
        try:
            code = tlbi_code(op)
        except ModelUsageError:
            raise ModelUsageError(f"unknown range TLBI operation {op!r}") from None
        if not tlbi_is_range(code):
            raise ModelUsageError(f"unknown range TLBI operation {op!r}")
        self.tlbi_range_op(code, -1 if asid is None else asid, va, scale, num, ttl)

    def dsb(self, domain: str) -> None:
        """Execute ``DSB <domain>`` on ``current_cpu``: ``"ish"``, ``"ishst"``, ``"nsh"``, ..."""
        self.dsb_op(dsb_code(domain))

    # -- x86 (Flat format) ----------------------------------------------------
    @cython.ccall
    def invlpg(self, cpu: i64, asid: i64, va: i64) -> None:
        """x86 INVLPG (by PCID ``asid``) on ``cpu`` only."""
        self.counters.inc(self._tlbi_counter(TLBI_INVLPG), 1)
        vpn: i64 = va >> self.page_shift
        t: Tlb = self.tlbs[cpu]
        t.invalidate_range(asid, vpn, 1, 0)
        if self.checker is not None:
            self.checker.on_tlbi(cpu, self.ncpus == 1, SCOPE_VA, asid, vpn, 1, 0, True)

    @cython.ccall
    def invpcid(self, cpu: i64, asid: i64) -> None:
        """x86 INVPCID single-context: every entry of PCID ``asid`` on ``cpu``."""
        self.counters.inc(self._tlbi_counter(TLBI_INVPCID), 1)
        t: Tlb = self.tlbs[cpu]
        t.invalidate_asid(asid)
        if self.checker is not None:
            self.checker.on_tlbi(cpu, self.ncpus == 1, SCOPE_ASID, asid, 0, 1, 0, True)

    @cython.ccall
    def ipi(self, src: i64, dst: i64) -> None:
        """Send an inter-processor interrupt (counted; the handler is the caller's)."""
        if not (0 <= src < self.ncpus and 0 <= dst < self.ncpus):
            raise ModelUsageError(f"IPI {src}->{dst}: no such CPU (ncpus={self.ncpus})")
        self.counters.inc(C_IPI, 1)

    def __repr__(self) -> str:
        return (
            f"<Hardware {self.fmt.name} {self.page_size >> 10}K, {self.ncpus} CPUs, "
            f"{self.memory.nr_frames} frames, {self.features.name}>"
        )
