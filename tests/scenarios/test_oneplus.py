"""The OnePlus "dynamic hugepage" policy (Machine(policy="oneplus"), docs/oneplus.md).

Counts derived from mm/cont_pte_hugepage.c and mm/memory.c of
OnePlusOSS/android_kernel_oneplus_sm8550: a block is allocated whole at a
write fault, copied whole at fork (one reference, one entire-mapcount dup),
CoW-copied whole, zapped whole, and split into 16 PTE mappings by anything
that touches part of it.
"""

from __future__ import annotations

import errno
from pathlib import Path

import numpy as np
import pytest

import contpte
from contpte.errors import InvariantViolation, ModelUsageError
from contpte.mm import cont_pte_hugepage as chp
from contpte.mm.memmap import PG_swapcache
from contpte.workloads.scenario import parse, run

PAGE = 4096
BLOCK = 64 << 10
HERE = Path(__file__).parent


def machine(**kw: object) -> contpte.Machine:
    return contpte.Machine(policy="oneplus", memory="64M", cpus=2, **kw)  # type: ignore[arg-type]


def heap(
    m: contpte.Machine, size: int = 4 << 20, name: str | None = "libc_malloc"
) -> tuple[contpte.Process, int]:
    p = m.spawn()
    a = p.mmap(size, prot="rw", flags="private|anonymous")
    if name is not None:
        assert p.prctl_set_vma_name(a, size, name) == 0
    return p, a


def delta(m: contpte.Machine, before: dict[str, int], name: str) -> int:
    return m.stats()[name] - before[name]


def test_policy_is_checked() -> None:
    with pytest.raises(ModelUsageError, match="policy='bogus'"):
        contpte.Machine(policy="bogus")
    with pytest.raises(ModelUsageError, match="needs arch='arm64'"):
        contpte.Machine(policy="oneplus", arch="generic")
    with pytest.raises(ModelUsageError, match="page_size='4K'"):
        contpte.Machine(policy="oneplus", page_size="16K")
    with pytest.raises(ModelUsageError, match="contpte=True"):
        contpte.Machine(policy="oneplus", contpte=True)
    with pytest.raises(ModelUsageError, match="needs policy='oneplus'"):
        contpte.Machine(cont_pte_hugepage_on_qemu=True)
    assert contpte.Machine(memory="16M").kernel.policy == "mainline"


def test_prctl_errors_and_eligibility() -> None:
    m = machine()
    p, a = heap(m, name=None)
    with pytest.raises(OSError) as e:
        p.prctl_set_vma_name(a + 1, PAGE, "libc_malloc")
    assert e.value.errno == errno.EINVAL
    with pytest.raises(OSError) as e:
        p.prctl_set_vma_name(a, PAGE, "bad$name")
    assert e.value.errno == errno.EINVAL
    with pytest.raises(OSError) as e:
        p.prctl_set_vma_name(a, PAGE, "x" * 80)
    assert e.value.errno == errno.EINVAL
    with pytest.raises(OSError) as e:
        p.prctl_set_vma_name(a + (4 << 20) - PAGE, 2 * PAGE, "libc_malloc")
    assert e.value.errno == errno.ENOMEM
    f = m.open_file("f", 1 << 20)
    fa = p.mmap(1 << 20, prot="r", flags="private", file=f)
    with pytest.raises(OSError) as e:
        p.prctl_set_vma_name(fa, 1 << 20, "libc_malloc")
    assert e.value.errno == errno.EBADF
    # The design's names on less than 2 MB: not eligible.
    p.prctl_set_vma_name(a, 1 << 20, "libc_malloc")
    s = m.stats()
    p.write(a, BLOCK, 1)
    assert delta(m, s, "chp.thp_do_anon_pages") == 0
    assert not p.pagemap(a, BLOCK)["cont"].any()
    # 2 MB of "dalvik-main space (region space)": eligible.
    b = a + (2 << 20)
    p.prctl_set_vma_name(b, 2 << 20, "dalvik-main space (region space)")
    s = m.stats()
    p.write(b, BLOCK, 2)
    assert delta(m, s, "chp.thp_do_anon_pages") == 1
    pm = p.pagemap(b, BLOCK)
    assert pm["cont"].all() and (pm["order"] == 4).all() and pm["writable"].all()
    assert pm["pfn"][0] % 16 == 0 and np.array_equal(pm["pfn"], pm["pfn"][0] + np.arange(16))
    # Another name makes it ineligible again.
    p.prctl_set_vma_name(b, 2 << 20, "other")
    s = m.stats()
    p.write(b + BLOCK, BLOCK, 3)
    assert delta(m, s, "chp.thp_do_anon_pages") == 0
    m.check()


@pytest.mark.parametrize("nblocks", [1, 5])
def test_fault_maps_whole_blocks(nblocks: int) -> None:
    m = machine()
    p, a = heap(m)
    s = m.stats()
    p.write(a, nblocks * BLOCK, 7)
    assert delta(m, s, "chp.thp_do_anon_pages") == nblocks
    assert delta(m, s, "thp_fault_alloc") == nblocks
    assert delta(m, s, "fault.anon") == nblocks
    assert delta(m, s, "page.zero") == 16 * nblocks
    assert p.rss()["anon"] == 16 * nblocks
    mem = m.kernel.memmap
    for i in range(nblocks):
        h = int(p.pagemap(a + i * BLOCK, PAGE)["pfn"][0])
        assert (int(mem.entire_mapcount[h]), int(mem.refcount[h])) == (1, 1)
        assert not np.asarray(mem.mapcount[h : h + 16]).any()
    assert (p.read(a, nblocks * BLOCK) == 7).all()
    m.check()


def test_fault_falls_back_to_a_base_page(monkeypatch: pytest.MonkeyPatch) -> None:
    m = machine()
    p, a = heap(m)
    monkeypatch.setattr(chp, "alloc_cont_pte_hugepage", lambda k, gfp: -1)
    s = m.stats()
    p.write(a, 2 * PAGE, 1)
    # The first write falls back (a base page); the second page is another fault.
    assert delta(m, s, "chp.thp_do_anon_pages_fallback") == 2
    assert delta(m, s, "thp_fault_fallback") == 2
    assert delta(m, s, "chp.thp_do_anon_pages") == 0
    pm = p.pagemap(a, 2 * PAGE)
    assert (pm["order"] == 0).all() and not pm["cont"].any()
    m.check()


def folios(p: contpte.Process, a: int, n: int) -> list[int]:
    return [int(p.pagemap(a + i * BLOCK, PAGE)["pfn"][0]) for i in range(n)]


@pytest.mark.parametrize("nblocks", [1, 4, 9])
def test_fork_copies_blocks_whole(nblocks: int) -> None:
    # oneplus: one get_page and one entire-mapcount dup per block.
    m = machine()
    p, a = heap(m)
    p.write(a, nblocks * BLOCK, 1)
    s = m.stats()
    c = p.fork()
    assert delta(m, s, "chp.copy_block") == nblocks
    assert delta(m, s, "ref.get") == nblocks
    assert delta(m, s, "rmap.op") == nblocks
    assert delta(m, s, "rmap.pages") == 0
    assert delta(m, s, "fork.ptes") == 16 * nblocks
    mem = m.kernel.memmap
    for h in folios(p, a, nblocks):
        assert (int(mem.entire_mapcount[h]), int(mem.refcount[h])) == (2, 2)
    # Both write-protected whole, still Contiguous, same pages.
    pp, pc = p.pagemap(a, nblocks * BLOCK), c.pagemap(a, nblocks * BLOCK)
    assert pp["cont"].all() and pc["cont"].all()
    assert not pp["writable"].any() and not pc["writable"].any()
    assert np.array_equal(pp["pfn"], pc["pfn"])
    m.check()


@pytest.mark.parametrize("nblocks", [1, 4])
def test_mainline_fork_dups_every_page(nblocks: int) -> None:
    # mainline with 64K mTHP: one batch per folio, 16 rmap pages and 16 references.
    m = contpte.Machine(memory="64M", cpus=2, mthp={"64K": "always"})
    p = m.spawn()
    a = p.mmap(4 << 20, prot="rw", flags="private|anonymous")
    p.write(a, nblocks * BLOCK, 1)
    s = m.stats()
    p.fork()
    assert delta(m, s, "rmap.pages") == 16 * nblocks
    assert delta(m, s, "rmap.op") == nblocks
    mem = m.kernel.memmap
    for h in folios(p, a, nblocks):
        assert (int(mem.entire_mapcount[h]), int(mem.refcount[h])) == (0, 32)
        assert (np.asarray(mem.mapcount[h : h + 16]) == 2).all()
    m.check()


def test_partial_munmap_splits_the_block_once() -> None:
    m = machine()
    p, a = heap(m)
    p.write(a, 2 * BLOCK, 1)
    h = folios(p, a, 1)[0]
    s = m.stats()
    p.munmap(a + PAGE, PAGE)
    assert delta(m, s, "chp.split") == 1
    assert delta(m, s, "thp_split_pmd") == 1  # the design counts THP_SPLIT_PMD
    assert delta(m, s, "chp.double_map") == 0
    mem = m.kernel.memmap
    pm = p.pagemap(a, BLOCK)
    assert not pm["cont"].any() and not pm["present"][1] and pm["present"][[0, 2]].all()
    # 15 PTE mappings with a reference each; the other block untouched.
    assert (int(mem.entire_mapcount[h]), int(mem.refcount[h])) == (0, 15)
    assert p.pagemap(a + BLOCK, BLOCK)["cont"].all()
    m.check()


@pytest.mark.parametrize("how", ["dontneed", "mprotect"])
def test_split_in_one_mm_double_maps(how: str) -> None:
    m = machine()
    p, a = heap(m)
    p.write(a, BLOCK, 1)
    c = p.fork()
    h = folios(p, a, 1)[0]
    s = m.stats()
    if how == "dontneed":
        c.madvise(a + 2 * PAGE, PAGE, "dontneed")
        assert delta(m, s, "chp.madv_dont_need_unaligned") == 1
    else:
        c.mprotect(a, PAGE, "r")
    assert delta(m, s, "chp.split") == 1
    assert delta(m, s, "chp.double_map") == 1
    mem = m.kernel.memmap
    assert int(mem.entire_mapcount[h]) == 1  # the parent's block
    assert p.pagemap(a, BLOCK)["cont"].all() and not c.pagemap(a, BLOCK)["cont"].any()
    assert int(mem.flags[h]) & contpte.mm.memmap.PG_double_map
    m.check()
    p.exit()  # the last whole mapping goes: no longer double mapped
    assert not int(mem.flags[h]) & contpte.mm.memmap.PG_double_map
    m.check()


def test_cow_copies_the_block_whole_then_reuses() -> None:
    m = machine()
    p, a = heap(m)
    p.write(a, BLOCK, 1)
    c = p.fork()
    old = folios(p, a, 1)[0]
    s = m.stats()
    c.write(a + 5 * PAGE, PAGE, 2)
    assert delta(m, s, "chp.thp_cow") == 1
    assert delta(m, s, "page.copy") == 16
    assert delta(m, s, "chp.split") == 0
    pc = c.pagemap(a, BLOCK)
    assert pc["cont"].all() and pc["writable"].all() and pc["pfn"][0] != old
    assert (c.read(a, BLOCK) == np.where(np.arange(16) == 5, 2, 1)).all()
    assert (p.read(a, BLOCK) == 1).all()
    mem = m.kernel.memmap
    assert (int(mem.entire_mapcount[old]), int(mem.refcount[old])) == (1, 1)
    # The parent's block is its own now: reused whole, no copy.
    s = m.stats()
    p.write(a, PAGE, 3)
    assert delta(m, s, "chp.wp_reuse") == 1
    assert delta(m, s, "page.copy") == 0
    assert p.pagemap(a, BLOCK)["writable"].all()
    m.check()


def test_cow_falls_back_to_base_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    m = machine()
    p, a = heap(m)
    p.write(a, BLOCK, 1)
    c = p.fork()
    monkeypatch.setattr(chp, "alloc_cont_pte_hugepage", lambda k, gfp: -1)
    s = m.stats()
    c.write(a, PAGE, 2)
    assert delta(m, s, "chp.thp_cow_fallback") == 1
    assert delta(m, s, "page.copy") == 16
    pc = c.pagemap(a, BLOCK)
    assert not pc["cont"].any() and (pc["order"] == 0).all() and pc["writable"].all()
    assert (c.read(a, BLOCK)[1:] == 1).all() and c.read(a, PAGE)[0] == 2
    m.check()


def test_exit_zaps_blocks_whole() -> None:
    m = machine()
    p, a = heap(m)
    p.write(a, 3 * BLOCK, 1)
    pool0 = m.chp_pool_stats()
    assert pool0["usage_cma"] + pool0["usage_buddy"] == 3 * 16
    s = m.stats()
    p.munmap(a, 4 << 20)
    assert delta(m, s, "chp.zap_block") == 3
    assert delta(m, s, "chp.split") == 0
    # The three blocks came from the pool's CMA list and go back to it
    # (__free_cont_pte_hugepages), not to the buddy allocator.
    pool1 = m.chp_pool_stats()
    assert pool1["usage_cma"] + pool1["usage_buddy"] == 0
    assert pool1["pool_cma_count"] - pool0["pool_cma_count"] == pool0["usage_cma"]
    m.check()


def test_lock_breaks_fall_between_blocks() -> None:
    # oneplus: a block is one unit of progress (8), so copy_pte_range's
    # lock break (progress >= 32) falls every 4 blocks, on a block boundary.
    got: dict[str, list[int]] = {}
    for policy in ("oneplus", "mainline"):
        kw: dict[str, object] = (
            {"batch_fork": False, "mthp": {"64K": "always"}} if policy == "mainline" else {}
        )
        m = contpte.Machine(policy=policy, memory="64M", cpus=2, **kw)  # type: ignore[arg-type]
        p, a = heap(m, name="libc_malloc")
        p.write(a, 8 * BLOCK, 1)
        seen: list[int] = []
        m.kernel.on_lock_break = lambda mm, addr, seen=seen, a=a: (
            seen.append(addr - a) if addr < a + 8 * BLOCK else None
        )
        p.fork()
        got[policy] = seen
        m.check()
    assert got["oneplus"] == [4 * BLOCK]
    assert all(x % BLOCK == 0 for x in got["oneplus"])
    # v6.8-style per-PTE copy: progress 8 per PTE, a break every 4 PTEs, inside blocks.
    assert got["mainline"][:3] == [4 * PAGE, 8 * PAGE, 12 * PAGE]


def test_fork_lock_break_race_replayed_on_both_policies() -> None:
    # fork-lock-break-tlb-hit.scn: under mainline the parent's block is
    # write-protected in place without a TLBI, so t2's stale writable entry
    # lets its write at the lock break reach the page the child shares (9).
    # oneplus write-protects each block break-before-make (a flush): t2's
    # write faults and waits for fork; the child reads the fork-time 5.
    text = (HERE / "threads" / "fork-lock-break-tlb-hit.scn").read_text()
    text = "\n".join(ln for ln in text.splitlines() if "expect=" not in ln) + "\n"
    op = text.replace("mthp.64K=always", "policy=oneplus cont_pte_hugepage_on_qemu=true")
    for src, want in ((text, 9), (op, 5)):
        outs = run(parse(src, "lock-break.scn"))
        assert all(o.violation is None for o in outs), [o.violation for o in outs if o.violation]
        (r,) = [o for o in outs if o.text == "c read buf 12K"]
        assert r.values[0] == want


def test_scenario_header_and_verb() -> None:
    sc = parse(
        "machine arch=arm64 memory=32M policy=oneplus\n"
        "p = spawn\n"
        "buf = p mmap 4M rw private|anonymous\n"
        "p vma-name buf 4M dalvik\n"
        "p write buf 128K 1\n"
        "c = p fork\n"
        "c write buf 4K 2\n"
        "c read buf 8K\n",
        "oneplus.scn",
    )
    outs = run(sc)
    assert all(o.error is None and o.violation is None for o in outs), outs
    w = next(o for o in outs if o.text == "p write buf 128K 1")
    assert w.counters["chp.thp_do_anon_pages"] == 2
    assert next(o for o in outs if o.text == "c write buf 4K 2").counters["chp.thp_cow"] == 1
    assert next(o for o in outs if o.text == "c read buf 8K").values == [2, 1]


def test_validators_catch_a_corrupt_block() -> None:
    m = machine()
    p, a = heap(m)
    p.write(a, BLOCK, 1)
    pool = m.hw.pool
    ptep = m.kernel.mms[0].space.pte_ptr(a + 3 * PAGE)
    pool.poke(ptep, int(pool.peek(ptep)) & ~(1 << 52))  # one entry loses PTE_CONT
    with pytest.raises(InvariantViolation) as e:
        m.validators.cont_pte.after_syscall()
    assert e.value.rule == "cont-pte-corrupt"


def test_validators_catch_a_wrong_entire_mapcount() -> None:
    m = machine()
    p, a = heap(m)
    p.write(a, BLOCK, 1)
    h = folios(p, a, 1)[0]
    m.kernel.memmap.entire_mapcount[h] = 2
    with pytest.raises(InvariantViolation) as e:
        m.check()
    assert e.value.rule == "mapcount"


def test_access_flag_fault_on_an_old_block_updates_one_entry() -> None:
    # The design's handle_pte_fault() calls the stock arm64
    # ptep_set_access_flags() on a block: only the faulting entry gets AF.
    # A child's block is copied old (copy_present_cont_pte: pte_mkold); on a
    # CPU without hardware Access flag management the walker may take the
    # fault on another member, which the handler never updates: the fuzzer's
    # finding (seed 1, episode 13), a real behaviour of the design on such a
    # CPU.  With hardware AF (the design's phones) no such fault is taken.
    src = (
        "machine arch=arm64 memory=32M cpus=2 seed=17534 cpu={cpu} policy=oneplus cont_pte_hugepage_on_qemu=true\n"
        "p1 = spawn\n"
        "m2 = p1 mmap 1M rw private|anonymous\n"
        "c3 = p1 fork\n"
        "c11 = c3 fork\n"
        "c11 write m2+192K 4K 0x18d2\n"
        "c14 = c11 fork\n"
        "c14 read m2+192K 4K\n"
    )
    outs = run(parse(src.format(cpu="apple-m2"), "af.scn"))
    bad = [o.violation for o in outs if o.violation is not None]
    assert len(bad) == 1 and bad[0].rule == "fault-loop"
    for cpu in ("cortex-a55", "cortex-a76"):
        outs = run(parse(src.format(cpu=cpu), "af.scn"))
        assert all(o.violation is None and o.error is None for o in outs)
        assert outs[-1].values == [0x18D2]


def test_whole_block_fault_rechecks_the_block_under_the_ptl() -> None:
    # threads/chp-fault-recheck.scn: at chp.alloc (block allocated, PTL not
    # yet taken) t2 maps a base page in the block's range (the one-block pool
    # is empty for it).  p's fault then finds its own entry none but not the
    # block (cont_pte_none) and falls back: its block goes back (folio.alloc
    # 3: p's block, t2's base page, p's base page).  Without the re-check
    # (bug catalog) the block overwrites t2's page: caught by rss.
    from contpte.workloads.explore import explore

    sc = parse((HERE / "threads" / "chp-fault-recheck.scn").read_text(), "chp-fault-recheck.scn")
    outs = run(sc)
    assert all(o.violation is None and o.error is None for o in outs)
    w = next(o for o in outs if o.text == "p write buf 4K 1")
    assert w.counters["folio.alloc"] == 3
    assert w.counters["chp.thp_do_anon_pages"] == 1
    assert w.counters["chp.thp_do_anon_pages_fallback"] == 1
    res = explore(sc, bound=1)
    assert res.failure is None and res.schedules == 2
    bad = explore(sc, bound=1, bugs=("chp_fault_no_cont_pte_none_recheck",))
    assert bad.failure is not None
    (v,) = [o.violation for o in bad.failure if o.violation is not None]
    assert v.rule == "rss"


# -- whole-block reclaim and swap (mm/vmscan.c, mm/rmap.c, mm/memory.c of the design) --
def swap_machine(**kw: object) -> contpte.Machine:
    return machine(swap="4M", check=True, **kw)


def ptes(m: contpte.Machine, p: contpte.Process, addr: int) -> list[int]:
    space = p.mm.space
    return [int(m.hw.pool.peek(space.pte_ptr(addr + i * PAGE))) for i in range(16)]


def test_reclaim_swaps_a_whole_block_out_and_in() -> None:
    """A block mapped whole goes to swap as one 64K folio and comes back as one block.

    shrink_page_list(): add_to_swap() gives the folio 16 slots; try_to_unmap()
    (TTU_SPLIT_HUGE_PMD) splits the block mapping first (chp.split 1,
    thp_split_pmd 1), then unmaps entry by entry; page_io counts thp_swpout 1,
    pswpout 16.  do_swap_page() on the synchronous device: the 16 entries are
    one swapped block (is_cont_pte_swap), a block from the pool is read whole
    (pswpin 16) and mapped whole, read-only on a read fault; the write then
    reuses it whole (chp.wp_reuse)."""
    m = swap_machine()
    p, a = heap(m)
    data = np.arange(16, dtype=np.uint64) + 100
    for i in range(16):
        p.write(a + i * PAGE, PAGE, int(data[i]))
    s = m.stats()
    assert m.reclaim() == 0  # young: kept once, made old
    assert m.reclaim() == 16
    assert {
        n: delta(m, s, n) for n in ("pgsteal", "pswpout", "thp_swpout", "chp.split", "thp_split_pmd")
    } == {
        "pgsteal": 16,
        "pswpout": 16,
        "thp_swpout": 1,
        "chp.split": 1,
        "thp_split_pmd": 1,
    }
    assert delta(m, s, "thp_swpout_fallback") == 0
    assert p.rss()["anon"] == 0
    a64 = m.kernel.arch
    offs = [a64.swp_offset(e) for e in ptes(m, p, a)]
    assert offs[0] % 16 == 0 and offs == list(range(offs[0], offs[0] + 16))
    s = m.stats()
    assert int(p.read(a + 5 * PAGE, PAGE)[0]) == 105
    got = {
        n: delta(m, s, "chp." + n)
        for n in (
            "thp_swpin_no_swapcache_entry",
            "thp_swpin_no_swapcache_alloc_success",
            "thp_swpin_no_swapcache_alloc_fail",
            "thp_swpin_no_swapcache_fallback_entry",
        )
    }
    assert got == {
        "thp_swpin_no_swapcache_entry": 1,
        "thp_swpin_no_swapcache_alloc_success": 1,
        "thp_swpin_no_swapcache_alloc_fail": 0,
        "thp_swpin_no_swapcache_fallback_entry": 0,
    }
    assert delta(m, s, "pswpin") == 16 and delta(m, s, "pgmajfault") == 1
    entries = ptes(m, p, a)
    assert all(a64.pte_cont(e) and not a64.pte_write(e) for e in entries)
    pfn = a64.pte_pfn(entries[0])
    assert int(m.kernel.memmap.entire_mapcount[pfn]) == 1
    assert p.rss()["anon"] == 16
    for i in range(16):
        assert int(p.read(a + i * PAGE, PAGE)[0]) == 100 + i
    s = m.stats()
    p.write(a, PAGE, 7)
    assert delta(m, s, "chp.wp_reuse") == 1
    assert all(a64.pte_cont(e) and a64.pte_write(e) for e in ptes(m, p, a))
    m.check()


def test_block_swap_in_falls_back_to_16_base_pages() -> None:
    """No block in the pool: read_thp_no_swapcache_fallback() reads and maps 16 base pages."""
    m = swap_machine(chp_cma="1M", chp_min_buddy=0, chp_max_buddy=0, chp_stable_max_buddy=0)
    p, a = heap(m)
    p.write(a, BLOCK, 3)
    m.reclaim()
    assert m.reclaim() == 16
    s = m.stats()
    n = 0
    while not delta(m, s, "chp.thp_do_anon_pages_fallback"):  # empty the pool (1M of CMA)
        n += 1
        p.write(a + n * BLOCK, PAGE, 4)
    s = m.stats()
    p.read(a, PAGE)
    assert {
        n: delta(m, s, "chp." + n)
        for n in (
            "thp_swpin_no_swapcache_entry",
            "thp_swpin_no_swapcache_alloc_fail",
            "thp_swpin_no_swapcache_fallback_entry",
            "thp_swpin_no_swapcache_fallback_alloc_success",
        )
    } == dict.fromkeys(
        (
            "thp_swpin_no_swapcache_entry",
            "thp_swpin_no_swapcache_alloc_fail",
            "thp_swpin_no_swapcache_fallback_entry",
            "thp_swpin_no_swapcache_fallback_alloc_success",
        ),
        1,
    )
    a64 = m.kernel.arch
    entries = ptes(m, p, a)
    assert all(a64.pte_present(e) and not a64.pte_cont(e) for e in entries)
    assert len({a64.pte_pfn(e) for e in entries}) == 16
    assert delta(m, s, "pswpin") == 16 and p.rss()["anon"] == (n - 1) * 16 + 1 + 16
    assert int(p.read(a + 9 * PAGE, PAGE)[0]) == 3
    m.check()


SWPIN = (
    "thp_swpin_swapcache_entry",
    "thp_swpin_swapcache_alloc_success",
    "thp_swpin_hit_swapcache",
    "thp_swpin_no_swapcache_entry",
    "wp_reuse",
    "thp_cow",
)


def swapped_block_shared_by_fork() -> tuple[contpte.Machine, contpte.Process, contpte.Process, int]:
    m = swap_machine()
    p, a = heap(m)
    for i in range(16):
        p.write(a + i * PAGE, PAGE, 100 + i)
    m.reclaim()
    assert m.reclaim() == 16
    return m, p, p.fork(), a  # the child's 16 swap PTEs share the slots: swap count 2


def test_shared_block_swaps_in_through_the_swap_cache_and_the_sibling_hits_it() -> None:
    """Swap count 2 (fork after swap-out): read_swap_cache_thp(), then thp_swpin_hit_swapcache.

    do_swap_page() (sm8550 mm/memory.c c56550493ad7): a swap count above 1
    is not "skip swapcache"; the 16 entries are one swapped block, so
    read_swap_cache_thp() puts a pool block in the swap cache for the 16
    slots and reads it (thp_swpin_swapcache_entry, _alloc_success, pswpin
    16, one major fault); it is mapped whole, read-only (not exclusive: the
    child's swap PTEs still count), and cont_pte_swap_entry_free() leaves
    the child's counts.  The child's fault finds the block in the swap
    cache (ContPteHugePage, is_cont_pte_swap): mapped whole again
    (thp_swpin_hit_swapcache, no read, no major fault), a second entire
    mapping.  The child's write copies the shared block (thp_cow); the
    parent's then finds the one mapping and no swap count left: the block
    leaves the swap cache and is reused (reuse_swap_cont_pte_page())."""
    m, p, c, a = swapped_block_shared_by_fork()
    a64 = m.kernel.arch
    mem = m.kernel.memmap
    s = m.stats()
    assert int(p.read(a + 5 * PAGE, PAGE)[0]) == 105
    assert {n: delta(m, s, "chp." + n) for n in SWPIN} == {
        "thp_swpin_swapcache_entry": 1,
        "thp_swpin_swapcache_alloc_success": 1,
        "thp_swpin_hit_swapcache": 0,
        "thp_swpin_no_swapcache_entry": 0,
        "wp_reuse": 0,
        "thp_cow": 0,
    }
    assert (delta(m, s, "pswpin"), delta(m, s, "pgmajfault"), delta(m, s, "swap.cache_hit")) == (16, 1, 0)
    entries = ptes(m, p, a)
    pfn = a64.pte_pfn(entries[0])
    assert all(a64.pte_cont(e) and not a64.pte_write(e) for e in entries)
    # One mapping's reference and the swap cache's 16.
    assert (int(mem.entire_mapcount[pfn]), int(mem.refcount[pfn])) == (1, 17)
    s = m.stats()
    assert int(c.read(a + 7 * PAGE, PAGE)[0]) == 107
    assert {n: delta(m, s, "chp." + n) for n in SWPIN} == {
        "thp_swpin_swapcache_entry": 0,
        "thp_swpin_swapcache_alloc_success": 0,
        "thp_swpin_hit_swapcache": 1,
        "thp_swpin_no_swapcache_entry": 0,
        "wp_reuse": 0,
        "thp_cow": 0,
    }
    assert (delta(m, s, "pswpin"), delta(m, s, "pgmajfault"), delta(m, s, "swap.cache_hit")) == (0, 0, 1)
    child = ptes(m, c, a)
    assert all(a64.pte_cont(e) and not a64.pte_write(e) for e in child)
    assert a64.pte_pfn(child[0]) == pfn
    assert (int(mem.entire_mapcount[pfn]), int(mem.refcount[pfn])) == (2, 18)
    assert p.rss()["anon"] == c.rss()["anon"] == 16
    m.check()
    s = m.stats()
    c.write(a, PAGE, 1)
    p.write(a, PAGE, 2)
    assert (delta(m, s, "chp.thp_cow"), delta(m, s, "chp.wp_reuse")) == (1, 1)
    assert all(a64.pte_cont(e) and a64.pte_write(e) for e in ptes(m, p, a))
    assert a64.pte_pfn(ptes(m, p, a)[0]) == pfn
    assert not int(mem.flags[pfn]) & PG_swapcache
    assert int(p.read(a + PAGE, PAGE)[0]) == 101 and int(c.read(a + PAGE, PAGE)[0]) == 101
    m.check()


def test_swap_cache_block_not_mapped_whole_takes_the_per_page_path() -> None:
    """A block in the swap cache whose entries are not one suitable block: "goto basepages".

    The child's mprotect of the block's second half splits its VMA, so the
    block is no longer suitable there (transhuge_cont_pte_vma_suitable):
    the fault maps the one faulting page of the cached folio (mainline's
    per-page path, swap.cache_hit 1), no thp_swpin_* event."""
    m, p, c, a = swapped_block_shared_by_fork()
    p.read(a, PAGE)  # read_swap_cache_thp(): the block is in the swap cache
    c.mprotect(a + 8 * PAGE, 8 * PAGE, "r")
    s = m.stats()
    assert int(c.read(a + 3 * PAGE, PAGE)[0]) == 103
    assert {n: delta(m, s, "chp." + n) for n in SWPIN} == dict.fromkeys(SWPIN, 0)
    assert (delta(m, s, "swap.cache_hit"), delta(m, s, "pgmajfault")) == (1, 0)
    a64 = m.kernel.arch
    child = ptes(m, c, a)
    assert [a64.pte_present(e) for e in child] == [i == 3 for i in range(16)]
    assert not a64.pte_cont(child[3]) and c.rss()["anon"] == 1
    m.check()


def test_double_mapped_block_is_kept() -> None:
    """shrink_page_list(): "Skip doublemap pages in memory reclamation"."""
    m = swap_machine()
    p, a = heap(m)
    p.write(a, BLOCK, 5)
    c = p.fork()
    c.mprotect(a, PAGE, "r")  # the child's copy split: PageDoubleMap
    s = m.stats()
    assert m.reclaim() == 0 and m.reclaim() == 0
    assert delta(m, s, "pswpout") == 0 and delta(m, s, "chp.split") == 0
    assert int(c.read(a + PAGE, PAGE)[0]) == 5 and int(p.read(a, PAGE)[0]) == 5


def test_block_mapped_in_part_is_not_reclaimed() -> None:
    """try_to_unmap_one()'s first-entry checks: a walk that does not start at
    the block's first entry, or 16 pages with different mapcounts, stops; the
    block stays mapped (its slots go back when it leaves the swap cache)."""
    m = swap_machine()
    p, a = heap(m)
    p.write(a, 2 * BLOCK, 5)
    p.madvise(a, PAGE, "dontneed")  # the first block without its first page
    p.madvise(a + BLOCK + 5 * PAGE, PAGE, "dontneed")  # the second without page 5
    s = m.stats()
    assert m.reclaim() == 0 and m.reclaim() == 0
    # The first pass finds the PTEs young and keeps both (folio_check_references).
    assert delta(m, s, "chp.mapped_walk_start_from_non_head") == 1
    assert delta(m, s, "chp.mapped_walk_lastmoment_doublemap") == 1
    assert delta(m, s, "pswpout") == 0
    assert p.rss()["anon"] == 30
    m.check()


def test_no_free_slots_keeps_the_block_whole() -> None:
    """add_to_swap() fails for a block: the design keeps it (no split, no fallback)."""
    # 4M of swap: two clusters of 512 slots; the first holds the header slot,
    # so only the second is free for order-4 allocations: 32 blocks.
    m = swap_machine()
    p, a = heap(m)
    p.write(a, 33 * BLOCK, 5)
    s = m.stats()
    assert m.reclaim() == 0
    assert m.reclaim() == 32 * 16
    assert delta(m, s, "thp_swpout") == 32 and delta(m, s, "chp.split") == 32
    assert delta(m, s, "thp_swpout_fallback") == 0
    last = a + 32 * BLOCK
    assert all(m.kernel.arch.pte_cont(e) for e in ptes(m, p, last))
    assert int(p.read(last, PAGE)[0]) == 5


def test_reclaim_double_map_whole_bug_is_caught() -> None:
    sc = parse(
        (Path(contpte.__file__).parent / "workloads/bugs/chp_reclaim_double_map_whole.scn").read_text()
    )
    assert all(o.error is None and o.failed is None for o in run(sc))
    outs = run(sc, bugs=("chp_reclaim_double_map_whole",))
    assert (outs[-1].text, outs[-1].error) == ("reclaim", "violation:mapcount")
