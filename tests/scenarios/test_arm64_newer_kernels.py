"""arm64 contpte changes after v6.12, each selected by ``Machine(kernel=...)``.

``bbml2_noabort`` (v6.17): ``contpte_convert()`` elides its intermediate
TLBI where ``system_supports_bbml2_noabort()`` (the CPU's MIDR is on the
allow-list).  ``ptep_get_early_exit`` (v6.17): ``contpte_ptep_get()`` stops
reading the block once it has seen a young and a dirty entry.
"""

from __future__ import annotations

import pytest

import contpte
from contpte.arch.arm64.pgtable_prot import PTE_AF, PTE_RDONLY

K64 = 64 << 10
PAGE = 4096


def folded(kernel: str, **kw: object) -> tuple[contpte.Machine, contpte.Process, int]:
    """A process with one written, folded 64K anon block."""
    m = contpte.Machine(memory="64M", mthp={"64K": "always"}, kernel=kernel, **kw)  # type: ignore[arg-type]
    p = m.spawn()
    a = p.mmap(2 * K64)
    a = (a + K64 - 1) & ~(K64 - 1)
    p.write(a, K64, 7)
    assert p.pagemap(a, K64)["cont"].all()
    return m, p, a


def ptep_of(m: contpte.Machine, p: contpte.Process, addr: int) -> int:
    """The ``pte_t *`` (pool index) mapping ``addr``."""
    shift = m.arch.PAGE_SHIFT
    ptrs = m.arch.PTRS_PER_PTE
    slot = p.mm.space.pte_table(addr >> (shift + 9))
    assert slot >= 0
    return (slot << m.hw.pool.shift) | ((addr >> shift) & (ptrs - 1))


@pytest.mark.parametrize(
    ("kernel", "reads"), [("6.12", 1 + 16), ("6.16", 1 + 16), ("6.17", 1 + 2), ("7.2", 1 + 2)]
)
def test_ptep_get_stops_at_young_and_dirty(kernel: str, reads: int) -> None:
    """Every member is young and dirty: v6.17 stops after entry 0 (read twice).

    One raw load of the entry, then v6.12 ORs in all 16 members; v6.17 finds
    entry 0 dirty and re-reads it looking for a young one: 2 loads.
    ``ptep_get_lockless()`` loads the entry once more (``contpte_ptep_get_lockless()``
    starts from its own ``__ptep_get()``).
    """
    m, p, a = folded(kernel)
    ptep = ptep_of(m, p, a + 5 * PAGE)
    for fn, extra in ((m.arch.ptep_get, 0), (m.arch.ptep_get_lockless, 1)):
        with m.measure() as d:
            pte = fn(ptep)
        assert d["pte.read"] == reads + extra, fn
        assert m.arch.pte_young(pte) and m.arch.pte_dirty(pte)


@pytest.mark.parametrize(("kernel", "reads"), [("6.12", 1 + 16), ("7.2", 1 + 4 + 6)])
def test_ptep_get_reads_up_to_the_first_dirty_after_young(kernel: str, reads: int) -> None:
    """MADV_FREE made the block old and clean; the hardware then set AF on
    entry 3 and dirtied entry 9: v6.17 loads entries 0..3, then 4..9."""
    m, p, a = folded(kernel)
    p.madvise(a, K64, "free")
    base = ptep_of(m, p, a)
    pool = m.hw.pool
    pool.hw_store(base + 3, int(pool.peek(base + 3)) | PTE_AF)
    pool.hw_store(base + 9, int(pool.peek(base + 9)) & ~PTE_RDONLY)  # DBM: dirty
    assert not any(m.arch.pte_young(int(pool.peek(base + i))) for i in range(16) if i != 3)
    with m.measure() as d:
        pte = m.arch.ptep_get(base + 5)
    assert d["pte.read"] == reads
    assert m.arch.pte_young(pte) and m.arch.pte_dirty(pte)


@pytest.mark.parametrize(
    ("kernel", "cpu", "opts", "elided"),
    [
        ("6.12", "neoverse-v3", {}, False),
        ("6.16", "neoverse-v3", {}, False),
        ("6.17", "neoverse-v3", {}, True),
        ("7.2", "neoverse-v3", {}, True),
        ("7.2", "cortex-x4", {}, True),
        ("7.2", "ampereone", {}, True),
        ("7.2", "neoverse-v2", {}, False),  # BBML2 but not on the allow-list
        ("7.2", "apple-m2", {}, False),
        ("7.2", None, {}, False),  # neoverse-n1
        ("7.2", "neoverse-v3", {"bbml2_noabort": False}, False),
        ("6.12", "neoverse-v3", {"bbml2_noabort": True}, True),
    ],
)
def test_bbml2_follows_the_cpu_from_6_17(
    kernel: str, cpu: str | None, opts: dict[str, object], elided: bool
) -> None:
    """MADV_DONTNEED of one page unfolds the block: one block TLBI, unless elided.

    The conversion's ``__flush_tlb_range`` of the 64K block is one TLBI
    (a range op with FEAT_TLBIRANGE, 16 VALE1IS without), then the zap
    flushes its one page: one VALE1IS.
    """
    m, p, a = folded(kernel, cpu=cpu, **opts)
    assert m.arch.bbml2_noabort == elided
    with m.measure() as d:
        p.madvise(a + 3 * PAGE, PAGE, "dontneed")
    block = 1 if m.hw.features.tlbirange else 16
    assert d["contpte.unfold"] == 1
    assert d["tlbi.total"] == (0 if elided else block) + 1
    assert p.read(a, K64).tolist() == [7] * 3 + [0] + [7] * 12
    m.check()


def test_bbml2_option_values() -> None:
    m = contpte.Machine(memory="64M", kernel="7.2", cpu="neoverse-v3", check=False)
    assert m.options["bbml2_noabort"] == "cpu" and m.arch.bbml2_noabort
    with pytest.raises(contpte.ModelUsageError, match="bbml2_noabort=True needs a CPU"):
        contpte.Machine(memory="64M", kernel="7.2", cpu="apple-m2", bbml2_noabort=True)
    with pytest.raises(contpte.ModelUsageError, match="expected True, False or 'cpu'"):
        contpte.Machine(memory="64M", bbml2_noabort="yes")


def raw_dirty(m: contpte.Machine, p: contpte.Process, a: int) -> list[bool]:
    """Per member of the block at ``a``: is its own descriptor dirty (not the gathered view)?"""
    base = ptep_of(m, p, a)
    return [m.arch.pte_dirty(int(m.hw.pool.peek(base + i))) for i in range(16)]


def member(m: contpte.Machine, p: contpte.Process, a: int) -> int:
    """The one member whose descriptor is dirty."""
    return raw_dirty(m, p, a).index(True)


def big_little(kernel: str, seed: int, **kw: object) -> tuple[contpte.Machine, contpte.Process, int]:
    """A Cortex-A76 + Cortex-A55 machine (the A55 has no hardware dirty
    management: erratum 1024718).  A folded 64K block made clean by
    MADV_FREE, then written once on the A76: its walker dirtied the one
    member it took (D8.5.5: any member of the set)."""
    m = contpte.Machine(
        memory="64M",
        cpus=2,
        cpu=["cortex-a76", "cortex-a55"],
        mthp={"64K": "always"},
        kernel=kernel,
        seed=seed,
        **kw,  # type: ignore[arg-type]
    )
    p = m.spawn()
    assert p.cpu == 0
    a = p.mmap(2 * K64)
    a = (a + K64 - 1) & ~(K64 - 1)
    p.write(a, K64, 7)
    p.madvise(a, K64, "free")
    p.write(a, PAGE, 8)
    assert p.pagemap(a, K64)["cont"].all() and raw_dirty(m, p, a) == [i == member(m, p, a) for i in range(16)]
    p.cpu = 1  # the process migrates to the A55
    return m, p, a


def test_heterogeneous_cpus_differ_in_hardware_dirty_management() -> None:
    m = contpte.Machine(memory="64M", cpus=2, cpu=["cortex-a76", "cortex-a55"], check=False)
    assert m.hw.features.name == "cortex-a76+cortex-a55" and m.hw.features.hafdbs == 2
    assert list(m.hw.hd_of) == [1, 0] and list(m.hw.ha_of) == [1, 1]
    with pytest.raises(contpte.ModelUsageError, match="differ in bbm_level"):
        contpte.Machine(memory="64M", cpus=2, cpu=["cortex-a76", "neoverse-v2"])
    with pytest.raises(contpte.ModelUsageError, match="1 presets for cpus=2"):
        contpte.Machine(memory="64M", cpus=2, cpu=["cortex-a76"])


@pytest.mark.parametrize("seed", [0, 1, 3, 4])
def test_set_access_flags_on_a_gathered_view_livelocks_before_7_0(seed: int) -> None:
    """v6.12: the A55's write faults on a clean member; the gathered view is
    already dirty, so contpte_ptep_set_access_flags() changes nothing and the
    fault repeats forever.  (With these seeds the A55's walker takes a clean
    member; with one dirty member of 16, a random pick escapes 1 time in 16.)"""
    _, p, a = big_little("6.12", seed)
    with pytest.raises(contpte.InvariantViolation, match="repeats forever") as ei:
        p.write(a + 5 * PAGE, PAGE, 9)
    assert ei.value.rule == "fault-loop"


@pytest.mark.parametrize("seed", [0, 1, 3, 4])
@pytest.mark.parametrize("kernel", ["7.0", "7.2"])
def test_set_access_flags_checks_every_member_from_7_0(kernel: str, seed: int) -> None:
    """v7.0: a member lacks the entry's access bits, so every member is made
    young and dirty and the block flushed once, on the faulting CPU only
    (v6.19's ``local_flush_tlb_contpte()``; 7.2: ``__flush_tlb_range(...,
    TLBF_NOBROADCAST)``): 1 permission fault, 16 VALE1 (no FEAT_TLBIRANGE on
    these cores), the block stays folded."""
    m, p, a = big_little(kernel, seed)
    with m.measure() as d:
        p.write(a + 5 * PAGE, PAGE, 9)
    assert d["fault.permission"] == 1 and d["fault.spurious"] == 0
    assert d["tlbi.VALE1"] == 16 and d["tlbi.total"] == 16
    assert p.pagemap(a, K64)["cont"].all() and all(raw_dirty(m, p, a))
    assert p.read(a, 6 * PAGE).tolist() == [8, 7, 7, 7, 7, 9]
    m.check()


def test_the_fix_alone_and_its_absence_alone() -> None:
    """The option overrides the version either way."""
    m, p, a = big_little("6.12", 0, access_flags_subptes=True)
    p.write(a + 5 * PAGE, PAGE, 9)
    m.check()
    m, p, a = big_little("7.2", 0, access_flags_subptes=False)
    with pytest.raises(contpte.InvariantViolation, match="fault-loop"):
        p.write(a + 5 * PAGE, PAGE, 9)


def test_no_livelock_without_a_walker_that_updates_a_member() -> None:
    """On CPUs that all lack hardware dirty management no member is ever
    dirtied alone, so v6.12's gathered no-op test is harmless there."""
    for cpu in ("apple-m2", "cortex-a55"):
        m = contpte.Machine(memory="64M", cpu=cpu, mthp={"64K": "always"}, kernel="6.12")
        p = m.spawn()
        a = p.mmap(2 * K64)
        a = (a + K64 - 1) & ~(K64 - 1)
        p.write(a, K64, 7)
        p.madvise(a, K64, "free")
        p.read(a, K64)
        p.write(a + 5 * PAGE, PAGE, 9)
        assert all(raw_dirty(m, p, a))
        m.check()
