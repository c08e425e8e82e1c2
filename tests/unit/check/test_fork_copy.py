"""``fork-copy``: the child's tables copy the parent's pre-fork tables, per PTE.

The parent's descriptors from before the fork come from the store log (the
epoch begins in ``before_fork``): the tables the fork wrote (the parent's
write-protect) are read from the log's copies, the others as they are.
Bugs are planted in the child (or the parent) right after the copy.
"""

from __future__ import annotations

from typing import Any

import pytest
from world import PAGE, RW, Proc, World, outcome

from contpte.mm.mm_types import VM_UFFD_WP

BASE = 0x4000_0000
VA = BASE + (16 + 3) * PAGE


def _world(arch: str, order: int) -> tuple[World, Proc]:
    w = World(arch)
    p = w.spawn()
    w.mmap(p, BASE, 2 << 20)
    for i in range(0, 64, 1 << order):
        w.fault_anon(p, BASE + i * PAGE, order, value=i + 1)
    w.syscall(p)
    return w, p


def _plant(what: str) -> Any:
    def f(parent: Proc, child: Proc) -> None:
        w: World = f.world  # type: ignore[attr-defined]
        a = w.arch
        cptep = child.mm.space.pte_ptr(VA)
        e = w.pool.peek(cptep)
        if what == "pfn":
            w.pool.poke(cptep, a.pfn_pte(a.pte_pfn(e) + 1, a.pte_pgprot(e)))
        elif what == "missing":
            w.pool.poke(cptep, 0)
        elif what == "extra":
            w.pool.poke(child.mm.space.pte_ptr(BASE + 100 * PAGE), e)
        elif what == "clean":
            base = cptep & ~15
            for i in range(16):  # the whole block, or the gathered dirty bit hides it
                w.pool.poke(base + i, a.pte_mkclean(w.pool.peek(base + i)))
        elif what == "protnone":
            w.pool.poke(cptep, a.pte_modify(e, a.vm_get_page_prot(0)))
        elif what == "uffd_set":
            w.pool.poke(cptep, a.pte_mkuffd_wp(e))
        elif what == "soft_dirty":
            w.pool.poke(cptep, a.pte_clear_soft_dirty(e) if a.pte_soft_dirty(e) else a.pte_mksoft_dirty(e))
        elif what == "writable_child":
            w.pool.poke(cptep, a.pte_mkdirty(a.pte_mkwrite(e)))
        elif what == "writable_parent":
            pptep = parent.mm.space.pte_ptr(VA)
            w.pool.poke(pptep, a.pte_mkwrite(w.pool.peek(pptep)))

    return f


@pytest.mark.parametrize("arch", ["arm64", "generic"])
@pytest.mark.parametrize("order", [0, 4])
def test_a_faithful_copy_passes(arch: str, order: int) -> None:
    w, p = _world(arch, order)
    c = w.fork(p)
    c2 = w.fork(p)  # the parent already write-protected: nothing logged for it
    w.cow(c, VA, 5)
    w.syscall(c)
    w.fork(c)
    assert w.v.shadow.ndense == 0 and outcome(w.v.run_all) is None
    del c2


@pytest.mark.parametrize("arch", ["arm64", "generic"])
@pytest.mark.parametrize("order", [0, 4])
@pytest.mark.parametrize(
    "what,message",
    [
        ("pfn", "the child maps another frame, which is not an exclusive copy"),
        ("missing", "the parent's page is missing in the child"),
        ("extra", "the child maps a page the parent did not map"),
        ("clean", "the parent's PTE is dirty, the child's is clean: a write may be lost"),
        ("protnone", "accessibility (PROT_NONE / NUMA hinting) differs from the parent's"),
        ("uffd_set", "the uffd-wp bit was not copied per PTE"),
    ],
)
def test_a_bad_copy_is_named(arch: str, order: int, what: str, message: str) -> None:
    w, p = _world(arch, order)
    a = w.arch
    if what == "uffd_set" and not a.pte_uffd_wp(a.pte_mkuffd_wp(a.pfn_pte(1, a.vm_get_page_prot(3)))):
        pytest.skip("no uffd-wp bit on this arch")
    f = _plant(what)
    f.world = w  # type: ignore[attr-defined]
    got = outcome(lambda: w.fork(p, f))
    assert got is not None and got[2] == "fork-copy"
    assert f"pid {p.pid + 1} (child of {p.pid}): {message}" in got[1]
    if what == "clean":
        assert f"(addr {VA & ~(16 * PAGE - 1):#x})" in got[1]  # the first page of the block cleaned
    elif what != "extra":
        assert f"(addr {VA:#x})" in got[1]


@pytest.mark.parametrize("arch", ["arm64", "generic"])
def test_a_different_soft_dirty_bit_is_not_a_bad_copy(arch: str) -> None:
    """Soft-dirty tracking is never on in the model: fork's batches ignore the bit.

    ``set_ptes()`` then gives every child PTE of a batch the first one's
    soft-dirty bit, so the child's may differ from the parent's per PTE.
    """
    w, p = _world(arch, 4)
    a = w.arch
    if not a.pte_soft_dirty(a.pte_mksoft_dirty(a.pfn_pte(1, 0))):
        pytest.skip("no soft-dirty bit on this arch")
    f = _plant("soft_dirty")
    f.world = w  # type: ignore[attr-defined]
    assert outcome(lambda: w.fork(p, f)) is None


@pytest.mark.parametrize("what", ["writable_child", "writable_parent"])
def test_a_writable_copy_is_caught_by_the_structural_checks(what: str) -> None:
    w, p = _world("arm64", 4)
    f = _plant(what)
    f.world = w  # type: ignore[attr-defined]
    got = outcome(lambda: w.fork(p, f))
    assert got is not None and got[2] in ("writable-shared", "writable-anon-exclusive")
    assert got == outcome(w.v.run_all)


def test_uffd_wp_is_copied_only_with_vm_uffd_wp() -> None:
    w = World("arm64")
    p = w.spawn()
    v = w.mmap(p, BASE, 2 << 20, RW | VM_UFFD_WP)
    w.fault_anon(p, BASE, 4, value=3)
    w.syscall(p)
    a = w.arch
    for i in range(16):  # UFFDIO_WRITEPROTECT
        ptep = p.mm.space.pte_ptr(BASE + i * PAGE)
        w.pool.store(ptep, a.pte_mkuffd_wp(w.pool.peek(ptep)))
    w.syscall(p)
    assert outcome(lambda: w.fork(p)) is None  # kept, with VM_UFFD_WP

    def drop(parent: Proc, child: Proc) -> None:
        child.mm.vmas[0].vm_flags &= ~VM_UFFD_WP  # the child without it: bits must go

    got = outcome(lambda: w.fork(p, drop))
    assert got is not None and "the uffd-wp bit was not copied per PTE" in got[1]
    del v
