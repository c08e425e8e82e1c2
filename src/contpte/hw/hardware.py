"""The machine under the kernel: CPUs with TLBs, the table walker, TLB maintenance.

Arm ARM vocabulary throughout (DDI 0487): the walker follows D8.2 (two
materialised levels: level-2 blocks in ``space.pmds``, level-3 tables in
``space.tables``), hardware Access flag and dirty state follow D8.5
(FEAT_HAFDBS), the Contiguous bit D8.7.1, TLB maintenance D8.17 (TLBI by VA,
by ASID, by range with FEAT_TLBIRANGE; DSB completion).  The Flat format adds
x86 semantics (INVLPG, INVPCID, IPIs; hardware-set A/D; no contiguous hint).

The model is sequential: an instruction takes effect when it is called.
A TLBI removes entries at once on every CPU it reaches; whether it was
*completed* by a DSB matters only to the rule checker, which reports
sequences that would leave stale translations on real hardware.

Nothing here knows Linux.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from ..counters import Counters, counter
from ..errors import InvariantViolation, ModelUsageError
from .features import PRESETS, CpuFeatures, preset
from .format import L2_BLOCK, L2_INVALID, WS_CLEAN, WS_DIRTY, WS_NONE, DescriptorFormat, make_format
from .memory import PhysMemory
from .tables import AddressSpace, PteTable
from .tlb import Tlb, TlbEntry

if TYPE_CHECKING:
    from .checker import RuleChecker

__all__ = ["HwFault", "Hardware", "TLBI_OPS", "RANGE_TLBI_OPS", "DSB_DOMAINS", "tlbi_range_pages"]

U64 = npt.NDArray[np.uint64]

C_HIT = counter("tlb.hit")
C_MISS = counter("tlb.miss")
C_WALK = counter("tlb.walk")
C_CONFLICT = counter("tlb.conflict")
C_AF = counter("hw.af_update")
C_DIRTY = counter("hw.dirty_update")
C_IPI = counter("ipi.sent")
C_DVM_SYNC = counter("dvm.sync")

#: Non-range TLBI operations: base name -> (scope, by-ASID, last-level only).
#: Scope "va": one address; "asid": all entries of an ASID; "all": every entry.
TLBI_OPS: dict[str, tuple[str, bool, bool]] = {
    "VAE1": ("va", True, False),
    "VALE1": ("va", True, True),
    "VAAE1": ("va", False, False),
    "VAALE1": ("va", False, True),
    "ASIDE1": ("asid", True, False),
    "VMALLE1": ("all", False, False),
}
#: Range TLBI operations (FEAT_TLBIRANGE): base name -> (by-ASID, last-level only).
RANGE_TLBI_OPS: dict[str, tuple[bool, bool]] = {
    "RVAE1": (True, False),
    "RVALE1": (True, True),
    "RVAAE1": (False, False),
    "RVAALE1": (False, True),
}
DSB_DOMAINS = ("ish", "ishst", "nsh", "nshst", "osh", "oshst", "sy", "st")


def tlbi_range_pages(scale: int, num: int) -> int:
    """Pages a range TLBI covers: ``(NUM+1) * 2^(5*SCALE+1)`` (Arm ARM D8.17.5.2)."""
    if not 0 <= scale <= 3 or not 0 <= num <= 31:
        raise ModelUsageError(f"TLBI range operand out of range: scale={scale} (0..3), num={num} (0..31)")
    return (num + 1) << (5 * scale + 1)


@dataclass(frozen=True)
class HwFault:
    """A fault taken by a user access (Arm ARM D8.15 "MMU faults").

    ``kind``: ``"translation"``, ``"permission"`` or ``"access_flag"``.
    ``va``: faulting address; ``level``: lookup level; ``write``: a store.
    """

    kind: str
    va: int
    level: int
    write: bool


def _split_shareability(op: str) -> tuple[str, bool]:
    """Return (base op, broadcast) for ``op`` with an optional IS/OS suffix."""
    if op.endswith(("IS", "OS")):
        return op[:-2], True
    return op, False


class Hardware:
    """A machine: physical memory, CPUs with TLBs, a walker, TLB maintenance.

    ``nr_frames``: physical pages.  ``page_shift``: translation granule.
    ``features``: a ``CpuFeatures`` or a preset name (default: Neoverse N1 for
    ``fmt="vmsa"``, the x86 preset for ``fmt="flat"``).  ``checker``: run the
    Arm ARM ``RuleChecker``.  ``adversarial_tlb``: TLBs never evict.
    ``seed``: seeds the choices the architecture leaves open (which
    descriptor of a Contiguous block a walk takes).
    """

    def __init__(
        self,
        nr_frames: int,
        page_shift: int = 12,
        ncpus: int = 4,
        features: CpuFeatures | str | None = None,
        fmt: str = "vmsa",
        counters: Counters | None = None,
        checker: bool = True,
        adversarial_tlb: bool = False,
        seed: int = 0,
    ) -> None:
        if ncpus < 1:
            raise ModelUsageError(f"ncpus must be >= 1, not {ncpus}")
        if features is None:
            features = PRESETS["x86"] if fmt == "flat" else PRESETS["neoverse-n1"]
        elif isinstance(features, str):
            features = preset(features)
        self.features: CpuFeatures = features
        self.fmt: DescriptorFormat = make_format(fmt, page_shift)
        self.page_shift = page_shift
        self.page_size = 1 << page_shift
        self.ptrs_per_pte = 1 << (page_shift - 3)
        self.pmd_shift = page_shift + (page_shift - 3)
        self.ncpus = ncpus
        self.counters = counters if counters is not None else Counters()
        self.memory = PhysMemory(nr_frames, self.page_size)
        self.adversarial_tlb = adversarial_tlb
        self.rng = random.Random(seed)
        #: Pages per TLB entry made from a Contiguous descriptor (1: cached per page).
        self.cont_entry_pages = self.fmt.cont_ptes if self.fmt.has_contiguous and features.contig_tlb else 1
        sizes = tuple(sorted({1, self.cont_entry_pages, self.ptrs_per_pte}))
        self.tlbs = [
            Tlb(features.tlb_entries, adversarial_tlb, sizes, self.ptrs_per_pte) for _ in range(ncpus)
        ]
        self.spaces: dict[int, AddressSpace] = {}
        self._retired: set[int] = set()
        #: The CPU executing kernel code now (TLBI/DSB issue here); set by system.
        self.current_cpu = 0
        #: Per CPU: broadcast TLBIs issued and not yet completed by a DSB (``dvm.sync``).
        self._dvm_pending = [False] * ncpus
        #: Use the table-at-a-time numpy path in ``access`` (tests turn it off).
        self.vectorised = True
        self.checker: RuleChecker | None = None
        if checker:
            from .checker import RuleChecker

            self.checker = RuleChecker(self)

    # ------------------------------------------------------------------
    # Address spaces
    # ------------------------------------------------------------------
    def new_space(self, asid: int, name: str = "") -> AddressSpace:
        """Create the translation regime of a process: ASID ``asid``, empty tables.

        The rule checker (when on) is registered as the store observer.
        ASIDs are never reused.
        """
        if asid in self.spaces or asid in self._retired:
            raise ModelUsageError(f"ASID {asid} is already in use (ASIDs are never reused)")
        observers: list[Any] = [self.checker] if self.checker is not None else []
        space = AddressSpace(asid, self.page_shift, self.counters, observers, name=name)
        self.spaces[asid] = space
        if self.checker is not None:
            self.checker.add_space(space)
        return space

    def retire_space(self, space: AddressSpace) -> None:
        """The process is gone: drop its ASID's TLB entries everywhere."""
        for tlb in self.tlbs:
            tlb.invalidate_asid(space.asid)
        self.spaces.pop(space.asid, None)
        self._retired.add(space.asid)
        if self.checker is not None:
            self.checker.retire_space(space)

    # ------------------------------------------------------------------
    # The user access path
    # ------------------------------------------------------------------
    def access(
        self,
        cpu: int,
        space: AddressSpace,
        va: int,
        npages: int,
        write: bool,
        value: int | U64 | None = None,
        out: U64 | None = None,
    ) -> tuple[int, HwFault | None]:
        """Load or store ``npages`` pages from ``va`` at EL0 on ``cpu``.

        A store puts ``value`` (an int, or one value per page) in each page's
        frame; a load puts each page's value in ``out[i]``.  Stops at the
        first fault: returns (pages done, ``HwFault``), or (``npages``, None).
        """
        self._check_access_args(cpu, va, npages, write, value, out)
        if not self.vectorised:
            return self._access_ref(cpu, space, va, npages, write, value, out)
        from .sweep import access_sweep

        return access_sweep(self, cpu, space, va, npages, write, value, out)

    def _check_access_args(
        self, cpu: int, va: int, npages: int, write: bool, value: int | U64 | None, out: U64 | None
    ) -> None:
        if not 0 <= cpu < self.ncpus:
            raise ModelUsageError(f"no CPU {cpu} (ncpus={self.ncpus})")
        if va & (self.page_size - 1):
            raise ModelUsageError(f"access address {va:#x} is not page aligned")
        if npages < 0:
            raise ModelUsageError(f"access of {npages} pages")
        if write:
            if value is None:
                raise ModelUsageError("a store needs a value")
            if isinstance(value, np.ndarray) and len(value) < npages:
                raise ModelUsageError(f"{len(value)} values for a store of {npages} pages")
        elif out is not None and len(out) < npages:
            raise ModelUsageError(f"out has {len(out)} slots for a load of {npages} pages")

    def _access_ref(
        self,
        cpu: int,
        space: AddressSpace,
        va: int,
        npages: int,
        write: bool,
        value: int | U64 | None,
        out: U64 | None,
        start: int = 0,
    ) -> tuple[int, HwFault | None]:
        """Reference path: one page at a time (the vectorised path must agree)."""
        data = self.memory.data
        vpn0 = va >> self.page_shift
        for i in range(start, npages):
            r = self._translate_vpn(cpu, space, vpn0 + i, write)
            if isinstance(r, HwFault):
                return i, r
            self._move_data(r, i, write, value, out, data)
        return npages, None

    def _move_data(
        self, pfn: int, i: int, write: bool, value: int | U64 | None, out: U64 | None, data: U64
    ) -> None:
        if pfn >= self.memory.nr_frames:
            raise InvariantViolation(
                "oa-range",
                f"translation to pfn {pfn:#x} beyond physical memory ({self.memory.nr_frames:#x} frames)",
            )
        if write:
            assert value is not None
            data[pfn] = value[i] if isinstance(value, np.ndarray) else np.uint64(value)
        elif out is not None:
            out[i] = data[pfn]

    def count_translation_faults(self, cpu: int, space: AddressSpace, vpns: list[int]) -> None:
        """Account the faulting accesses a bulk fault-in stands for.

        Each was a user access to a page no TLB entry covered and whose
        descriptor was invalid: a TLB miss, a walk and a translation fault,
        exactly as ``_translate_vpn`` counts them.  The caller guarantees
        those preconditions held when the fault was taken.
        """
        n = len(vpns)
        if not n:
            return
        self.counters.add(C_MISS, n)
        self.counters.add(C_WALK, n)
        self.counters.add("fault.translation", n)
        if self.fmt.name == "flat":
            for vpn in vpns:
                self.tlbs[cpu].invalidate_range(space.asid, vpn, 1, None)

    def translate(self, cpu: int, space: AddressSpace, va: int, write: bool) -> int | HwFault:
        """Translate one page for an EL0 access: its pfn, or the fault.

        Same rules, counters and side effects (TLB fill, HW A/D update) as
        ``access`` of one page, without touching the frame.
        """
        if not 0 <= cpu < self.ncpus:
            raise ModelUsageError(f"no CPU {cpu} (ncpus={self.ncpus})")
        return self._translate_vpn(cpu, space, va >> self.page_shift, write)

    def _translate_vpn(self, cpu: int, space: AddressSpace, vpn: int, write: bool) -> int | HwFault:
        """Look ``vpn`` up in ``cpu``'s TLB, walking on a miss (Arm ARM D8.2, D8.5)."""
        tlb = self.tlbs[cpu]
        c = self.counters
        e = tlb.lookup(space.asid, vpn)
        if e is not None:
            c.add(C_HIT)
            fmt = self.fmt
            if not fmt.user(e.desc):
                return self._fault(cpu, space, "permission", vpn, e.level, write)
            if write:
                ws = fmt.write_state(e.desc)
                if ws == WS_CLEAN and self.features.hd:
                    # RSGJBL: before a dirty update the PE re-reads the
                    # descriptor from memory and uses that (it may now fault).
                    tlb.remove(e)
                    r = self._walk(cpu, space, vpn, write)
                    if isinstance(r, HwFault):
                        return r
                    return r.pfn_of(vpn)
                if ws != WS_DIRTY:
                    return self._fault(cpu, space, "permission", vpn, e.level, write)
            if self.checker is not None:
                self.checker.on_tlb_use(cpu, space, vpn, e, write)
            return e.pfn_of(vpn)
        c.add(C_MISS)
        r = self._walk(cpu, space, vpn, write)
        if isinstance(r, HwFault):
            return r
        return r.pfn_of(vpn)

    def _fault(self, cpu: int, space: AddressSpace, kind: str, vpn: int, level: int, write: bool) -> HwFault:
        self.counters.add("fault." + kind)
        if self.fmt.name == "flat":
            # x86: a page fault invalidates the faulting address's TLB entries.
            self.tlbs[cpu].invalidate_range(space.asid, vpn, 1, None)
        return HwFault(kind, vpn << self.page_shift, level, write)

    def _walk(self, cpu: int, space: AddressSpace, vpn: int, write: bool) -> TlbEntry | HwFault:
        """Walk the tables for ``vpn``; apply HW A/D updates; fill the TLB.

        Arm ARM D8.2 (walk), D8.5.1/D8.5.2 (AF and dirty state with
        FEAT_HAFDBS), D8.7.1 (Contiguous: one entry for the block, made from
        one descriptor of the set, chosen with the seeded RNG: D8.5.5 IQDCMP).
        """
        self.counters.add(C_WALK)
        fmt = self.fmt
        pmd_index = vpn >> (self.page_shift - 3)
        pmd = space.pmds.get(pmd_index, 0)
        table: PteTable | None = None
        if pmd:
            kind = fmt.l2_kind(pmd)
            if kind == L2_INVALID:
                return self._fault(cpu, space, "translation", vpn, 2, write)
            if kind == L2_BLOCK:
                return self._use_descriptor(cpu, space, None, pmd_index, -1, pmd, 2, vpn, write)
        table = space.tables.get(pmd_index)
        if table is None:
            return self._fault(cpu, space, "translation", vpn, 2, write)
        idx = vpn & (self.ptrs_per_pte - 1)
        d = int(table.entries[idx])
        if not fmt.page_valid(d):
            return self._fault(cpu, space, "translation", vpn, 3, write)
        j = idx
        if self.cont_entry_pages > 1 and fmt.cont(d):
            n = self.cont_entry_pages
            cand = (idx & ~(n - 1)) + self.rng.randrange(n)
            dc = int(table.entries[cand])
            if fmt.page_valid(dc) and fmt.cont(dc):
                j, d = cand, dc
        return self._use_descriptor(cpu, space, table, pmd_index, j, d, 3, vpn, write)

    def _use_descriptor(
        self,
        cpu: int,
        space: AddressSpace,
        table: PteTable | None,
        pmd_index: int,
        j: int,
        d: int,
        level: int,
        vpn: int,
        write: bool,
    ) -> TlbEntry | HwFault:
        """Check AF and permissions of the walked descriptor, update it, fill the TLB."""
        fmt = self.fmt
        feat = self.features
        af = fmt.af(d)
        if not af and not feat.ha:
            return self._fault(cpu, space, "access_flag", vpn, level, write)
        if not fmt.user(d):
            return self._fault(cpu, space, "permission", vpn, level, write)
        ws = fmt.write_state(d)
        if write and (ws == WS_NONE or (ws == WS_CLEAN and not feat.hd)):
            return self._fault(cpu, space, "permission", vpn, level, write)
        new = d
        if not af:
            new = fmt.set_af(new)
            self.counters.add(C_AF)
        if write and ws == WS_CLEAN:
            new = fmt.set_dirty(new)
            self.counters.add(C_DIRTY)
        if new != d:
            self._hw_update(space, table, pmd_index, j, d, new)
        if level == 2:
            npages = self.ptrs_per_pte
        elif fmt.cont(new):
            npages = self.cont_entry_pages
        else:
            npages = 1
        mask = ~(npages - 1)
        entry = TlbEntry(space.asid, vpn & mask, npages, fmt.pfn(new) & mask, new, pmd_index, j, level)
        self._fill(cpu, space, entry)
        return entry

    def _hw_update(
        self, space: AddressSpace, table: PteTable | None, pmd_index: int, j: int, old: int, new: int
    ) -> None:
        """Store a hardware A/D update: an atomic RMW by the walker, not a software write."""
        if table is None:
            space.pmds[pmd_index] = new
            for o in space.observers:
                hook = getattr(o, "on_pmd_hw_update", None)
                if hook is not None:
                    hook(space, pmd_index, old, new)
            return
        table.hw_store(j, new)
        if space.observers:
            olda = np.array([old], dtype=np.uint64)
            newa = np.array([new], dtype=np.uint64)
            for o in space.observers:
                hook = getattr(o, "on_hw_update", None)
                if hook is not None:
                    hook(table, j, olda, newa)

    def _fill(self, cpu: int, space: AddressSpace, entry: TlbEntry) -> None:
        tlb = self.tlbs[cpu]
        overlaps = tlb.overlapping(entry.asid, entry.vbase, entry.npages)
        if overlaps:
            self.counters.add(C_CONFLICT)
        if self.checker is not None:
            self.checker.on_fill(cpu, space, entry, overlaps)
        tlb.insert(entry)

    # ------------------------------------------------------------------
    # TLB maintenance (Arm ARM D8.17)
    # ------------------------------------------------------------------
    def _ttl_level(self, ttl: int) -> int | None:
        """The level a TTL hint names, None for "no hint", -1 for "matches nothing".

        Accepts the FEAT_TTL operand field (TTL[3:2] granule: 01 4K, 10 16K,
        11 64K; TTL[1:0] level) or a bare level 1..3.  A hint for another
        granule need not invalidate anything (RXKMMX), modelled as nothing.
        """
        if ttl == 0:
            return None
        if ttl < 4:
            return ttl
        tg = (ttl >> 2) & 3
        if {1: 12, 2: 14, 3: 16}[tg] != self.page_shift:
            return -1
        return (ttl & 3) or None

    def _tlbi_cpus(self, broadcast: bool) -> list[int]:
        return list(range(self.ncpus)) if broadcast else [self.current_cpu]

    def tlbi(self, op: str, asid: int | None = None, va: int | None = None, ttl: int = 0) -> None:
        """Execute ``TLBI <op>`` on ``current_cpu``.

        ``op``: ``VAE1``, ``VALE1``, ``VAAE1``, ``VAALE1``, ``ASIDE1``,
        ``VMALLE1``, each optionally with ``IS``/``OS`` (broadcast to every
        CPU) -- e.g. ``"VALE1IS"``.  ``va``: address (bytes) for the by-VA
        forms; ``asid`` for the by-ASID forms; ``ttl``: FEAT_TTL hint.
        There are no walk caches, so the last-level (``VALE``) forms act
        like the others on the (leaf) entries that exist.
        """
        base, broadcast = _split_shareability(op)
        spec = TLBI_OPS.get(base)
        if spec is None:
            raise ModelUsageError(f"unknown TLBI operation {op!r}")
        scope, by_asid, last_level = spec
        if by_asid and asid is None:
            raise ModelUsageError(f"TLBI {op} needs an ASID")
        if scope == "va" and va is None:
            raise ModelUsageError(f"TLBI {op} needs a VA")
        self.counters.add("tlbi." + op)
        if broadcast:
            self._dvm_pending[self.current_cpu] = True
        level = self._ttl_level(ttl) if scope == "va" else None
        tag = asid if by_asid else None
        vpn = (va >> self.page_shift) if va is not None else 0
        for cpu in self._tlbi_cpus(broadcast):
            tlb = self.tlbs[cpu]
            if scope == "va":
                tlb.invalidate_range(tag, vpn, 1, level)
            elif scope == "asid":
                assert asid is not None
                tlb.invalidate_asid(asid)
            else:
                tlb.invalidate_all()
        if self.checker is not None:
            self.checker.on_tlbi(
                self.current_cpu, broadcast or self.ncpus == 1, scope, tag, vpn, 1, level, last_level
            )

    def tlbi_range(self, op: str, asid: int | None, va: int, scale: int, num: int, ttl: int = 0) -> None:
        """Execute a range ``TLBI <op>`` (FEAT_TLBIRANGE) on ``current_cpu``.

        ``op``: ``RVAE1``, ``RVALE1``, ``RVAAE1``, ``RVAALE1`` with optional
        ``IS``/``OS``.  Covers ``(num+1) << (5*scale+1)`` pages from ``va``
        (Arm ARM D8.17.5.2).  ``ttl``: the range operand's 2-bit level hint.
        Without FEAT_TLBIRANGE the instruction is UNDEFINED: ModelUsageError.
        """
        base, broadcast = _split_shareability(op)
        spec = RANGE_TLBI_OPS.get(base)
        if spec is None:
            raise ModelUsageError(f"unknown range TLBI operation {op!r}")
        if not self.features.tlbirange:
            raise ModelUsageError(f"TLBI {op} is UNDEFINED: {self.features.name} lacks FEAT_TLBIRANGE")
        by_asid, last_level = spec
        if by_asid and asid is None:
            raise ModelUsageError(f"TLBI {op} needs an ASID")
        npages = tlbi_range_pages(scale, num)
        self.counters.add("tlbi." + op)
        if broadcast:
            self._dvm_pending[self.current_cpu] = True
        level = ttl if ttl else None
        tag = asid if by_asid else None
        vpn = va >> self.page_shift
        for cpu in self._tlbi_cpus(broadcast):
            self.tlbs[cpu].invalidate_range(tag, vpn, npages, level)
        if self.checker is not None:
            self.checker.on_tlbi(
                self.current_cpu, broadcast or self.ncpus == 1, "va", tag, vpn, npages, level, last_level
            )

    def dsb(self, domain: str) -> None:
        """Execute ``DSB <domain>`` on ``current_cpu`` (Arm ARM D8.17.8 completion).

        ``ish``/``osh``/``sy`` complete every TLBI this CPU issued; ``nsh``
        completes its local ones; the ``st`` forms order stores only.  A
        completing DSB that has broadcast TLBIs of this CPU outstanding must
        wait for every CPU to finish them (a DVM Sync): counted as
        ``dvm.sync``, the event the cost model prices as completion latency.
        """
        if domain not in DSB_DOMAINS:
            raise ModelUsageError(f"unknown DSB domain {domain!r}; expected one of {', '.join(DSB_DOMAINS)}")
        self.counters.add("dsb." + domain)
        if domain in ("ish", "osh", "sy") and self._dvm_pending[self.current_cpu]:
            self._dvm_pending[self.current_cpu] = False
            self.counters.add(C_DVM_SYNC)
        if self.checker is not None:
            self.checker.on_dsb(self.current_cpu, domain)

    # -- x86 (Flat format) ----------------------------------------------------
    def invlpg(self, cpu: int, asid: int, va: int) -> None:
        """x86 INVLPG (by PCID ``asid``) on ``cpu`` only."""
        self.counters.add("tlbi.INVLPG")
        vpn = va >> self.page_shift
        self.tlbs[cpu].invalidate_range(asid, vpn, 1, None)
        if self.checker is not None:
            self.checker.on_tlbi(cpu, self.ncpus == 1, "va", asid, vpn, 1, None, False, complete=True)

    def invpcid(self, cpu: int, asid: int) -> None:
        """x86 INVPCID single-context: every entry of PCID ``asid`` on ``cpu``."""
        self.counters.add("tlbi.INVPCID")
        self.tlbs[cpu].invalidate_asid(asid)
        if self.checker is not None:
            self.checker.on_tlbi(cpu, self.ncpus == 1, "asid", asid, 0, 1, None, False, complete=True)

    def ipi(self, src: int, dst: int) -> None:
        """Send an inter-processor interrupt (counted; the handler is the caller's)."""
        if not (0 <= src < self.ncpus and 0 <= dst < self.ncpus):
            raise ModelUsageError(f"IPI {src}->{dst}: no such CPU (ncpus={self.ncpus})")
        self.counters.add(C_IPI)
