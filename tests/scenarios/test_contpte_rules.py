"""The arm64 contpte rules, as scenarios through the public API.

Each test maps private anonymous memory at a fixed, PMD-aligned address,
runs syscalls and accesses, and checks what ``pagemap`` reports (the raw
Contiguous bit in ``cont``; access/dirty as ``ptep_get`` gathers them) and
the counter deltas (``contpte.fold``, ``contpte.unfold.<caller>``,
``contpte.convert``, ``tlbi.<op>``, ``dsb.<domain>``, ``tlb.*``).  Every
machine runs with ``check=True``: the Arm ARM rule checker (Contiguous-bit
consistency, break-before-make, stale TLB entries) and the kernel
validators run after every syscall, and again at the end of each test.

The rules (docs/kernel.md a.3, b.1-b.5; arch/arm64/mm/contpte.c, Linux v6.12):

- a block folds only when it is whole, VA- and PA-aligned and inside one
  folio;
- ``set_ptes(nr > 1)`` sets PTE_CONT directly (no fold, no TLBI);
- a single-PTE change unfolds exactly one block (one conversion, one
  block TLBI);
- a partial wrprotect or clear unfolds only the partly covered blocks at
  the ends of the range;
- full-block wrprotect (fork) and clears (munmap, MADV_DONTNEED, exit)
  keep PTE_CONT: no conversion;
- access and dirty state is gathered over the block;
- a block refolds when its last PTE is rewritten (``set_ptes(nr=1)`` of
  the entry at block index CONT_PTES-1).

Granules 4K/16K/64K are covered where the rule does not depend on one
(``page_size=``; contiguous blocks are 64K/2M/2M).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

import contpte

ARENA = 0x10_0000_0000
"""Where every test maps: aligned to every block and PMD size used here."""


@dataclass(frozen=True)
class Granule:
    """Geometry of one arm64 granule (Arm ARM D8.7.1 Table D8-104; Kconfig)."""

    name: str
    page: int
    cont_ptes: int
    ptrs_per_pte: int
    memory: str

    @property
    def block(self) -> int:
        """CONT_PTE_SIZE in bytes."""
        return self.page * self.cont_ptes

    @property
    def block_mthp(self) -> str:
        """The mTHP size whose folios are exactly one contiguous block."""
        return {65536: "64K", 2 << 20: "2M"}[self.block]

    @property
    def half_block_mthp(self) -> str:
        """An mTHP size of half a block: folios too small to fold."""
        return {65536: "32K", 2 << 20: "1M"}[self.block]


GRANULES = {
    "4K": Granule("4K", 4096, 16, 512, "64M"),
    "16K": Granule("16K", 16384, 128, 2048, "128M"),
    "64K": Granule("64K", 65536, 32, 8192, "1G"),
}


@pytest.fixture(params=sorted(GRANULES))
def g(request: pytest.FixtureRequest) -> Granule:
    return GRANULES[str(request.param)]


def machine(g: Granule, mthp: dict[str, str] | None = None, **kw: Any) -> contpte.Machine:
    kw.setdefault("cpus", 2)
    kw.setdefault("check", True)
    return contpte.Machine(
        arch="arm64",
        memory=kw.pop("memory", g.memory),
        page_size=g.name,
        mthp={g.block_mthp: "always"} if mthp is None else mthp,
        **kw,
    )


def populated(
    g: Granule, nblocks: int = 4, value: int = 1, **kw: Any
) -> tuple[contpte.Machine, contpte.Process, int]:
    """A process with ``nblocks`` aligned blocks of anonymous memory, written (folded)."""
    m = machine(g, **kw)
    p = m.spawn()
    a = p.mmap(nblocks * g.block, flags="private|anonymous|fixed", addr=ARENA)
    p.write(a, nblocks * g.block, value)
    return m, p, a


def delta(m: contpte.Machine, fn: Callable[[], Any]) -> dict[str, int]:
    """The counter deltas of ``fn()`` (validator bookkeeping left out)."""
    before = m.stats()
    fn()
    after = m.stats()
    keys = set(before) | set(after)
    out = {k: after.get(k, 0) - before.get(k, 0) for k in keys if not k.startswith("check.")}
    return {k: v for k, v in out.items() if v}


def forked(m: contpte.Machine, p: contpte.Process) -> tuple[contpte.Process, dict[str, int]]:
    """fork() ``p``; return the child and the counter deltas of the fork."""
    box: list[contpte.Process] = []
    d = delta(m, lambda: box.append(p.fork()))
    return box[0], d


def blocks_cont(p: contpte.Process, g: Granule, a: int, nblocks: int) -> list[bool | None]:
    """Per block: True all CONT, False none CONT, None mixed (never legal when present)."""
    pm = p.pagemap(a, nblocks * g.block)
    out: list[bool | None] = []
    for b in pm["cont"].reshape(nblocks, g.cont_ptes):
        out.append(bool(b[0]) if (b == b[0]).all() else None)
    return out


def unfolds(d: dict[str, int]) -> dict[str, int]:
    """The ``contpte.unfold.<caller>`` members of a delta."""
    return {k: v for k, v in d.items() if k.startswith("contpte.unfold.")}


def checked(m: contpte.Machine) -> None:
    assert m.stats().get("check.runs", 0) > 0, "the validators did not run"
    m.check()


# ---------------------------------------------------------------------------
# Geometry and counters.
# ---------------------------------------------------------------------------
def test_geometry(g: Granule) -> None:
    """CONT_PTES and PTRS_PER_PTE per granule; a folded run is exactly one block."""
    m, p, a = populated(g, nblocks=2)
    assert m.page_size == g.page
    assert g.cont_ptes == m.arch.CONT_PTES
    assert g.ptrs_per_pte == m.arch.PTRS_PER_PTE
    assert g.block == m.arch.CONT_PTE_SIZE
    pm = p.pagemap(a, 2 * g.block)
    assert pm["cont"].all()
    assert (pm["order"] == (g.cont_ptes.bit_length() - 1)).all()
    checked(m)


def test_counters_are_declared() -> None:
    """The counters this issue names exist, with a unit and a description."""
    for name in (
        "contpte.fold",
        "contpte.convert",
        "contpte.unfold.clear_full_ptes",
        "contpte.unfold.wrprotect_ptes",
        "tlbi.VALE1IS",
        "tlbi.RVALE1IS",
        "tlbi.ASIDE1IS",
        "dsb.ish",
        "dsb.ishst",
        "tlb.hit",
        "tlb.miss",
    ):
        unit, desc = contpte.Machine.describe_counter(name)
        assert unit and desc, name


# ---------------------------------------------------------------------------
# Fold only on whole, aligned, single-folio blocks; set_ptes(nr) sets CONT.
# ---------------------------------------------------------------------------
def test_fault_in_sets_cont_directly(g: Granule) -> None:
    """A block-sized folio faulted in is mapped CONT by set_ptes(nr): no fold, no TLBI."""
    m = machine(g)
    p = m.spawn()
    a = p.mmap(4 * g.block, flags="private|anonymous|fixed", addr=ARENA)
    d = delta(m, lambda: p.write(a, 4 * g.block, 5))
    assert blocks_cont(p, g, a, 4) == [True] * 4
    assert d["call.contpte_set_ptes"] == 4
    assert d[f"mthp.{g.block // 1024}kB.anon_fault_alloc"] == 4
    for k in ("contpte.fold", "contpte.convert", "contpte.unfold", "tlbi.total"):
        assert k not in d, (k, d)
    assert (p.read(a, 4 * g.block) == 5).all()
    checked(m)


def test_no_cont_for_folios_smaller_than_a_block(g: Granule) -> None:
    """Half-block folios never fold, even when two of them are physically adjacent."""
    m = machine(g, mthp={g.half_block_mthp: "always"})
    p = m.spawn()
    a = p.mmap(4 * g.block, flags="private|anonymous|fixed", addr=ARENA)
    d = delta(m, lambda: p.write(a, 4 * g.block, 5))
    assert d["call.contpte_set_ptes"] == 8
    assert not p.pagemap(a, 4 * g.block)["cont"].any()
    for k in ("contpte.fold", "contpte.convert"):
        assert k not in d, (k, d)
    checked(m)


def test_no_fold_of_order0_pages(g: Granule) -> None:
    """Small folios written page by page: the last-entry fold check rejects them (not one folio)."""
    m = machine(g, mthp={}, memory=g.memory)
    p = m.spawn()
    a = p.mmap(2 * g.block, flags="private|anonymous|fixed", addr=ARENA)
    npages = 2 * g.cont_ptes
    d = delta(m, lambda: [p.write(a + i * g.page, g.page, i) for i in range(npages)])
    pm = p.pagemap(a, 2 * g.block)
    assert pm["present"].all() and (pm["order"] == 0).all()
    assert not pm["cont"].any()
    assert "contpte.fold" not in d and "contpte.convert" not in d
    checked(m)


def test_no_cont_when_va_misaligned() -> None:
    """A 64K file folio mapped one page off its natural VA alignment is never CONT."""
    g = GRANULES["4K"]
    m = machine(g)
    p = m.spawn()
    f = m.open_file("data", 1 << 20, folio_size="64K")
    off = p.mmap(256 << 10, prot="r", flags="private|fixed", file=f, addr=ARENA + g.page)
    aligned = p.mmap(256 << 10, prot="r", flags="private|fixed", file=f, addr=ARENA + (1 << 20))
    d = delta(m, lambda: (p.read(off, 256 << 10), p.read(aligned, 256 << 10)))
    pm_off, pm_al = p.pagemap(off, 256 << 10), p.pagemap(aligned, 256 << 10)
    assert pm_off["present"].all() and (pm_off["order"] == 4).all()
    assert not pm_off["cont"].any()
    assert pm_al["cont"].all()
    assert "contpte.fold" not in d and "contpte.convert" not in d
    checked(m)


def test_pmd_split_maps_cont_blocks() -> None:
    """Splitting a PMD THP maps it with one set_ptes(512): every block CONT at once."""
    g = GRANULES["4K"]
    m = machine(g, thp="always")
    p = m.spawn()
    a = p.mmap(2 << 20, flags="private|anonymous|fixed", addr=ARENA)
    p.write(a, 2 << 20, 3)
    assert not p.pagemap(a, 2 << 20)["cont"].any()
    d = delta(m, lambda: p.mprotect(a + 20 * g.page, g.page, "r"))
    assert d["thp_split_pmd"] == 1
    assert "contpte.fold" not in d
    # The split set every block CONT directly; the mprotect then unfolded the one it changed.
    assert unfolds(d) == {"contpte.unfold.ptep_modify_prot_start": 1}
    cont = blocks_cont(p, g, a, 32)
    assert cont[1] is False and cont.count(True) == 31
    checked(m)


# ---------------------------------------------------------------------------
# A single-PTE change unfolds exactly one block.
# ---------------------------------------------------------------------------
def _mprotect_one(p: contpte.Process, a: int, g: Granule) -> None:
    p.mprotect(a, g.page, "r")


def _dontneed_one(p: contpte.Process, a: int, g: Granule) -> None:
    p.madvise(a, g.page, "dontneed")


SINGLE_PTE_OPS = {
    "mprotect": (_mprotect_one, "ptep_modify_prot_start"),
    "dontneed": (_dontneed_one, "clear_full_ptes"),
}


@pytest.mark.parametrize("op", sorted(SINGLE_PTE_OPS))
def test_single_pte_change_unfolds_one_block(g: Granule, op: str) -> None:
    m, p, a = populated(g, nblocks=4)
    fn, caller = SINGLE_PTE_OPS[op]
    page = a + 2 * g.block + 3 * g.page
    d = delta(m, lambda: fn(p, page, g))
    assert unfolds(d) == {f"contpte.unfold.{caller}": 1}
    assert d["contpte.convert"] == 1 and "contpte.fold" not in d
    # One block TLBI for the conversion (no FEAT_TLBIRANGE on the default CPU:
    # CONT_PTES x VALE1IS) plus the syscall's own flush of the page.
    assert d["tlbi.VALE1IS"] == g.cont_ptes + 1
    assert d["dsb.ish"] == 2
    assert blocks_cont(p, g, a, 4) == [True, True, False, True]
    exp = np.ones(4 * g.cont_ptes, dtype=np.uint64)
    if op == "dontneed":
        exp[2 * g.cont_ptes + 3] = 0
    assert np.array_equal(p.read(a, 4 * g.block), exp)
    checked(m)


def test_cow_write_unfolds_one_block(g: Granule) -> None:
    """The child's CoW write to a folded read-only block: ptep_clear_flush unfolds that block only."""
    m, p, a = populated(g, nblocks=4)
    c = p.fork()
    page = a + g.block + 5 * g.page
    d = delta(m, lambda: c.write(page, g.page, 9))
    assert unfolds(d) == {"contpte.unfold.ptep_get_and_clear": 1}
    assert d["fault.wp_copy"] == 1
    assert d["tlbi.VALE1IS"] == g.cont_ptes + 1
    assert blocks_cont(c, g, a, 4) == [True, False, True, True]
    assert blocks_cont(p, g, a, 4) == [True] * 4
    assert c.read(page, g.page)[0] == 9 and p.read(page, g.page)[0] == 1
    checked(m)


def test_cow_write_on_range_tlbi_cpu() -> None:
    """With FEAT_TLBIRANGE the conversion's block flush is one range TLBI."""
    g = GRANULES["4K"]
    m, p, a = populated(g, nblocks=2, cpu="neoverse-v2")
    d = delta(m, lambda: p.mprotect(a, g.page, "r"))
    assert d["contpte.convert"] == 1
    assert d["tlbi.RVALE1IS"] == 1 and d["tlbi.VALE1IS"] == 1
    checked(m)


# ---------------------------------------------------------------------------
# Partial wrprotect/clear unfolds only the partly covered blocks at the ends.
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("how", ["munmap", "dontneed"])
def test_partial_clear_unfolds_only_end_blocks(g: Granule, how: str) -> None:
    """[mid block 0, mid block 3): blocks 0 and 3 unfold, blocks 1 and 2 are cleared folded."""
    m, p, a = populated(g, nblocks=4)
    half = g.block // 2
    start, length = a + half, 3 * g.block
    if how == "munmap":
        d = delta(m, lambda: p.munmap(start, length))
    else:
        d = delta(m, lambda: p.madvise(start, length, "dontneed"))
    assert unfolds(d) == {"contpte.unfold.clear_full_ptes": 2}
    assert d["contpte.convert"] == 2
    pm = p.pagemap(a, 4 * g.block) if how == "dontneed" else None
    head = p.pagemap(a, half)
    tail = p.pagemap(a + 3 * g.block + half, half)
    for rows in (head, tail):
        assert rows["present"].all() and not rows["cont"].any()
    if pm is not None:
        assert not pm["present"][g.cont_ptes // 2 : 3 * g.cont_ptes + g.cont_ptes // 2].any()
    # Two block flushes, then one range flush of what was cleared.
    assert d["dsb.ish"] == 3
    checked(m)


def test_partial_wrprotect_unfolds_only_end_blocks(g: Granule) -> None:
    """Fork copies per VMA: VMA edges inside blocks 0 and 2 make wrprotect_ptes partial there.

    MADV_NOHUGEPAGE splits the VMA without touching a PTE, so the blocks stay
    folded across the VMA boundaries until fork write-protects the parent
    one VMA at a time.
    """
    m, p, a = populated(g, nblocks=4)
    half = g.block // 2
    p.madvise(a + half, 2 * g.block, "nohugepage")
    assert len(p.maps()) == 3
    assert blocks_cont(p, g, a, 4) == [True] * 4
    c, d = forked(m, p)
    assert unfolds(d) == {"contpte.unfold.wrprotect_ptes": 2}
    assert d["contpte.convert"] == 2 and "contpte.fold" not in d
    assert blocks_cont(p, g, a, 4) == [False, True, False, True]
    # The child's halves of blocks 0 and 2 come from two set_ptes() calls each: no CONT.
    assert blocks_cont(c, g, a, 4) == [False, True, False, True]
    assert not p.pagemap(a, 4 * g.block)["writable"].any()
    c.write(a, 4 * g.block, 2)
    assert (p.read(a, 4 * g.block) == 1).all() and (c.read(a, 4 * g.block) == 2).all()
    checked(m)


# ---------------------------------------------------------------------------
# Full-block wrprotect and clears keep CONT.
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("how", ["munmap", "dontneed", "exit"])
def test_full_block_clear_keeps_cont(g: Granule, how: str) -> None:
    m, p, a = populated(g, nblocks=4)
    if how == "munmap":
        d = delta(m, lambda: p.munmap(a + g.block, 2 * g.block))
    elif how == "dontneed":
        d = delta(m, lambda: p.madvise(a + g.block, 2 * g.block, "dontneed"))
    else:
        d = delta(m, p.exit)
    assert not unfolds(d) and "contpte.convert" not in d
    if how == "exit":
        # fullmm teardown: no range TLBI, one flush_tlb_mm for the freed tables.
        assert d["tlbi.ASIDE1IS"] == 1 and d["tlbi.total"] == 1
    else:
        assert d["tlbi.total"] == 2 * g.cont_ptes  # mmu_gather's range flush, one VALE1IS a page
        assert blocks_cont(p, g, a, 1) == [True]
        assert blocks_cont(p, g, a + 3 * g.block, 1) == [True]
    checked(m)


def test_full_block_wrprotect_keeps_cont(g: Granule) -> None:
    m, p, a = populated(g, nblocks=4)
    c, d = forked(m, p)
    assert "contpte.convert" not in d and not unfolds(d)
    assert d["call.contpte_wrprotect_ptes"] == 4
    assert d["tlbi.ASIDE1IS"] == 1 and d["tlbi.total"] == 1  # dup_mmap's flush_tlb_mm only
    for q in (p, c):
        pm = q.pagemap(a, 4 * g.block)
        assert pm["cont"].all() and not pm["writable"].any()
    checked(m)


# ---------------------------------------------------------------------------
# Access and dirty are gathered over the block.
# ---------------------------------------------------------------------------
def test_dirty_and_young_gathered_after_madv_free(g: Granule) -> None:
    """MADV_FREE cleans whole blocks in place; one write dirties (and ages) its whole block.

    FEAT_HAFDBS sets AF and clears AP[2] on one descriptor of the block; ptep_get
    ORs them over all members, so pagemap reports every page of that block.
    """
    m, p, a = populated(g, nblocks=4)
    d = delta(m, lambda: p.madvise(a, 4 * g.block, "free"))
    assert not unfolds(d) and "contpte.convert" not in d
    assert d["call.contpte_clear_young_dirty_ptes"] == 4
    pm = p.pagemap(a, 4 * g.block)
    assert pm["cont"].all() and not pm["dirty"].any() and not pm["young"].any()
    d = delta(m, lambda: p.write(a + 2 * g.block + 7 * g.page, g.page, 4))
    assert d["hw.dirty_update"] == 1 and "pgfault" not in d
    pm = p.pagemap(a, 4 * g.block)
    dirty = pm["dirty"].reshape(4, g.cont_ptes)
    young = pm["young"].reshape(4, g.cont_ptes)
    assert dirty.all(axis=1).tolist() == [False, False, True, False]
    assert young.all(axis=1).tolist() == [False, False, True, False]
    assert not dirty[[0, 1, 3]].any()
    checked(m)


def test_fork_gathers_dirty_over_the_batch() -> None:
    """fork copies each folded block as one batch, carrying the gathered dirty bit to the child."""
    g = GRANULES["4K"]
    m, p, a = populated(g, nblocks=4)
    p.madvise(a, 4 * g.block, "free")
    p.write(a + g.block + 15 * g.page, g.page, 2)
    c, d = forked(m, p)
    assert d["fork.batch"] == 4 and d["fork.ptes"] == 4 * g.cont_ptes
    dirty = c.pagemap(a, 4 * g.block)["dirty"].reshape(4, g.cont_ptes)
    assert dirty.all(axis=1).tolist() == [False, True, False, False]
    assert not dirty[[0, 2, 3]].any()
    assert c.pagemap(a, 4 * g.block)["cont"].all()
    checked(m)


def test_software_access_flag_sets_the_whole_block() -> None:
    """Without FEAT_HAFDBS an access-flag fault fixes all members: one fault per block, no unfold."""
    g = GRANULES["4K"]
    m, p, a = populated(g, nblocks=4, cpu="apple-m2")
    p.madvise(a, 4 * g.block, "free")
    d = delta(m, lambda: p.read(a, 4 * g.block))
    assert d["fault.access_flag"] == 4
    assert not unfolds(d) and "contpte.convert" not in d
    # A write through a writable-clean block: a permission fault per block, fixed
    # block-wide (set_access_flags, dirty), one range TLBI each (FEAT_TLBIRANGE).
    d = delta(m, lambda: p.write(a, 4 * g.block, 3))
    assert d["fault.permission"] == 4 and d["tlbi.RVALE1IS"] == 4
    assert not unfolds(d)
    pm = p.pagemap(a, 4 * g.block)
    assert pm["cont"].all() and pm["dirty"].all() and pm["young"].all()
    checked(m)


# ---------------------------------------------------------------------------
# A block refolds when its last PTE is rewritten.
# ---------------------------------------------------------------------------
def test_refold_when_last_pte_rewritten(g: Granule) -> None:
    m, p, a = populated(g, nblocks=2)
    last = a + (g.cont_ptes - 1) * g.page
    mid = a + 3 * g.page
    d = delta(m, lambda: p.mprotect(mid, g.page, "r"))
    assert unfolds(d) == {"contpte.unfold.ptep_modify_prot_start": 1}
    # Restoring a middle page rewrites it, but only the last entry triggers the fold check.
    d = delta(m, lambda: p.mprotect(mid, g.page, "rw"))
    assert "contpte.fold" not in d and blocks_cont(p, g, a, 2) == [False, True]
    # The last entry made read-only: consistent block?  No: its permission differs.
    d = delta(m, lambda: p.mprotect(last, g.page, "r"))
    assert "contpte.fold" not in d and "contpte.convert" not in d
    # ... and made writable again: now all CONT_PTES entries match, so it folds.
    d = delta(m, lambda: p.mprotect(last, g.page, "rw"))
    assert d["contpte.fold"] == 1 and d["contpte.convert"] == 1 and not unfolds(d)
    assert d["call.__contpte_try_fold"] == 1
    assert blocks_cont(p, g, a, 2) == [True, True]
    assert p.pagemap(a, g.block)["writable"].all()
    p.write(a, 2 * g.block, 8)
    assert (p.read(a, 2 * g.block) == 8).all()
    checked(m)


def test_mprotect_of_whole_blocks_unfolds_and_refolds(g: Granule) -> None:
    """v6.12 mprotect is per PTE: start unfolds each block, the commit of its last PTE refolds it."""
    m, p, a = populated(g, nblocks=2)
    d = delta(m, lambda: p.mprotect(a, 2 * g.block, "r"))
    assert unfolds(d) == {"contpte.unfold.ptep_modify_prot_start": 2}
    assert d["contpte.fold"] == 2 and d["contpte.convert"] == 4
    pm = p.pagemap(a, 2 * g.block)
    assert pm["cont"].all() and not pm["writable"].any()
    with pytest.raises(contpte.SegmentationFault):
        p.write(a, g.page, 1)
    checked(m)


# ---------------------------------------------------------------------------
# Done means: fork of aligned 64K mTHP memory with and without wrprotect_ptes_opt.
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("adversarial_tlb", [False, True])
def test_done_fork_keeps_every_block_contiguous(adversarial_tlb: bool) -> None:
    """On arm64 with 64K mTHP, fork keeps the parent's blocks and creates the child's CONT,
    with zero conversions; ``wrprotect_ptes_opt=False`` converts every block.  All of it
    under the rule checker (and, with ``adversarial_tlb``, a TLB that never evicts)."""
    g = GRANULES["4K"]
    size, nblocks = 1 << 20, (1 << 20) // g.block
    results = {}
    for opt in (True, False):
        m, p, a = populated(
            g, nblocks=nblocks, cpus=4, adversarial_tlb=adversarial_tlb, wrprotect_ptes_opt=opt
        )
        assert p.pagemap(a, size)["cont"].all()
        p.read(a, size)  # warm the parent's TLB: stale entries would show up below
        c, d = forked(m, p)
        results[opt] = d
        parent_cont = p.pagemap(a, size)["cont"]
        assert c.pagemap(a, size)["cont"].all(), "the child's blocks are set CONT directly"
        if opt:
            assert parent_cont.all()
            assert "contpte.convert" not in d and "contpte.fold" not in d and not unfolds(d)
        else:
            assert not parent_cont.any()
            assert d["contpte.convert"] == nblocks
            assert unfolds(d) == {"contpte.unfold.wrprotect_ptes": nblocks}
        # CoW both ways still isolates the two processes.
        p.write(a, size, 2)
        c.write(a + g.block, g.block, 3)
        exp_c = np.ones(size // g.page, dtype=np.uint64)
        exp_c[g.cont_ptes : 2 * g.cont_ptes] = 3
        assert (p.read(a, size) == 2).all()
        assert np.array_equal(c.read(a, size), exp_c)
        checked(m)
    # The optimisation saves exactly the conversions' TLBIs.
    assert results[True]["tlbi.total"] == 1
    assert results[False]["tlbi.total"] == 1 + nblocks * g.cont_ptes


# ---------------------------------------------------------------------------
# TLB reach: a finite TLB misses less when blocks are folded.
# ---------------------------------------------------------------------------
def test_tlb_reach() -> None:
    """The same sweep over 8 MiB (2048 pages > 1280 TLB entries) with contpte on and off."""
    size = 8 << 20

    def sweep_misses(on: bool) -> int:
        m = contpte.Machine(
            arch="arm64", memory="64M", cpus=1, mthp={"64K": "always"}, contpte=on, check=True
        )
        p = m.spawn()
        a = p.mmap(size, flags="private|anonymous|fixed", addr=ARENA)
        p.write(a, size, 1)
        assert p.pagemap(a, size)["cont"].all() == on
        d = delta(m, lambda: [p.read(a, size) for _ in range(3)])
        assert d.get("tlb.hit", 0) + d.get("tlb.miss", 0) == 3 * (size >> 12)
        checked(m)
        return d.get("tlb.miss", 0)

    misses = {on: sweep_misses(on) for on in (True, False)}
    # Off: 2048 pages cycle through a 1280-entry LRU TLB, so every access misses.
    assert misses[False] == 3 * (size >> 12)
    # On: 128 block entries fit; the sweeps hit after the first touch of each block.
    assert misses[True] <= 128
    assert misses[True] < misses[False] // 16


# ---------------------------------------------------------------------------
# Regression: the checker once demanded a whole-block TLBI here (false positive).
# ---------------------------------------------------------------------------
def test_large_folio_refault_after_unmapping_a_small_page() -> None:
    """A 4K page is mapped, used and unmapped (page TLBI); a 64K folio then maps its block CONT.

    The kernel writes the CONT block over none PTEs with no TLBI
    (contpte_set_ptes): the only translation ever cached there, the old
    non-CONT page, was already invalidated by munmap.
    """
    g = GRANULES["4K"]
    m = machine(g)
    p = m.spawn()
    p.mmap(g.page, flags="private|anonymous|fixed", addr=ARENA)
    p.write(ARENA, g.page, 1)
    p.munmap(ARENA, g.page)
    p.mmap(g.block, flags="private|anonymous|fixed", addr=ARENA)
    p.write(ARENA, g.page, 2)
    assert p.pagemap(ARENA, g.block)["cont"].all()
    checked(m)
