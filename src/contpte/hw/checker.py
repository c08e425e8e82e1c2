"""Arm ARM rule checker: contiguous sets, break-before-make, TLB conflicts, stale TLB use.

Like the kernel's page_table_check, the checker is told of every
descriptor store (it is the ``PtePool``'s ``StoreObserver``), of the
walker's hardware updates, TLB fills and uses, and of every TLBI and DSB,
and keeps its own record of what it needs; it does not trust the kernel's
sequences.  Rules (stable names, used in ``InvariantViolation.rule``):

- ``contig-consistency`` (Arm ARM D8.7.1, RQTRPM/RJQQTC): in an aligned
  contiguous set, no valid Contiguous entry beside a valid non-Contiguous
  one; the output addresses of the valid Contiguous entries are consecutive
  and the block is aligned; their attributes and permissions are identical,
  ignoring AF and AP[2] where DBM=1 (D8.5.5 RLCGVS).  Checked at every TLB
  fill from a Contiguous descriptor and when the kernel drops a PTL.
- ``bbm`` (D8.17.1 RWHZWS/RDDMVT): a valid->valid change that needs
  break-before-make (memory type, output address of a writable mapping or of
  different contents, Contiguous bit or block size unless FEAT_BBML1/2) was
  made directly, or the new value was written before a broadcast TLBI
  covering the old translation, issued after the break, was completed by a
  DSB.
- ``tlbi-coverage``: the TLBIs after the break reached only part of the
  contiguous block (D8.7.1: maintenance must cover the whole block) or were
  local where a broadcast one was needed.
- ``tlb-conflict`` (D8.17.3, DFSC 0b110000): a TLB fill overlaps an entry of
  another size for the same ASID on the same CPU, unless the CPU promises
  BBML2 without conflict aborts.
- ``stale-tlb``: a user access used a TLB entry that memory no longer
  grants: a write through a writable entry whose descriptor is now
  read-only, invalid or maps another frame; a read through one whose
  descriptor is invalid or maps another frame.  While ``concurrent`` is
  set (another thread's access at a preemption point of a kernel
  operation), a write through an entry made read-only by that operation
  is allowed: its flush is still pending, as fork's is until the end of
  dup_mmap; so is a read through an entry it made invalid (or that a
  fault has since pointed at a new page), and a write through one if no
  other address space maps the frame (the zap's gather holds the frame
  until the flush).  Likewise a descriptor that operation invalidated may be made
  valid again by the other thread (a fault racing with MADV_DONTNEED's
  deferred flush) without the ``bbm`` step-3 TLBI.  The message names the
  address space that used it and every other one that maps the frame.
- ``unobserved-store``: a descriptor changed behind the observers' back (a
  model bug: every store must go through the ``PtePool``).
- ``unflushed-at-return``: when a syscall returns (``take_unflushed``,
  called by the check layer's return check), a translation that memory
  granted and a store removed or reduced during it (made invalid, another
  output address, the write permission or the dirty state taken away) was
  not reached by any TLBI since.  Independent of what the TLBs happen to
  hold: a CPU may cache any valid translation at any time (speculative
  walks, D8.16), so an invalidation is owed for every such store, even of a
  page no access used.  The ASID's own CPUs decide whether a local TLBI is
  enough (those that filled an entry of it): a translation is owed until a
  broadcast TLBI, or a local one on each of those CPUs (x86's shootdown),
  reached it.
- ``freed-frame-in-tlb``: a frame went back to the page allocator while a
  TLB entry of an ASID still in use maps it (``on_frames_free``): the
  invalidation that should have preceded the free was missing or late, and
  the CPU holding the entry may read or write the page after its next
  owner got it.  Entries of an ASID no CPU will use again (a process whose
  address space is torn down) do not count.  Incremental: the TLBs count
  their entries per output frame (``tlb.TlbFrameIndex``).

Incremental state (the cost of each hook follows what changed, never the
size of the machine):

- Per level-3 table slot and per *check block* (a contiguous set; 16
  entries in the Flat format): a 64-bit checksum of the descriptors the
  checker saw stored (position-dependent, XOR of a mix of each non-zero
  descriptor, updated by every store and hardware update), and a dirty bit
  (stored since the table's last PTL release).  ``ptl_release`` verifies
  the checksum of each dirty block against memory (``unobserved-store``)
  and checks its contiguous set.  An unobserved store is thus found at the
  first PTL release after any observed store to the same block;
  ``verify_tables`` checks every block of every table (tests, ``check()``).
  About 0.5 byte per descriptor (4K granule).
- Break records, only where a break is pending: per (ASID, contiguous
  block), the old value and sequence number of each entry made invalid and
  not yet made valid again, and per page the sequence number of the latest
  broadcast TLBI issued, broadcast TLBI completed and local TLBI completed
  that reached it since the record was created.  A TLBI issued before a
  break never counts for it, so TLBIs are recorded only where records
  exist, and a record is dropped as soon as every pending break in it is
  covered (a later make there needs no check).  The same for level-2
  blocks.
- Level-2 descriptors: a shadow per (ASID, level-2 index) of the non-zero
  ones (one per 2 MiB block), checked at each level-2 store.
- Per slot, whether the table is *detached*: unhooked from its level-2
  entry and not yet freed (khugepaged's ``pmdp_collapse_flush`` takes a
  table out, reads and clears its entries, and may hook it in again).  Its
  entries counted as broken at the unhook; its later stores break and make
  nothing, since no walk reaches them; hooked in again, its valid entries
  are makes.

What memory says is read from the pool: the checksums guarantee it is what
the checker saw stored.

Compiled (docs/core.md).  Arm ARM vocabulary; nothing of Linux.
"""

from __future__ import annotations

from typing import Any

import cython
import numpy as np
import numpy.typing as npt

from ..errors import InvariantViolation

if not cython.compiled:
    from ..cdefs import i64, u64
    from .format import L2_BLOCK, L2_INVALID, L2_TABLE, WS_CLEAN, WS_DIRTY, WS_NONE, DescriptorFormat
    from .hashmap import I64Map
    from .memory import PhysMemory
    from .tables import AddressSpace, PtePool, StoreObserver
    from .tlb import TlbFrameIndex
    from .tlbi import DSB_NSH, SCOPE_VA

__all__ = ["RuleChecker", "RULES"]

RULES = (
    "contig-consistency",
    "bbm",
    "tlbi-coverage",
    "tlb-conflict",
    "stale-tlb",
    "unobserved-store",
    "unflushed-at-return",
    "freed-frame-in-tlb",
)

_NEVER = cython.declare(i64, -1)
#: Record slots kept allocated when no break is pending (more are given back).
_RECORDS_KEPT = cython.declare(i64, 128)
#: Record keys pack (asid, block or level-2 index); asid < 2^24 (hw.tlb.ASID_LIMIT).
_KEY_SHIFT = cython.declare(i64, 39)
_KEY_MASK = cython.declare(i64, (1 << 39) - 1)
# which per-page sequence number a TLBI sets
_F_ISSUED = cython.declare(i64, 0)
_F_COVER = cython.declare(i64, 1)
_F_LOCAL = cython.declare(i64, 2)
# checksum mixing (splitmix64)
_M1 = cython.declare(u64, 0x9E3779B97F4A7C15)
_M2 = cython.declare(u64, 0xBF58476D1CE4E5B9)
_M3 = cython.declare(u64, 0x94D049BB133111EB)
_ALL = cython.declare(u64, 0xFFFFFFFFFFFFFFFF)
# _set_fault verdicts
_SET_OK = cython.declare(i64, 0)
_SET_MIS = cython.declare(i64, 1)
_SET_OA = cython.declare(i64, 2)
_SET_ATTR = cython.declare(i64, 3)


@cython.cfunc
@cython.inline
@cython.exceptval(check=False)
def _mix(idx: i64, v: u64) -> u64:
    """The checksum term of descriptor ``v`` at table index ``idx`` (0 for 0)."""
    if v == 0:
        return 0
    z: u64 = (v + ((cython.cast(u64, idx + 1) * _M1) & _ALL)) & _ALL
    z = ((z ^ (z >> 30)) * _M2) & _ALL
    z = ((z ^ (z >> 27)) * _M3) & _ALL
    return z ^ (z >> 31)


def _grown(a: npt.NDArray[np.int64], old: int, new: int, fill: int) -> npt.NDArray[np.int64]:
    """An int64 array of ``new`` rows: the ``old`` first rows of ``a``, then ``fill``."""
    out = np.full(new, fill, dtype=np.int64)
    out[:old] = np.asarray(a)[:old]
    return out


@cython.final
@cython.cclass
class PmdBreak:
    """A pending break of a level-2 block: old value, sequence number, TLBIs since."""

    def __init__(self, old: u64, seq: i64) -> None:
        self.old = old
        self.seq = seq
        self.cover = _NEVER
        self.issued = _NEVER
        self.local = _NEVER


@cython.final
@cython.cclass
class RuleChecker(StoreObserver):
    """Check the Arm ARM rules on every descriptor store, TLB fill, TLB use, TLBI and DSB.

    ``pool``: the machine's descriptor memory (the checker must be its
    observer).  ``fmt``: the descriptor format.  ``features``: the CPUs'
    ``CpuFeatures``.  ``memory``: physical memory (a change of output
    address between frames of equal contents needs no BBM).
    """

    def __init__(
        self, pool: PtePool, fmt: DescriptorFormat, features: Any, ncpus: i64, memory: PhysMemory
    ) -> None:
        self.pool = pool
        self.fmt = fmt
        self.memory = memory
        self.ncpus = ncpus
        self.arm = fmt.has_contiguous  # BBM/contiguous/conflict rules: VMSA only
        self.hd = bool(features.hd)
        self.bbm_level = int(features.bbm_level)
        self.noabort = bool(features.bbml2_noabort)
        #: Set while another thread's access runs in the middle of a kernel
        #: operation (a scheduler's preemption point): an entry whose
        #: descriptor was made read-only and whose flush is still pending
        #: may be used for a write then (fork flushes the parent at the end
        #: of dup_mmap, under the mmap_lock); ``stale-tlb-at-return`` checks
        #: the flush happened by the end of the operation.
        self.concurrent = False
        self.page_shift = pool.page_shift
        self.shift = pool.shift
        self.ptrs = pool.ptrs_per_pte
        self.pmd_shift = pool.pmd_shift
        self.cn = fmt.cont_ptes if self.arm else 16
        self.blk_shift = 0
        while (1 << self.blk_shift) < self.cn:
            self.blk_shift += 1
        self.bpt = self.ptrs >> self.blk_shift
        self.dw = (self.bpt + 63) >> 6
        self.seq = 0
        self.violations = 0
        self.spaces: dict[int, AddressSpace] = {}
        self.nslots = 0
        self.cks = np.zeros(0, dtype=np.uint64)
        self.dirty = np.zeros(0, dtype=np.uint64)
        self.detached = np.zeros(0, dtype=np.uint8)
        self._grow_slots(max(pool.nslots, 16))
        # break records (level 3)
        self.n_brk = 0
        self.brk = I64Map(64)
        self.nrec = 0
        self.rec_free = -1
        self.r_key = np.zeros(0, dtype=np.int64)
        self.r_npend = self.b_seq = self.b_cover = self.b_issued = self.b_local = self.r_key
        self.b_old = np.zeros(0, dtype=np.uint64)
        self._grow_records(16)
        # level 2
        self.pmd_breaks: dict[int, PmdBreak] = {}
        self.pmd_shadow: dict[int, dict[int, int]] = {}
        # TLBIs issued and not completed, per CPU: (seq, broadcast, scope, asid, vpn, npages, level)
        self.pending: list[list[tuple[int, bool, int, int, int, int, int]]] = [[] for _ in range(ncpus)]
        # translations removed or reduced and not yet reached by a TLBI:
        # (asid << _KEY_SHIFT | vpn) -> old descriptor; level-2 ones by pmd index
        self.unflushed: dict[int, int] = {}
        self.unflushed_pmd: dict[int, int] = {}
        # per ASID, the CPUs that filled a TLB entry of it (bit mask)
        self.asid_cpus: dict[int, int] = {}
        # owed translations some CPUs of their ASID invalidated locally
        # (x86's shootdown: INVLPG on each CPU of mm_cpumask): key -> CPU mask
        self.unflushed_cov: dict[int, int] = {}
        self.unflushed_pmd_cov: dict[int, int] = {}
        # freed frames: the TLBs (set by Hardware) and their per-frame entry counts
        self.tlbs: list[Any] = []
        self.frames: TlbFrameIndex | None = None

    # ------------------------------------------------------------------
    # bookkeeping
    # ------------------------------------------------------------------
    def add_space(self, space: AddressSpace) -> None:
        """Know ``space`` (its name appears in stale-tlb reports)."""
        self.spaces[space.asid] = space
        self.pmd_shadow.setdefault(space.asid, {})

    def retire_space(self, space: AddressSpace) -> None:
        """Forget everything about ``space``'s ASID (it is never reused)."""
        asid = space.asid
        self.spaces.pop(asid, None)
        self.pmd_shadow.pop(asid, None)
        self.asid_cpus.pop(asid, None)
        for d in (self.unflushed, self.unflushed_pmd, self.unflushed_cov, self.unflushed_pmd_cov):
            for k in [k for k in d if k >> _KEY_SHIFT == asid]:
                del d[k]
        for key in [k for k in self.pmd_breaks if k >> _KEY_SHIFT == asid]:
            del self.pmd_breaks[key]
        r: i64
        for r in range(self.nrec):
            if self.n_brk == 0:
                break  # (the arrays may have been reset)
            if self.r_key[r] >= 0 and (self.r_key[r] >> _KEY_SHIFT) == asid:
                self._free_record(r)

    def _grow_slots(self, want: int) -> None:
        n = max(want, 2 * int(self.nslots))
        cks = np.zeros(n * self.bpt, dtype=np.uint64)
        cks[: self.nslots * self.bpt] = np.asarray(self.cks)
        dirty = np.zeros(n * self.dw, dtype=np.uint64)
        dirty[: self.nslots * self.dw] = np.asarray(self.dirty)
        detached = np.zeros(n, dtype=np.uint8)
        detached[: self.nslots] = np.asarray(self.detached)
        self.cks = cks
        self.dirty = dirty
        self.detached = detached
        self.nslots = n

    def _grow_records(self, want: int) -> None:
        old = int(self.nrec)
        n = max(want, 2 * old)
        cn = self.cn
        self.r_key = _grown(self.r_key, old, n, -1)
        npend = _grown(self.r_npend, old, n, 0)
        self.b_seq = _grown(self.b_seq, old * cn, n * cn, -1)
        self.b_cover = _grown(self.b_cover, old * cn, n * cn, -1)
        self.b_issued = _grown(self.b_issued, old * cn, n * cn, -1)
        self.b_local = _grown(self.b_local, old * cn, n * cn, -1)
        b_old = np.zeros(n * cn, dtype=np.uint64)
        b_old[: old * cn] = np.asarray(self.b_old)
        self.b_old = b_old
        # the free list is chained through r_npend (-2 - next) of free records
        nxt = np.arange(old + 1, n + 1, dtype=np.int64)
        nxt[n - old - 1] = self.rec_free
        npend[old:n] = -2 - nxt
        self.r_npend = npend
        self.rec_free = old
        self.nrec = n

    @cython.cfunc
    @cython.exceptval(-1, check=True)
    def _new_record(self, key: i64) -> i64:
        if self.rec_free < 0:
            self._grow_records(2 * self.nrec)
        r: i64 = self.rec_free
        self.rec_free = -2 - self.r_npend[r]
        self.r_key[r] = key
        self.r_npend[r] = 0
        self.brk.set(key, r)
        self.n_brk += 1
        return r

    @cython.cfunc
    def _free_record(self, r: i64) -> None:
        cn: i64 = self.cn
        q: i64
        self.brk.pop(self.r_key[r], -1)
        for q in range(r * cn, (r + 1) * cn):
            self.b_old[q] = 0
            self.b_seq[q] = _NEVER
            self.b_cover[q] = _NEVER
            self.b_issued[q] = _NEVER
            self.b_local[q] = _NEVER
        self.r_key[r] = -1
        self.r_npend[r] = -2 - self.rec_free
        self.rec_free = r
        self.n_brk -= 1
        if self.n_brk == 0 and self.nrec > _RECORDS_KEPT:
            self._reset_records()  # the last pending break of a big flush: give the memory back

    def _reset_records(self) -> None:
        """No break is pending: start again with small record arrays."""
        self.brk = I64Map(64)
        self.nrec = 0
        self.rec_free = -1
        z = np.zeros(0, dtype=np.int64)
        self.r_key = self.r_npend = self.b_seq = self.b_cover = self.b_issued = self.b_local = z
        self.b_old = np.zeros(0, dtype=np.uint64)
        self._grow_records(16)

    def memory_bytes(self) -> int:
        """Bytes of the checker's arrays (per-table checksums and dirty bits, break records)."""
        arrays = [
            np.asarray(self.cks),
            np.asarray(self.dirty),
            np.asarray(self.r_key),
            np.asarray(self.r_npend),
            np.asarray(self.b_old),
            np.asarray(self.b_seq),
            np.asarray(self.b_cover),
            np.asarray(self.b_issued),
            np.asarray(self.b_local),
            np.asarray(self.brk.keys),
            np.asarray(self.brk.vals),
        ]
        return sum(int(a.nbytes) for a in arrays)

    @cython.ccall
    def on_frames_free(self, pfn: i64, npages: i64) -> None:
        """Frames ``[pfn, pfn+npages)`` go back to the allocator: no live TLB entry may map them."""
        if self.frames is None:
            return
        f: i64 = self.frames.first_mapped(pfn, npages)
        if f < 0:
            return
        held: list[str] = []
        va = 0
        for cpu, t in enumerate(self.tlbs):
            for e in t.entries_mapping(f):
                if not held:
                    va = (e.vbase + f - e.pfn_base) << self.page_shift
                sp = self.spaces.get(e.asid)
                who = sp.name if sp is not None and sp.name else f"ASID {e.asid}"
                held.append(f"CPU {cpu}: {who} VA {e.vbase << self.page_shift:#x} ({e.npages} pages)")
        self._raise(
            "freed-frame-in-tlb",
            f"frame {f:#x} returned to the page allocator while a TLB still maps it "
            f"({'; '.join(held) or 'an entry'}): the TLB flush must come before the free",
            va,
            [],
        )

    @cython.cfunc
    def _raise(self, rule: str, message: str, addr: i64, ptes: Any) -> None:
        self.violations += 1
        raise InvariantViolation(rule, message, addr, ptes)

    @cython.cfunc
    @cython.inline
    @cython.exceptval(-1, check=True)
    def _vpn(self, ptep: i64) -> i64:
        """The page number descriptor ``ptep`` maps."""
        pmd_index: i64 = int(self.pool.slot_pmd[ptep >> self.shift])
        return (pmd_index << self.shift) | (ptep & (self.ptrs - 1))

    # ------------------------------------------------------------------
    # BBM predicate (Arm ARM D8.17.1 RWHZWS)
    # ------------------------------------------------------------------
    @cython.ccall
    @cython.exceptval(-1, check=True)
    def needs_bbm(self, old: u64, new: u64) -> cython.bint:
        """Does the valid->valid change ``old`` -> ``new`` need break-before-make?"""
        fmt: DescriptorFormat = self.fmt
        po: i64 = fmt.pfn(old)
        pn: i64 = fmt.pfn(new)
        nf: i64 = self.memory.nr_frames
        differs: cython.bint = True
        if po < nf and pn < nf:
            differs = self.memory.v[po] != self.memory.v[pn]
        writable: cython.bint = fmt.writable(old, self.hd) or fmt.writable(new, self.hd)
        if (po != pn and (writable or differs)) or (old & fmt.memtype_mask) != (new & fmt.memtype_mask):
            return True
        return self.bbm_level == 0 and ((old ^ new) & fmt.cont_bit) != 0

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def reduces(self, old: u64, new: u64) -> cython.bint:
        """Does ``new`` grant less than the valid ``old`` (a TLB entry of ``old`` would be stale)?

        Made invalid, another output address, or a write that needed no
        walk under ``old`` (writable-dirty; writable-clean too with hardware
        dirty management) needs one or faults under ``new``.  Changes of the
        Access flag, the Contiguous bit and software bits grant nothing less.
        """
        fmt: DescriptorFormat = self.fmt
        if not fmt.page_valid(old):
            return False
        if not fmt.page_valid(new):
            return True
        return self._grants_less(old, new)

    @cython.cfunc
    @cython.exceptval(-1, check=True)
    def _grants_less(self, old: u64, new: u64) -> cython.bint:
        """``reduces`` for two valid descriptors of the same kind (pages, or level-2 blocks)."""
        fmt: DescriptorFormat = self.fmt
        if fmt.pfn(old) != fmt.pfn(new):
            return True
        wo: i64 = fmt.write_state(old)
        if wo == WS_DIRTY:
            return fmt.write_state(new) != WS_DIRTY
        return self.hd and wo == WS_CLEAN and fmt.write_state(new) == WS_NONE

    @cython.ccall
    def note_walk(self, asid: i64, cpu: i64) -> None:
        """``cpu`` walked (and may cache) translations of ``asid``: a local TLBI elsewhere misses it."""
        bit: i64 = 1 << cpu
        m: i64 = self.asid_cpus.get(asid, 0)
        if not m & bit:
            self.asid_cpus[asid] = m | bit

    @cython.ccall
    def take_unflushed(self) -> Any:
        """At a syscall's return: the first translation owed an invalidation, or None; forget them all.

        A translation is owed one if memory now grants less than it did when
        the step first removed or reduced it (a change undone within the
        step, e.g. a Contiguous-bit conversion under BBML2 that clears and
        rewrites the same entries without a TLBI, owes nothing).  Returns
        ``(va, old descriptor, level, asid)``.
        """
        if not self.unflushed and not self.unflushed_pmd:
            return None
        fmt: DescriptorFormat = self.fmt
        got = None
        key: i64
        cur: u64
        for key in sorted(self.unflushed):
            space = self.spaces.get(key >> _KEY_SHIFT)
            if space is None:
                continue
            vpn: i64 = key & _KEY_MASK
            sl: i64 = space.pte_table(vpn >> self.shift)
            cur = self.pool.e[(sl << self.shift) | (vpn & (self.ptrs - 1))] if sl >= 0 else 0
            old: u64 = self.unflushed[key]
            if self.reduces(old, cur):
                got = (vpn << self.page_shift, old, 3, key >> _KEY_SHIFT)
                break
        if got is None:
            for key in sorted(self.unflushed_pmd):
                sh = self.pmd_shadow.get(key >> _KEY_SHIFT)
                old2: u64 = self.unflushed_pmd[key]
                cur = sh.get(key & _KEY_MASK, 0) if sh is not None else 0
                k2: i64 = fmt.l2_kind(old2)
                if fmt.l2_kind(cur) == k2 and (
                    (k2 == L2_TABLE and fmt.pfn(cur) == fmt.pfn(old2))
                    or (k2 == L2_BLOCK and not self._grants_less(old2, cur))
                ):
                    continue
                got = ((key & _KEY_MASK) << self.pmd_shift, old2, 2, key >> _KEY_SHIFT)
                break
        self.unflushed.clear()
        self.unflushed_pmd.clear()
        self.unflushed_cov.clear()
        self.unflushed_pmd_cov.clear()
        return got

    @cython.cfunc
    def _drop_unflushed(
        self, cpu: i64, broadcast: cython.bint, scope: i64, asid: i64, vpn: i64, npages: i64, level: i64
    ) -> None:
        """A TLBI reached these translations: they are owed nothing more.

        A local TLBI for an ASID that another CPU walked settles an entry
        only once a local TLBI (or a broadcast one) reached it on every CPU
        of the ASID (the x86-style shootdown): until then the CPUs it
        reached are kept in the entry's coverage mask.
        """
        bit: i64 = 1 << cpu
        need: i64 = self.asid_cpus.get(asid, 0) if asid >= 0 else 0
        local: cython.bint = not broadcast and (need & ~bit) != 0
        c: i64
        k: i64
        if self.unflushed and (level == 0 or level == 3):
            for k in self._reached(self.unflushed, False, cpu, broadcast, scope, asid, vpn, npages):
                if local:
                    c = self.unflushed_cov.get(k, 0) | bit
                    if need & ~c:
                        self.unflushed_cov[k] = c
                        continue
                del self.unflushed[k]
                self.unflushed_cov.pop(k, None)
        if self.unflushed_pmd and level != 3:
            for k in self._reached(self.unflushed_pmd, True, cpu, broadcast, scope, asid, vpn, npages):
                if local:
                    c = self.unflushed_pmd_cov.get(k, 0) | bit
                    if need & ~c:
                        self.unflushed_pmd_cov[k] = c
                        continue
                del self.unflushed_pmd[k]
                self.unflushed_pmd_cov.pop(k, None)

    @cython.cfunc
    def _reached(
        self,
        owed: Any,
        pmd: cython.bint,
        cpu: i64,
        broadcast: cython.bint,
        scope: i64,
        asid: i64,
        vpn: i64,
        npages: i64,
    ) -> Any:
        """The keys of dict ``owed`` (pages, or level-2 entries with ``pmd``) a TLBI's scope reaches, as a list.

        A local TLBI for every ASID (``asid`` -1) reaches only the ASIDs no
        other CPU walked.
        """
        k: i64
        base: i64
        if scope == SCOPE_VA and asid >= 0 and not pmd and npages <= len(owed):
            base = asid << _KEY_SHIFT
            return [base | p for p in range(vpn, vpn + npages) if (base | p) in owed]
        lo: i64 = vpn >> self.shift if pmd else vpn
        hi: i64 = (vpn + npages - 1) >> self.shift if pmd else vpn + npages - 1
        out: list[int] = []
        for k in owed:
            if asid >= 0 and (k >> _KEY_SHIFT) != asid:
                continue
            if scope == SCOPE_VA and not lo <= (k & _KEY_MASK) <= hi:
                continue
            if not broadcast and asid < 0 and (self.asid_cpus.get(k >> _KEY_SHIFT, 0) & ~(1 << cpu)):
                continue
            out.append(k)
        return out

    # ------------------------------------------------------------------
    # descriptor stores (StoreObserver)
    # ------------------------------------------------------------------
    @cython.ccall
    def on_store(self, ptep: i64, old: u64, new: u64) -> None:
        """Software stored ``new`` over ``old`` at ``ptep``: check BBM, note the change."""
        idx: i64 = ptep & (self.ptrs - 1)
        s: i64 = ptep >> self.shift
        b: i64 = idx >> self.blk_shift
        self.cks[s * self.bpt + b] ^= _mix(idx, old) ^ _mix(idx, new)
        self.dirty[s * self.dw + (b >> 6)] |= cython.cast(u64, 1) << (b & 63)
        if old != new and not self.detached[s] and self.reduces(old, new):
            key: i64 = (cython.cast(i64, self.pool.slot_asid[s]) << _KEY_SHIFT) | self._vpn(ptep)
            if key not in self.unflushed:
                self.unflushed[key] = old
                if self.unflushed_cov:
                    self.unflushed_cov.pop(key, None)
        if not self.arm or old == new or self.detached[s]:
            # A table no level-2 entry points to is out of the walker's
            # reach: its stores break and make nothing (its entries counted
            # as broken when it was unhooked).
            return
        fmt: DescriptorFormat = self.fmt
        ov: cython.bint = (old & fmt.valid_mask) == fmt.valid_val
        nv: cython.bint = (new & fmt.valid_mask) == fmt.valid_val
        if ov and nv:
            if (old ^ new) & fmt.bbm_bits and self.needs_bbm(old, new):
                self._raise(
                    "bbm",
                    f"valid descriptor {old:#x} replaced by {new:#x} without break-before-make (D8.17.1 RWHZWS)",
                    self._vpn(ptep) << self.page_shift,
                    [old, new],
                )
        elif ov:
            self.seq += 1
            self._record_break(ptep, old)
        elif nv and (self.n_brk or self.pmd_breaks):
            self._check_make(ptep, new)

    @cython.cfunc
    def _record_break(self, ptep: i64, old: u64) -> None:
        """Entry ``ptep`` was made invalid: remember its old value until a TLBI covers it."""
        s: i64 = ptep >> self.shift
        vpn: i64 = self._vpn(ptep)
        asid: i64 = int(self.pool.slot_asid[s])
        key: i64 = (asid << _KEY_SHIFT) | (vpn >> self.blk_shift)
        r: i64 = self.brk.get(key, -1)
        if r < 0:
            r = self._new_record(key)
        j: i64 = r * self.cn + (vpn & (self.cn - 1))
        if self.b_seq[j] == _NEVER:
            self.r_npend[r] += 1
        self.b_old[j] = old
        self.b_seq[j] = self.seq

    @cython.cfunc
    def _check_make(self, ptep: i64, new: u64) -> None:
        """Entry ``ptep`` is made valid: was a pending break of it (or of its level-2 block) flushed?"""
        s: i64 = ptep >> self.shift
        asid: i64 = int(self.pool.slot_asid[s])
        pmd_index: i64 = int(self.pool.slot_pmd[s])
        if self.pmd_breaks:
            pb = self.pmd_breaks.get((asid << _KEY_SHIFT) | pmd_index)
            if pb is not None:
                self._check_pmd_break_covered(pb, asid, pmd_index, "level-3 descriptors written")
        if not self.n_brk:
            return
        vpn: i64 = self._vpn(ptep)
        r: i64 = self.brk.get((asid << _KEY_SHIFT) | (vpn >> self.blk_shift), -1)
        if r < 0:
            return
        off: i64 = vpn & (self.cn - 1)
        j: i64 = r * self.cn + off
        if self.b_seq[j] == _NEVER:
            return
        old: u64 = int(self.b_old[j])
        if self.needs_bbm(old, new):
            self._check_break_covered(r, off, vpn, old, new)
        self.b_old[j] = 0
        self.b_seq[j] = _NEVER
        self.r_npend[r] -= 1
        if self.r_npend[r] == 0:
            self._free_record(r)

    @cython.cfunc
    def _check_break_covered(self, r: i64, off: i64, vpn: i64, old: u64, new: u64) -> None:
        """Entry ``off`` of record ``r`` is made valid again: was its old translation flushed (RDDMVT)?"""
        cn: i64 = self.cn
        base: i64 = r * cn
        seq: i64 = int(self.b_seq[base + off])
        lo: i64
        hi: i64
        # Only an old *contiguous* translation may be cached for the whole
        # block; a new contiguous entry replacing a lone page needs just that
        # page flushed (munmap of a 4K page, then a 64K folio mapped there).
        if self.fmt.cont(old):
            lo, hi = 0, cn
            what = f"the whole {cn}-entry contiguous block"
        else:
            lo, hi = off, off + 1
            what = "the page"
        ndone: i64 = 0
        nissued: i64 = 0
        nlocal: i64 = 0
        nany: i64 = 0
        q: i64
        d: cython.bint
        for q in range(base + lo, base + hi):
            d = self.b_cover[q] > seq
            ndone += d
            nissued += d or self.b_issued[q] > seq
            nlocal += d or self.b_local[q] > seq
            nany += d or self.b_issued[q] > seq or self.b_local[q] > seq
        n: i64 = hi - lo
        if ndone == n:
            return
        va: i64 = vpn << self.page_shift
        ptes = [old, new]
        if ndone:
            self._raise(
                "tlbi-coverage",
                f"the TLBIs after the break covered {ndone} of {n} pages; they must cover {what} (D8.7.1)",
                va,
                ptes,
            )
        if nissued == n:
            self._raise(
                "bbm",
                "new descriptor written before the TLBI after the break was completed by a DSB ISH "
                "(D8.17.1 RDDMVT step 4)",
                va,
                ptes,
            )
        if nlocal == n:
            self._raise(
                "tlbi-coverage",
                "the TLBI after the break was local (no IS); other CPUs may still hold the old translation",
                va,
                ptes,
            )
        if nany:
            self._raise("tlbi-coverage", f"the TLBIs after the break did not cover {what} (D8.7.1)", va, ptes)
        if self.concurrent:
            # Another thread's step at a preemption point maps the entry that
            # the interrupted operation cleared and has not flushed yet (a
            # fault during MADV_DONTNEED's zap): Linux lets it, the gather
            # keeps the old page until the flush; a CPU may use the old or
            # the new translation until then (and caching both sizes at once
            # is the tlb-conflict rule's).
            return
        self._raise(
            "bbm",
            "descriptor invalidated and rewritten with no TLBI in between (D8.17.1 RDDMVT step 3)",
            va,
            ptes,
        )

    @cython.cfunc
    def _check_pmd_break_covered(self, pb: PmdBreak, asid: i64, pmd_index: i64, what: str) -> None:
        """A translation is written where a level-2 block was broken: was the break flushed?"""
        seq: i64 = pb.seq
        if pb.cover > seq:
            del self.pmd_breaks[(asid << _KEY_SHIFT) | pmd_index]
            return
        if pb.issued > seq:
            msg = "the TLBI after the level-2 break was not completed by a DSB ISH"
            rule = "bbm"
        elif pb.local > seq:
            msg = "the TLBI after the level-2 break was local (no IS)"
            rule = "tlbi-coverage"
        else:
            msg = "no TLBI after the level-2 block was invalidated"
            rule = "bbm"
        self._raise(rule, f"{what}: {msg} (D8.17.1 RDDMVT)", pmd_index << self.pmd_shift, [pb.old])

    @cython.ccall
    def on_hw_update(self, ptep: i64, old: u64, new: u64) -> None:
        """The walker atomically updated AF/AP[2] of ``ptep`` (not a software store)."""
        idx: i64 = ptep & (self.ptrs - 1)
        s: i64 = ptep >> self.shift
        b: i64 = idx >> self.blk_shift
        self.cks[s * self.bpt + b] ^= _mix(idx, old) ^ _mix(idx, new)
        self.dirty[s * self.dw + (b >> 6)] |= cython.cast(u64, 1) << (b & 63)

    @cython.ccall
    def on_table_alloc(self, space: AddressSpace, pmd_index: i64, slot: i64) -> None:
        """A level-3 table was hooked in: a new one (zeroed: its checksums start
        at zero), or one unhooked earlier and hooked back with its entries
        (khugepaged's ``pmd_populate`` of the table it took out).

        A table hooked back has the checksums of what the checker saw stored
        in it while detached (recomputed from memory, since a detached slot
        may also have been freed and zeroed meanwhile); its valid entries
        become reachable again, so each is a *make* of its translation
        (checked against pending breaks), and every block is checked at the
        next PTL release.
        """
        if slot >= self.nslots:
            self._grow_slots(slot + 1)
        i: i64
        b: i64
        q: i64
        d: u64
        x: u64
        p0: i64
        if not self.detached[slot]:
            for i in range(slot * self.bpt, (slot + 1) * self.bpt):
                self.cks[i] = 0
            for i in range(slot * self.dw, (slot + 1) * self.dw):
                self.dirty[i] = 0
            return
        self.detached[slot] = 0
        fmt: DescriptorFormat = self.fmt
        for b in range(self.bpt):
            p0 = (slot << self.shift) | (b << self.blk_shift)
            x = 0
            for q in range(self.cn):
                d = int(self.pool.e[p0 + q])
                x ^= _mix((b << self.blk_shift) + q, d)
                if self.arm and (d & fmt.valid_mask) == fmt.valid_val and (self.n_brk or self.pmd_breaks):
                    self._check_make(p0 + q, d)
            self.cks[slot * self.bpt + b] = x
            if x:
                self.dirty[slot * self.dw + (b >> 6)] |= cython.cast(u64, 1) << (b & 63)

    @cython.ccall
    def on_table_free(self, space: AddressSpace, pmd_index: i64, slot: i64) -> None:
        """A level-3 table is unhooked: its valid entries count as broken now.

        Until it is hooked in again (or freed and reused), its stores are
        out of the walker's reach (``detached``).
        """
        if slot >= self.nslots:
            self._grow_slots(slot + 1)
        self.detached[slot] = 1
        if not self.arm:
            return
        fmt: DescriptorFormat = self.fmt
        p: i64
        d: u64
        first: cython.bint = True
        for p in range(slot << self.shift, (slot + 1) << self.shift):
            d = int(self.pool.e[p])
            if (d & fmt.valid_mask) == fmt.valid_val:
                if first:
                    self.seq += 1
                    first = False
                self._record_break(p, d)

    @cython.ccall
    def on_pmd_store(self, space: AddressSpace, pmd_index: i64, old: u64, new: u64) -> None:
        """Software stored level-2 descriptor ``new`` over ``old``."""
        sh = self.pmd_shadow.get(space.asid)
        if sh is None:
            self.add_space(space)
            sh = self.pmd_shadow[space.asid]
        cur: u64 = sh.get(pmd_index, 0)
        va: i64 = pmd_index << self.pmd_shift
        if cur != old:
            self._raise(
                "unobserved-store",
                f"level-2 descriptor changed without a store the checker saw: shadow {cur:#x}, memory {old:#x}",
                va,
                None,
            )
        self.seq += 1
        if new:
            sh[pmd_index] = new
        else:
            sh.pop(pmd_index, None)
        fmt: DescriptorFormat = self.fmt
        ok2: i64 = fmt.l2_kind(old)
        if ok2 != L2_INVALID and old != new:
            # A block removed or reduced, or a table unhooked (its entries
            # leave the walker's reach at once): invalidation owed.
            nk2: i64 = fmt.l2_kind(new)
            if (
                ok2 != nk2
                or (ok2 == L2_TABLE and fmt.pfn(old) != fmt.pfn(new))
                or (ok2 == L2_BLOCK and self._grants_less(old, new))
            ):
                key2: i64 = (space.asid << _KEY_SHIFT) | pmd_index
                if key2 not in self.unflushed_pmd:
                    self.unflushed_pmd[key2] = old
                    if self.unflushed_pmd_cov:
                        self.unflushed_pmd_cov.pop(key2, None)
        if not self.arm:
            return
        ob: cython.bint = old != 0 and fmt.l2_kind(old) == L2_BLOCK
        nb: cython.bint = new != 0 and fmt.l2_kind(new) == L2_BLOCK
        key: i64 = (space.asid << _KEY_SHIFT) | pmd_index
        if ob and nb and old != new:
            if self.needs_bbm(old, new):
                self._raise(
                    "bbm", "valid level-2 block replaced without break-before-make (D8.17.1)", va, [old, new]
                )
        elif ob and not nb:
            self.pmd_breaks[key] = PmdBreak(old, self.seq)
        elif nb and not ob:
            pb = self.pmd_breaks.get(key)
            if pb is not None:
                if self.needs_bbm(pb.old, new):
                    self._check_pmd_break_covered(pb, space.asid, pmd_index, "level-2 block written")
                self.pmd_breaks.pop(key, None)
            if self.n_brk:
                self._pmd_over_breaks(space.asid, pmd_index, new)

    @cython.cfunc
    def _pmd_over_breaks(self, asid: i64, pmd_index: i64, new: u64) -> None:
        """A level-2 block is written over level-3 translations: a size change (D8.17.1).

        Every pending level-3 break of the region must have been flushed
        (without FEAT_BBML1/2); then none is pending any more.
        """
        cn: i64 = self.cn
        b0: i64 = (pmd_index << self.shift) >> self.blk_shift
        b: i64
        r: i64
        q: i64
        vpn: i64
        for b in range(b0, b0 + self.bpt):
            r = self.brk.get((asid << _KEY_SHIFT) | b, -1)
            if r < 0:
                continue
            if self.bbm_level == 0:
                for q in range(r * cn, (r + 1) * cn):
                    if self.b_seq[q] != _NEVER and not self.b_cover[q] > self.b_seq[q]:
                        vpn = (b << self.blk_shift) | (q - r * cn)
                        self._raise(
                            "bbm",
                            "level-2 block written over level-3 translations that were never flushed "
                            "(size change, D8.17.1)",
                            vpn << self.page_shift,
                            [int(self.b_old[q]), new],
                        )
            self._free_record(r)

    @cython.ccall
    def on_pmd_hw_update(self, space: AddressSpace, pmd_index: i64, old: u64, new: u64) -> None:
        """The walker's Access flag / dirty update of a level-2 block descriptor."""
        sh = self.pmd_shadow.get(space.asid)
        if sh is None:
            self.add_space(space)
            sh = self.pmd_shadow[space.asid]
        sh[pmd_index] = new

    # ------------------------------------------------------------------
    # contiguous-set consistency (D8.7.1) and the PTL release
    # ------------------------------------------------------------------
    @cython.cfunc
    @cython.exceptval(-1, check=True)
    def _set_fault(self, p0: i64) -> i64:
        """``_SET_*``: is the aligned contiguous set of descriptors from ``p0`` consistent?"""
        fmt: DescriptorFormat = self.fmt
        cn: i64 = self.cn
        has_c: cython.bint = False
        mis: cython.bint = False
        first: i64 = -1
        q: i64
        d: u64
        for q in range(cn):
            d = int(self.pool.e[p0 + q])
            if (d & fmt.valid_mask) == fmt.valid_val:
                if d & fmt.cont_bit:
                    has_c = True
                    if first < 0:
                        first = q
                else:
                    mis = True
        if not has_c:
            return _SET_OK
        if mis:
            return _SET_MIS
        d0: u64 = int(self.pool.e[p0 + first])
        b0: i64 = fmt.pfn(d0) - first
        key0: u64 = fmt.prot_key(d0, self.hd)
        oa_bad: cython.bint = b0 % cn != 0
        attr_bad: cython.bint = False
        # the set's first Contiguous entry's output address, as entry 0's
        oa0: u64 = (d0 & fmt.oa_mask) - (cython.cast(u64, first) << self.page_shift)
        step: u64 = cython.cast(u64, 1) << self.page_shift
        dbm: u64 = fmt.dbm_bit if self.hd else 0
        key: u64
        for q in range(first + 1, cn):
            d = int(self.pool.e[p0 + q])
            if (d & fmt.valid_mask) == fmt.valid_val and d & fmt.cont_bit:
                if (d & fmt.oa_mask) != (oa0 + cython.cast(u64, q) * step) & _ALL:
                    oa_bad = True
                key = d & (fmt.key_mask_dbm if d & dbm else fmt.key_mask)
                if key != key0:
                    attr_bad = True
        if oa_bad:
            return _SET_OA
        if attr_bad:
            return _SET_ATTR
        return _SET_OK

    @cython.cfunc
    def _check_set(self, p0: i64, cpu: i64) -> None:
        """Raise ``contig-consistency`` if the set from ``p0`` is inconsistent.

        ``cpu``: the CPU of the TLB fill that looks at it, -1 for a PTL release.
        """
        f: i64 = self._set_fault(p0)
        if f == _SET_OK:
            return
        when = "PTL release" if cpu < 0 else f"TLB fill on CPU {cpu}"
        if f == _SET_MIS:
            why = "valid Contiguous and valid non-Contiguous entries in one set (misprogrammed, RQTRPM)"
        elif f == _SET_OA:
            why = "output addresses not consecutive or block not aligned"
        else:
            why = "attributes or permissions differ (ignoring AF and AP[2] with DBM, RJQQTC)"
        self._raise(
            "contig-consistency",
            f"{why}, at {when}",
            self._vpn(p0) << self.page_shift,
            [int(self.pool.e[p0 + q]) for q in range(self.cn)],
        )

    @cython.cfunc
    def _verify_block(self, s: i64, b: i64) -> None:
        """Raise ``unobserved-store`` if block ``b`` of slot ``s`` is not what the checker saw stored."""
        cn: i64 = self.cn
        i0: i64 = b << self.blk_shift
        p0: i64 = (s << self.shift) | i0
        x: u64 = 0
        q: i64
        d: u64
        for q in range(cn):
            d = int(self.pool.e[p0 + q])
            x ^= _mix(i0 + q, d)
        want: u64 = int(self.cks[s * self.bpt + b])
        if x != want:
            self._raise(
                "unobserved-store",
                f"a descriptor of this {cn}-entry block changed without a store the checker saw "
                "(checksum of the stores it saw differs from memory)",
                self._vpn(p0) << self.page_shift,
                [int(self.pool.e[p0 + q]) for q in range(cn)],
            )

    @cython.ccall
    def ptl_release(self, space: AddressSpace, slot: i64) -> None:
        """The kernel drops the PTL of the level-3 table in ``slot`` of ``space``.

        Every block stored since the last release must be what the checker
        saw stored, and (VMSA) every contiguous set in it consistent.
        """
        if slot < 0 or slot >= self.nslots:
            return
        w: i64
        b: i64
        word: u64
        bit: u64
        for w in range(slot * self.dw, (slot + 1) * self.dw):
            word = int(self.dirty[w])
            while word:
                bit = word ^ (word & (word - 1))
                b = (w - slot * self.dw) * 64 + _ctz(bit)
                self._verify_block(slot, b)
                if self.arm:
                    self._check_set((slot << self.shift) | (b << self.blk_shift), -1)
                word ^= bit
                self.dirty[w] = word

    def verify_tables(self) -> None:
        """Check every block of every level-3 table (checksums and, VMSA, contiguous sets).

        Not incremental: O(every table).  For tests and explicit checks.
        """
        pool = self.pool
        for s in range(int(pool.nslots)):
            if int(pool.slot_asid[s]) < 0:
                continue
            for b in range(int(self.bpt)):
                self._verify_block(s, b)
                if self.arm:
                    self._check_set((s << self.shift) | (b << self.blk_shift), -1)

    # ------------------------------------------------------------------
    # TLB fill and use
    # ------------------------------------------------------------------
    @cython.ccall
    def on_fill(
        self,
        cpu: i64,
        space: AddressSpace,
        vbase: i64,
        npages: i64,
        desc: u64,
        ptep: i64,
        level: i64,
        overlaps: i64,
        ov_npages: i64,
        ov_desc: u64,
    ) -> None:
        """A walk on ``cpu`` fills an entry of ``npages`` pages from ``vbase`` made from ``desc``.

        ``ptep``: the producing descriptor (-1: a level-2 block).
        ``overlaps``: entries of another size it overlaps (the first has
        ``ov_npages`` pages and descriptor ``ov_desc``).
        """
        if not self.arm:
            return
        if level == 3 and desc & self.fmt.cont_bit:
            self._check_set(ptep & ~(self.cn - 1), cpu)
        if overlaps and not self.noabort:
            self._raise(
                "tlb-conflict",
                f"TLB conflict abort (DFSC 0b110000) on CPU {cpu}: fill of a {npages}-page entry "
                f"overlaps a {ov_npages}-page entry for ASID {space.asid} (D8.17.3)",
                vbase << self.page_shift,
                [desc, ov_desc],
            )

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def tlb_use_ok(
        self, space: AddressSpace, vpn: i64, n: i64, ptep: i64, pfn: i64, write: cython.bint
    ) -> i64:
        """How many of ``n`` pages from ``vpn``, served by one TLB entry, memory still grants.

        The entry was made from descriptor ``ptep`` (-1: a level-2 block)
        and gives ``vpn`` frame ``pfn`` (``vpn + i`` frame ``pfn + i``); the
        pages lie in one level-2 region.  The leading pages that
        ``on_tlb_use`` would accept; the access path checks a run of hits
        at once and calls ``on_tlb_use`` (which raises) for the first page
        that is not.
        """
        fmt: DescriptorFormat = self.fmt
        pmd_index: i64 = vpn >> self.shift
        mask: i64 = self.ptrs - 1
        d: u64
        q: i64
        s: i64 = -1
        if space.pmds:
            v = space.pmds.get(pmd_index)
            if v is not None:
                d = v
                if fmt.l2_kind(d) == L2_BLOCK:
                    if (fmt.pfn(d) & ~mask) + (vpn & mask) != pfn or (write and not self._grants_write(d)):
                        return 0
                    return n
        if ptep >= 0:
            s = ptep >> self.shift
            if self.pool.slot_asid[s] != space.asid or self.pool.slot_pmd[s] != pmd_index:
                s = -1
        if s < 0:
            s = space.pte_table(pmd_index)
            if s < 0:
                return 0
        p: i64 = (s << self.shift) | (vpn & mask)
        pool: PtePool = self.pool
        vm: u64 = fmt.valid_mask
        vv: u64 = fmt.valid_val
        oa: u64 = fmt.oa_mask
        want: u64 = cython.cast(u64, pfn) << self.page_shift
        step: u64 = cython.cast(u64, 1) << self.page_shift
        for q in range(n):
            d = int(pool.e[p + q])
            if (d & vm) != vv or (d & oa) != want:
                return q
            if write and not self._grants_write(d):
                return q
            want += step
        return n

    @cython.cfunc
    @cython.inline
    @cython.exceptval(check=False)
    def _grants_write(self, d: u64) -> cython.bint:
        """Descriptor ``d`` lets EL0 write (writable-clean counts with hardware dirty management)."""
        fmt: DescriptorFormat = self.fmt
        if not d & fmt.user_bit:
            return False
        if (d & fmt.dirty_mask) == fmt.dirty_val:
            return True
        return self.hd and (d & fmt.clean_mask) == fmt.clean_val

    @cython.ccall
    def on_tlb_use(
        self, cpu: i64, space: AddressSpace, vpn: i64, ptep: i64, pfn: i64, desc: u64, write: cython.bint
    ) -> None:
        """A user access on ``cpu`` is served by a TLB entry: is it still what memory says?

        ``ptep``: the descriptor that produced the entry (-1: a level-2
        block); ``pfn``: the frame the entry gives ``vpn``; ``desc``: the
        entry's descriptor.
        """
        if self.tlb_use_ok(space, vpn, 1, ptep, pfn, write) == 1:
            return
        # What memory says (for the message).
        fmt: DescriptorFormat = self.fmt
        pmd_index: i64 = vpn >> self.shift
        mask: i64 = self.ptrs - 1
        d: u64 = 0
        mpfn: i64 = -1
        v = space.pmds.get(pmd_index)
        if v is not None and fmt.l2_kind(v) == L2_BLOCK:
            d = v
            mpfn = (fmt.pfn(d) & ~mask) + (vpn & mask)
        else:
            s: i64 = space.pte_table(pmd_index)
            if s >= 0:
                d = int(self.pool.e[(s << self.shift) | (vpn & mask)])
                if (d & fmt.valid_mask) == fmt.valid_val:
                    mpfn = fmt.pfn(d)
        if mpfn == pfn:
            if self.concurrent:
                return  # the downgrade's flush is still pending in the interrupted operation
            why = "the descriptor is now read-only"
        else:
            if self.concurrent and (not write or not self._mappers(pfn, space)):
                # A zap cleared it and its flush is pending (MADV_DONTNEED at
                # zap_pte_range), and another thread's fault may since have
                # mapped a new page over the cleared entry: the gather still
                # holds the old page, so a read sees what this address space
                # mapped there (the same content as any other mapper of the
                # frame); a write lands in it, which nobody else maps, and is
                # lost with it.
                return
            why = "the descriptor is now invalid" if mpfn < 0 else f"the descriptor now maps pfn {mpfn:#x}"
        also = ", ".join(self._mappers(pfn, space)) or "no other address space"
        kind = "wrote" if write else "read"
        self._raise(
            "stale-tlb",
            f"isolation breach: {space.name} {kind} pfn {pfn:#x} through a stale TLB entry on CPU {cpu} "
            f"({why}); the frame is also mapped by: {also}",
            vpn << self.page_shift,
            [desc, d],
        )

    def _mappers(self, pfn: int, exclude: AddressSpace) -> list[str]:
        """Names of the other address spaces whose descriptors map frame ``pfn`` (slow scan)."""
        fmt: DescriptorFormat = self.fmt
        ptrs = int(self.ptrs)
        e = np.asarray(self.pool.e)
        out = []
        for space in self.spaces.values():
            if space is exclude:
                continue
            hit = False
            for v in space.pmds.values():
                if fmt.l2_kind(v) == L2_BLOCK:
                    b = fmt.pfn(v) & ~(ptrs - 1)
                    if b <= pfn < b + ptrs:
                        hit = True
                        break
            if not hit:
                for s in space.tables.values():
                    vals = e[s * ptrs : (s + 1) * ptrs]
                    for v in vals[vals != 0].tolist():
                        if fmt.page_valid(v) and fmt.pfn(v) == pfn:
                            hit = True
                            break
                    if hit:
                        break
            if hit:
                out.append(space.name)
        return out

    # ------------------------------------------------------------------
    # TLB maintenance
    # ------------------------------------------------------------------
    @cython.ccall
    def on_tlbi(
        self,
        cpu: i64,
        broadcast: cython.bint,
        scope: i64,
        asid: i64,
        vpn: i64,
        npages: i64,
        level: i64,
        complete: cython.bint,
    ) -> None:
        """Record a TLBI issued by ``cpu``.

        ``broadcast``: it reaches every CPU.  ``scope``: ``SCOPE_VA``
        (``npages`` pages from ``vpn``), ``SCOPE_ASID`` or ``SCOPE_ALL``.
        ``asid``: -1 for every ASID.  ``level``: the TTL hint's level (only
        entries of that level), 0 for any.  ``complete``: no DSB needed (x86
        INVLPG).  Only pending breaks care about a TLBI (one issued before a
        break never covers it), so without any nothing is kept.
        """
        self.seq += 1
        if self.unflushed or self.unflushed_pmd:
            self._drop_unflushed(cpu, broadcast, scope, asid, vpn, npages, level)
        if not self.n_brk and not self.pmd_breaks:
            return
        t = (self.seq, broadcast, scope, asid, vpn, npages, level)
        if broadcast:
            self._apply(self.seq, scope, asid, vpn, npages, level, _F_ISSUED)
        if complete:
            self._apply(self.seq, scope, asid, vpn, npages, level, _F_COVER if broadcast else _F_LOCAL)
        else:
            self.pending[cpu].append(t)

    @cython.ccall
    def on_dsb(self, cpu: i64, domain: i64) -> None:
        """A DSB (``tlbi.DSB_*`` code) on ``cpu`` completes the TLBIs it covers (D8.17.8)."""
        if domain & 1:  # the st forms order stores only
            return
        pend = self.pending[cpu]
        if not pend:
            return
        keep = []
        for t in pend:
            seq, broadcast, scope, asid, vpn, npages, level = t
            if broadcast and domain == DSB_NSH:
                keep.append(t)
                continue
            self._apply(seq, scope, asid, vpn, npages, level, _F_COVER if broadcast else _F_LOCAL)
        self.pending[cpu] = keep

    @cython.cfunc
    def _apply(self, seq: i64, scope: i64, asid: i64, vpn: i64, npages: i64, level: i64, field: i64) -> None:
        """Mark the pending breaks a TLBI reaches (``field``: issued / covered / local)."""
        if self.pmd_breaks and (level == 0 or level == 2):
            self._apply_pmd(seq, scope, asid, vpn, npages, field)
        if not self.n_brk or not (level == 0 or level == 3):
            return
        r: i64
        b: i64
        key: i64
        b0: i64 = 0
        b1: i64 = -1
        if scope == SCOPE_VA:
            b0 = vpn >> self.blk_shift
            b1 = (vpn + npages - 1) >> self.blk_shift
            if asid >= 0 and b1 - b0 + 1 <= self.n_brk:
                for b in range(b0, b1 + 1):
                    r = self.brk.get((asid << _KEY_SHIFT) | b, -1)
                    if r >= 0:
                        self._mark(r, seq, vpn, npages, field)
                return
        for r in range(self.nrec):
            if self.n_brk == 0:
                break  # (the arrays may have been reset)
            key = self.r_key[r]
            if key < 0 or (asid >= 0 and (key >> _KEY_SHIFT) != asid):
                continue
            if scope == SCOPE_VA:
                b = key & _KEY_MASK
                if b < b0 or b > b1:
                    continue
                self._mark(r, seq, vpn, npages, field)
            else:
                self._mark(r, seq, (key & _KEY_MASK) << self.blk_shift, self.cn, field)

    @cython.cfunc
    def _mark(self, r: i64, seq: i64, vpn: i64, npages: i64, field: i64) -> None:
        """Set ``field`` of the pages of record ``r`` in ``[vpn, vpn+npages)``; drop ``r`` once covered."""
        cn: i64 = self.cn
        key: i64 = int(self.r_key[r])
        first: i64 = (key & _KEY_MASK) << self.blk_shift
        lo: i64 = max(vpn, first) - first
        hi: i64 = min(vpn + npages, first + cn) - first
        q: i64
        if field == _F_COVER and lo == 0 and hi == cn:
            # A completed TLBI of the whole block covers every break made
            # before it was issued: if that is all of them, the record goes.
            for q in range(r * cn, (r + 1) * cn):
                if self.b_seq[q] > seq:
                    break
            else:
                self._free_record(r)
                return
        for q in range(r * cn + lo, r * cn + hi):
            if field == _F_COVER:
                if self.b_cover[q] < seq:
                    self.b_cover[q] = seq
            elif field == _F_ISSUED:
                if self.b_issued[q] < seq:
                    self.b_issued[q] = seq
            elif self.b_local[q] < seq:
                self.b_local[q] = seq
        if field == _F_COVER and self._covered(r):
            self._free_record(r)

    @cython.cfunc
    @cython.exceptval(-1, check=True)
    def _covered(self, r: i64) -> cython.bint:
        """Is every pending break of record ``r`` flushed (a make there needs no check)?"""
        cn: i64 = self.cn
        base: i64 = r * cn
        q: i64
        p: i64
        seq: i64
        old: u64
        for q in range(base, base + cn):
            seq = int(self.b_seq[q])
            if seq == _NEVER:
                continue
            old = int(self.b_old[q])
            if old & self.fmt.cont_bit:
                for p in range(base, base + cn):
                    if not self.b_cover[p] > seq:
                        return False
            elif not self.b_cover[q] > seq:
                return False
        return True

    @cython.cfunc
    def _apply_pmd(self, seq: i64, scope: i64, asid: i64, vpn: i64, npages: i64, field: i64) -> None:
        first: i64 = vpn >> self.shift
        last: i64 = (vpn + npages - 1) >> self.shift
        done = []
        for key, pb in self.pmd_breaks.items():
            if asid >= 0 and (key >> _KEY_SHIFT) != asid:
                continue
            if scope == SCOPE_VA and not first <= (key & _KEY_MASK) <= last:
                continue
            p: PmdBreak = pb
            if field == _F_COVER:
                p.cover = max(p.cover, seq)
                if p.cover > p.seq:
                    done.append(key)
            elif field == _F_ISSUED:
                p.issued = max(p.issued, seq)
            else:
                p.local = max(p.local, seq)
        for key in done:
            del self.pmd_breaks[key]


@cython.cfunc
@cython.inline
@cython.exceptval(check=False)
def _ctz(x: u64) -> i64:
    """Index of the lowest set bit of ``x`` (non-zero)."""
    n: i64 = 0
    while not x & 1:
        x >>= 1
        n += 1
    return n
