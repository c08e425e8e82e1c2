"""Reclaim's batched unmap of a lazyfree folio restores its PTEs without granting write.

From 6.15 (``lazyfree_unmap_batch``) ``try_to_unmap_one()`` clears a
lazyfree large folio's PTEs one ``folio_pte_batch()`` at a time and, if the
folio was written again, puts them back with ``set_ptes(pteval, nr)``.
Until the fix ("mm/rmap: fix incorrect pte restoration for lazyfree
folios", in Debian's 6.19.11; ``lazyfree_batch_respect_write``) the batch
ignored the write bit, so a writable first PTE lent its write bit to
read-only PTEs of pages that are not PageAnonExclusive.  The fuzzer found
this sequence at ``--kernel-version 7.1`` before the fix was modelled
(seed 20261216); the kernel sources show the same bug in 6.18.15 and its
fix in 6.19.11, 7.1.13 and 7.2.6.
"""

from __future__ import annotations

import pytest

from contpte.workloads.scenario import parse, run

_SCENARIO = """\
machine arch=arm64 memory=32M cpus=2 mthp.128K=always check=true cpu=neoverse-v3 kernel={kernel}
p1 = spawn
c4 = p1 fork
m8 = c4 mmap 128K rw private|anonymous
c4 write m8 4K 0x556b
c4 madvise m8 128K free
c9 = c4 fork
c4 write m8 128K 0x12fa
c9 write m8 4K 0x13f3
reclaim
reclaim
c9 read m8 128K
"""
# c4's 128K folio is made lazyfree, shared by fork, then c4 copies all of
# it away; c9 reuses its first page in place (writable, exclusive; the 31
# others stay read-only and not exclusive) and so dirties the folio; the
# second reclaim finds it redirtied and restores the 32 PTEs as one batch.


def _outcomes(kernel: str) -> list:  # type: ignore[type-arg]
    return run(parse(_SCENARIO.format(kernel=kernel), f"lazyfree-{kernel}.scn"))


@pytest.mark.parametrize("kernel", ["6.15", "6.18"])
def test_before_the_fix_the_restore_makes_read_only_ptes_writable(kernel: str) -> None:
    failed = [o for o in _outcomes(kernel) if o.failed]
    assert failed and failed[0].error == "violation:writable-anon-exclusive"
    assert failed[0].text == "reclaim"


@pytest.mark.parametrize("kernel", ["6.19", "7.1", "7.2"])
def test_from_6_19_the_batch_keeps_to_one_write_state(kernel: str) -> None:
    outs = _outcomes(kernel)
    assert not [o for o in outs if o.failed], [o.failed for o in outs if o.failed]
    # The folio was written again, so it is kept: c9 reads its write in the
    # first page and zeros in the 31 pages nobody wrote.
    assert outs[-1].values == [0x13F3] + [0] * 31


def test_the_fix_is_on_the_version_axis() -> None:
    import contpte

    assert not contpte.Machine(kernel="6.18").kernel.lazyfree_batch_respect_write
    assert contpte.Machine(kernel="6.19").kernel.lazyfree_batch_respect_write
