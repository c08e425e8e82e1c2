"""Vectorised fast paths of mm/memory.c for bulk work: fork's table copy, zap.

Models: the same kernel functions as ``mm/memory.py`` (Linux v6.12), which
stays the readable reference.  Each function here stands for a sequence of
calls of a kernel-shaped function over many page tables at once, computed
with numpy on the stacked tables, and must leave exactly the same state
(page tables, mem_map, RSS, TLBs) and count exactly the same counters.
``tests/unit/mm/test_fast_paths.py`` proves it on random workloads against
``kernel.fast_paths = False``.

A fast path takes only the cases whose outcome it can compute for a whole
table; it returns None (or hands a table back) for anything else, and the
kernel-shaped code runs: a bug-catalog option, a pinned mm, a lock-break
hook, swap/special/uffd-wp/PROT_NONE entries, file folios, and anything
the arch's bulk forms decline (an unfold or a fold would happen).

Why the results agree:

- ``copy_pte_range``: a batch is what ``folio_pte_batch`` finds, computed
  from the PTEs the hint chain visits (``pte_batch_hint``): each visited
  PTE is compared with its predecessor (normalised as ``folio_pte_batch``
  normalises it, and in the same folio).  Reads follow the loop: one
  ``ptep_get`` per batch start and per none PTE, one per probe of
  ``folio_pte_batch``.  Lock-break points are counted with the loop's
  progress rule.  Between two lock-break points a batch changes only its
  own entries, so the rule checker's PTL-release checks (consistency of
  each contiguous set, which the arch's bulk forms keep) give the same
  verdict when run once per table at the end.  Whole tables mapping whole
  folios of one order in order (the common case) take a shorter way to the
  same batches (``_uniform_batches``): there every folio is one batch.
- ``zap_pte_range``: the batches of ``zap_present_ptes`` the same way; the
  mmu_gather's forced flushes (every ``MAX_GATHER_BATCH`` pages) happen
  between the same batches, so TLB invalidations and page frees come in
  the same order.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..arch.pgtable import PteBatches, batch_positions
from ..hw.tables import PteTable
from .kernel import REF_OPS, Kernel
from .memmap import PG_anon, PG_anon_exclusive
from .mm_types import MM_ANONPAGES, VM_SHARED, VM_UFFD_WP, Vma, is_cow_mapping, vma_is_anonymous
from .rmap import RMAP_OPS, RMAP_PAGES, RMAP_REMOVE

__all__ = ["copy_page_range_bulk", "fault_in_anon_write", "lock_break_points", "unmap_page_range_bulk"]

_NOT_EXCL = np.uint32(~PG_anon_exclusive & 0xFFFFFFFF)
#: copy_pte_range's progress threshold for a lock-break point.
_LOCK_BREAK = 32


def _bulk_allowed(k: Kernel) -> bool:
    """The model-wide conditions of every fast path."""
    return bool(k.fast_paths and k.arch.BULK and not k.bugs and not k.arch.bugs)


def _batching_is_mainline(k: Kernel) -> bool:
    """Historical batching variants (``MM_OPTIONS``) take the kernel-shaped code."""
    return k.batch_rmap and k.batch_extent == "folio"


def lock_break_points(weights: np.ndarray) -> int:
    """How many lock-break points ``copy_pte_range``'s loop passes.

    ``weights``: the progress of each loop iteration in order (1 per none
    PTE, 8 per copied PTE of a batch).  At the top of every iteration but
    the first, progress >= 32 is a break point and resets it.
    """
    n = len(weights)
    if n <= 1:
        return 0
    wmin = int(weights.min())
    if wmin >= _LOCK_BREAK:
        return n - 1
    wmax = int(weights.max())
    if wmin == wmax:
        per = -(-_LOCK_BREAK // wmin)
        return (n - 1) // per
    breaks = 0
    p = 0
    for w in weights.tolist():
        if p >= _LOCK_BREAK:
            breaks += 1
            p = 0
        p += w
    return breaks


class _Stack:
    """Several level-3 tables' ranges, stacked: the flat view the bulk forms use."""

    def __init__(self, k: Kernel, pieces: list[tuple[int, int, int]], tables: list[Any]) -> None:
        per = k.arch.PTRS_PER_PTE
        self.per = per
        self.pieces = pieces
        self.tables = tables
        self.raw = np.stack([t.entries for t in tables]).reshape(-1)
        self.n = len(self.raw)
        lo = np.array([p[1] for p in pieces], dtype=np.int64)
        hi = np.array([p[2] for p in pieces], dtype=np.int64)
        self.lo = lo
        self.hi = hi
        #: every piece a whole table
        self.full = bool((lo == 0).all() and (hi == per).all())
        if self.full:
            self.inr = np.ones(self.n, dtype=bool)
        else:
            col = np.arange(per, dtype=np.int64)
            self.inr = ((col >= lo[:, None]) & (col < hi[:, None])).reshape(-1)
        #: flat index of each piece's range end
        self.rend = np.arange(len(pieces), dtype=np.int64) * per + hi


class _Batches:
    """The batches ``folio_pte_batch`` finds in a stack (see ``_find_batches``)."""

    b: PteBatches
    pfn: np.ndarray  # pfn of each batch's first page
    heads: np.ndarray
    large: np.ndarray
    first: np.ndarray  # what ptep_get returned for each batch's first PTE
    any_writable: np.ndarray  # folio_pte_batch's any_writable
    first_writable: np.ndarray  # pte_write() of the first PTE
    folio_nr: np.ndarray | None  # folio_nr_pages() of each batch's folio, when known
    pages: slice | None  # the pages the batches map, in order, when consecutive
    probe_reads: int
    probe_gathers: int
    loop_reads: int
    loop_gathers: int


def _find_batches(k: Kernel, st: _Stack, key_fn: Any, want_first: bool = True) -> _Batches | None:
    """Batches of present, normal, anon PTEs as the kernel-shaped loops find them.

    Mirrors the loop of ``copy_pte_range``/``zap_pte_range`` with
    ``folio_pte_batch`` (``key_fn`` normalises a PTE as its flags say).
    None if any PTE in range is not a plain present anon mapping.
    ``want_first`` False: the caller does not use ``first``, which may then
    hold raw entries instead of what ``ptep_get()`` returns.
    """
    if st.full:
        uni = _uniform_batches(k, st, key_fn, want_first)
        if uni is not None:
            return uni
    a = k.arch
    mem = k.memmap
    raw = st.raw
    inr = st.inr
    n = st.n
    nz = raw != 0
    full = bool(inr.all())
    if not full:
        nz &= inr
    if (nz & ~a.bulk_plain_v(raw)).any():
        return None
    # The hint chain: a PTE is visited unless an earlier one's hint jumps over it.
    visited = a.bulk_batch_visited(raw, inr)
    if visited is None:
        V = np.arange(n, dtype=np.int64) if full else np.flatnonzero(inr)
    else:
        # a PTE the chain jumps over is in the batch of the one that jumped:
        # it must be present like the rest (else the kernel-shaped path)
        if (inr & ~visited & ~nz).any():
            return None
        V = np.flatnonzero(visited)
    every = visited is None and full  # V is every entry, in order
    rv = raw if every else raw[V]
    nzV = nz if every else rv != 0
    dense = bool(nzV.all())  # every PTE present (the common fork/exit case)
    pfnV = a.pte_pfn_v(rv)
    pz = pfnV if dense else pfnV[nzV]
    if len(pz) and int(pz.max()) >= mem.nr_frames:
        return None
    hz = mem.head[pz]
    if len(hz) and (hz < 0).any():
        return None
    if dense:
        hV = hz
    else:
        hV = np.full(len(V), -1, dtype=np.int64)
        hV[nzV] = hz
    if len(hz) and ((mem.flags[hz] & np.uint32(PG_anon)) == 0).any():
        return None
    if dense:
        largeV = mem.order[hz] > 0
    else:
        largeV = np.zeros(len(V), dtype=bool)
        largeV[nzV] = mem.order[hz] > 0
    gV, readsV, gathersV = a.bulk_ptep_get(raw, V)
    step = np.uint64(1 << a.PFN_PTE_SHIFT)
    per = st.per
    m = np.zeros(len(V), dtype=bool)
    if len(V) > 1 and largeV.any():  # only large folios are batched
        keyV = key_fn(gV)
        v1, v0 = V[1:], V[:-1]
        if every:
            # consecutive entries: same table unless v1 starts one
            m[1:] = largeV[1:] & (hV[1:] == hV[:-1]) & (keyV[1:] - keyV[:-1] == step)
            if not dense:
                m[1:] &= nzV[1:] & nzV[:-1]
            m[per::per] = False
        else:
            m[1:] = (
                nzV[1:]
                & nzV[:-1]
                & largeV[1:]
                & (hV[1:] == hV[:-1])
                & ((v1 // per) == (v0 // per))
                & (keyV[1:] - keyV[:-1] == (v1 - v0).astype(np.uint64) * step)
            )
    if m.any():
        fV = np.flatnonzero(~m)  # indices into V of the PTEs that end a batch
        fi = fV[nzV[fV]]  # ... of which the present ones start the next
        # the V index of the PTE that ends each batch (len(V): none does)
        fVn = np.append(fV, len(V))[np.searchsorted(fV, fi, side="right")]
    else:  # every present PTE is a batch of its own
        fV = np.arange(len(V), dtype=np.int64)
        fi = np.flatnonzero(nzV)
        fVn = fi + 1
    starts = V[fi]
    nxt = np.append(V, np.int64(n))[fVn]
    rend = st.rend[starts // per]
    ends = np.minimum(nxt, rend)
    nrs = ends - starts
    out = _Batches()
    out.b = PteBatches(starts, nrs, n)
    out.heads = hV[fi]
    out.large = largeV[fi]
    out.pfn = pfnV[fi]
    out.first = gV[fi]
    out.folio_nr = None
    out.pages = None
    # order-0 folios are never batched: the loop moves on by one
    if ((~out.large) & (nrs != 1)).any():
        return None
    # any_writable: folio_pte_batch sets it for a visited PTE after the first
    wV = a.pte_write_v(rv) & nzV
    cw = np.concatenate(([0], np.cumsum(wV, dtype=np.int64)))
    out.any_writable = (cw[fVn] - cw[fi + 1]) > 0
    out.first_writable = wV[fi]
    # probes of folio_pte_batch (large folios, max_nr != 1): every visited
    # PTE of the batch after its start, and the visited PTE that ended it
    # (a none PTE or the next batch's start) when before the range end
    inner = m & nzV
    term = out.large & (rend - starts > 1) & (ends < rend)
    tV = fVn[term]
    out.probe_reads = int(readsV[inner].sum()) + int(readsV[tV].sum())
    out.probe_gathers = int(gathersV[inner].sum()) + int(gathersV[tV].sum())
    out.loop_reads = int(readsV[fi].sum()) + int((~nzV).sum())
    out.loop_gathers = int(gathersV[fi].sum())
    return out


def _uniform_batches(k: Kernel, st: _Stack, key_fn: Any, want_first: bool) -> _Batches | None:
    """``_find_batches`` of whole tables mapping whole folios of one order, in order.

    The common fork/exit case in fewer, shorter passes: every entry is
    plain and read alike (``bulk_uniform_reads``: the hint chain visits
    every ``s``-th entry at the same cost), and each naturally aligned
    group of ``nr`` entries maps the ``nr`` pages of one order-``o`` anon
    folio in order, its visited PTEs alike as ``folio_pte_batch`` compares
    them.  Then each group is one batch (``folio_pte_batch`` stops at the
    folio's end, order 0 is never batched), each batch start reads like
    every other visited PTE, and the probes of a large folio's batch are
    its other visited PTEs plus the next group's start unless the table
    ends.  None: the general code decides.
    """
    a = k.arch
    mem = k.memmap
    raw = st.raw
    n = st.n
    per = st.per
    pat = a.bulk_uniform_reads(raw)
    if pat is None:
        return None
    s, r, g = pat
    nv = n // s
    p0 = a.pte_pfn(int(raw[0]))
    if p0 >= mem.nr_frames or int(mem.head[p0]) != p0:
        return None
    o = int(mem.order[p0])
    nr = 1 << o
    if nr < s or nr > per:
        return None
    q = nr // s  # visited PTEs per folio
    nb = n // nr
    # what ptep_get() returns for each visited PTE (block getters gather
    # access/dirty): compared within a folio, and each batch's first PTE;
    # pfn and write bit are the raw entry's
    if s == 1:
        gv = raw
    elif q > 1 or want_first:
        gv = a.bulk_ptep_get(raw, np.arange(0, n, s, dtype=np.int64))[0]
    else:
        gv = raw[::s]
    step = np.uint64(s << a.PFN_PTE_SHIFT)
    # usually each visited PTE is its predecessor advanced by s pages: alike
    # as folio_pte_batch compares them, same write bit, consecutive pages
    same = nv == 1 or bool((np.diff(gv) == step).all())
    contig = True
    pfnv = None
    if not same:
        # the visited PTEs of each folio alike but for the pfn
        if q > 1:
            g2 = gv.reshape(nb, q)
            if not bool(((g2[:, 1:] - g2[:, :-1]) == step).all()):
                k2 = key_fn(gv).reshape(nb, q)
                if not bool(((k2[:, 1:] - k2[:, :-1]) == step).all()):
                    return None
        pfnv = a.pte_pfn_v(gv)
        contig = int(pfnv[-1]) - p0 == (nv - 1) * s and bool((np.diff(pfnv) == s).all())
    # each group's first page heads an order-o anon folio
    anon = PG_anon
    if contig:
        if p0 + n > mem.nr_frames:
            return None
        heads = np.arange(p0, p0 + n, nr, dtype=np.int64)
        sl = slice(p0, p0 + n, nr)
        hh, oo, ff = mem.head[sl], mem.order[sl], mem.flags[sl]
    else:
        assert pfnv is not None
        heads = np.ascontiguousarray(pfnv[::q])
        if int(heads.max()) >= mem.nr_frames:
            return None
        hh, oo, ff = mem.head[heads], mem.order[heads], mem.flags[heads]
    if not (int(np.bitwise_and.reduce(ff)) & anon and bool((oo == o).all()) and bool((hh == heads).all())):
        return None
    out = _Batches()
    out.b = PteBatches.uniform(n, nr)
    out.heads = heads
    out.pfn = heads
    out.large = np.full(nb, o > 0)
    out.folio_nr = out.b.nrs
    out.pages = slice(p0, p0 + n) if contig else None
    if same:
        w0 = a.pte_write(int(gv[0]))
        out.first = gv[::q].copy() if q > 1 else gv
        out.first_writable = np.full(nb, w0)
        out.any_writable = np.full(nb, w0 and q > 1)
    elif q > 1:
        w2 = a.pte_write_v(gv).reshape(nb, q)
        out.first = gv[::q].copy()
        out.first_writable = w2[:, 0].copy()
        out.any_writable = np.asarray(w2[:, 1:].any(axis=1))
    else:
        out.first = gv
        out.first_writable = a.pte_write_v(gv)
        out.any_writable = np.zeros(nb, dtype=bool)
    out.loop_reads = nb * r
    out.loop_gathers = nb * g
    # probes: the visited PTEs after each batch start, and the next start in the table
    probes = (nv - nb) + (nb - len(st.tables)) if o > 0 else 0
    out.probe_reads = probes * r
    out.probe_gathers = probes * g
    return out


def _lock_breaks(st: _Stack, b: _Batches) -> int:
    """Lock-break points of ``copy_pte_range`` over every piece of the stack."""
    bb = b.b
    if bb.stride and bb.total == bb.n and st.full:
        # every table alike: per // stride batches of weight 8 * stride
        per_table = lock_break_points(np.full(st.per // bb.stride, 8 * bb.stride, dtype=np.int64))
        return per_table * len(st.tables)
    w = np.zeros(st.n, dtype=np.int64)
    w[st.inr & (st.raw == 0)] = 1
    w[b.b.starts] = 8 * b.b.nrs
    w2 = w.reshape(-1, st.per)
    ev = w2 > 0
    nev = ev.sum(axis=1)
    allbig = (~ev | (w2 >= _LOCK_BREAK)).all(axis=1)
    total = int(np.maximum(nev[allbig] - 1, 0).sum())
    for t in np.flatnonzero(~allbig).tolist():
        row = w2[t]
        total += lock_break_points(row[row > 0])
    return total


def _index_runs(idx: np.ndarray) -> slice | bool | None:
    """How ``idx`` can index: a slice (consecutive ascending), True (strictly
    ascending), None (repeats or out of order)."""
    n = len(idx)
    if n == 0:
        return True
    lo = int(idx[0])
    if int(idx[-1]) - lo == n - 1 and (n == 1 or bool((np.diff(idx) == 1).all())):
        return slice(lo, lo + n)
    if n == 1 or bool((idx[1:] > idx[:-1]).all()):
        return True
    return None


def _add_at(
    arr: np.ndarray,
    idx: np.ndarray,
    vals: np.ndarray | np.integer[Any] | None = None,
    where: slice | bool | None = False,
) -> None:
    """``arr[idx] += vals`` with repeated indices summed (``np.add.at``).

    ``where``: what ``_index_runs(idx)`` says (a slice standing for ``idx``,
    which may then be left uncomputed; True; None), or False to find out.
    A slice or distinct indices take a plain add; repeats a bincount.
    """
    if where is False:
        where = _index_runs(idx)
    if isinstance(where, slice):
        add = np.asarray(1 if vals is None else vals)
        if add.ndim and len(add) and bool((add == add[0]).all()):
            add = add[0]  # one value: a scalar add
        arr[where] += add.astype(arr.dtype)
        return
    if where is True:
        if len(idx):
            arr[idx] += np.asarray(1 if vals is None else vals).astype(arr.dtype)
        return
    lo = int(idx.min())
    span = int(idx.max()) + 1 - lo
    if span > 8 * len(idx) + 4096:
        np.add.at(arr, idx, 1 if vals is None else vals)
        return
    add = np.bincount(idx - lo, weights=vals, minlength=span)
    arr[lo : lo + span] += add.astype(arr.dtype)


def _batch_pages(b: _Batches) -> np.ndarray:
    """The pfn of every PTE of every batch (a batch maps consecutive pages)."""
    bb = b.b
    if not len(bb):
        return np.zeros(0, dtype=np.int64)
    if bb.stride and bb.total == bb.n:
        if bb.stride == 1:
            return b.pfn
        return (b.pfn[:, None] + np.arange(bb.stride, dtype=np.int64)[None, :]).reshape(-1)
    pages = b.pfn[bb.bid()] + bb.offset()
    if bb.total != bb.n:
        pages = pages[bb.mask()]
    return np.asarray(pages)


def _batch_pages_where(b: _Batches) -> tuple[np.ndarray, slice | bool | None]:
    """``_batch_pages(b)`` and what ``_index_runs`` says of it (the pages
    left uncomputed, empty, when they are known to be a slice)."""
    if b.pages is not None:
        return np.zeros(0, dtype=np.int64), b.pages
    pages = _batch_pages(b)
    return pages, _index_runs(pages)


def _rmap_hooks(k: Kernel, heads: np.ndarray) -> None:
    """Tell the validators about the folios a bulk rmap update changed."""
    if k.on_rmap_change is None:
        return
    nf = k.memmap.nr_frames
    if len(heads) < 2 or bool((heads[1:] > heads[:-1]).all()):
        uniq = heads  # already distinct and in order (batches of a fault-in's pages)
    elif len(heads) * 16 >= nf:  # dense: a mask is much cheaper than np.unique's hashing
        seen = np.zeros(nf, dtype=bool)
        seen[heads] = True
        uniq = np.flatnonzero(seen)
    else:
        uniq = np.unique(heads)
    if k.on_rmap_change_many is not None:
        k.on_rmap_change_many(uniq)
        return
    for h in uniq.tolist():
        k.on_rmap_change(k.folio(h))


# ---------------------------------------------------------------------------
# fork: copy_page_range
# ---------------------------------------------------------------------------
def _copy_bulk_allowed(dst_vma: Vma, src_vma: Vma) -> bool:
    k = src_vma.vm_mm.kernel
    return bool(
        _bulk_allowed(k)
        and k.batch_fork
        and _batching_is_mainline(k)
        and k.on_lock_break is None
        and not src_vma.vm_mm.has_pinned
        and vma_is_anonymous(src_vma)
        and not src_vma.vm_flags & VM_SHARED
        and not dst_vma.vm_flags & VM_UFFD_WP
    )


def copy_page_range_bulk(dst_vma: Vma, src_vma: Vma) -> int | None:
    """``copy_page_range()`` of a private anon VMA, whole tables at a time.

    Mirrors mm/memory.c ``copy_page_range()`` -> ``copy_pte_range()`` ->
    ``copy_present_ptes()`` (see ``memory.copy_page_range``): PMD-mapped
    ranges and tables the bulk form cannot take go through the
    kernel-shaped functions, in address order.  Returns 0, a negative
    errno, or None when the VMA does not qualify at all.
    """
    if not _copy_bulk_allowed(dst_vma, src_vma):
        return None
    from . import huge_memory
    from .memory import copy_pte_range

    k = src_vma.vm_mm.kernel
    a = k.arch
    src_space = src_vma.vm_mm.space
    run: list[tuple[int, int, int]] = []

    huge: list[tuple[int, int, int]] = []  # (pmd_idx, addr, next) of consecutive PMD maps

    def flush() -> int:
        ret = 0
        if run:
            ret = _copy_tables(dst_vma, src_vma, list(run))
            run.clear()
        return ret

    def flush_huge() -> int:
        if not huge:
            return 0
        todo = list(huge)
        huge.clear()
        if _copy_huge_pmds_bulk(dst_vma, src_vma, [h[0] for h in todo]):
            return 0
        for pmd_idx, addr, next_ in todo:
            if huge_memory.copy_huge_pmd(dst_vma.vm_mm, src_vma.vm_mm, pmd_idx, addr, dst_vma, src_vma) == 0:
                continue
            ret = copy_pte_range(dst_vma, src_vma, pmd_idx, addr, next_)
            if ret:
                return ret
        return 0

    addr = src_vma.vm_start
    end = src_vma.vm_end
    per = a.PTRS_PER_PTE
    while addr < end:
        next_ = min((addr & ~(a.PMD_SIZE - 1)) + a.PMD_SIZE, end)
        pmd_idx = addr >> a.PMD_SHIFT
        if pmd_idx in src_space.pmds:
            ret = flush()
            if ret:
                return ret
            huge.append((pmd_idx, addr, next_))
            addr = next_
            continue
        ret = flush_huge()
        if ret:
            return ret
        if src_space.pte_table(pmd_idx) is not None:
            lo = (addr >> k.page_shift) & (per - 1)
            hi = lo + ((next_ - addr) >> k.page_shift)
            run.append((pmd_idx, lo, hi))
        addr = next_
    ret = flush_huge()
    if ret:
        return ret
    return flush()


def _copy_huge_pmds_bulk(dst_vma: Vma, src_vma: Vma, idxs: list[int]) -> bool:
    """``copy_huge_pmd()`` of each PMD map ``idxs`` in order, the folio updates at once.

    Only the plain case (a PMD-mapped anon folio; the mm never pinned, so
    ``folio_try_dup_anon_rmap_pmd`` cannot fail): False, nothing done, if a
    PMD is special, the huge zero page or not a folio's head.  The stores
    (the parent's write-protect, the child's old write-protected copy) are
    made PMD by PMD in the same order (``AddressSpace.pmd_store_lockstep``:
    the observers hear them at once).
    """
    src_mm = src_vma.vm_mm
    dst_mm = dst_vma.vm_mm
    k = src_mm.kernel
    a = k.arch
    mem = k.memmap
    ptes = [a.pmd_pte(src_mm.space.pmds[i]) for i in idxs]
    if any(a.pte_special(p) for p in ptes):
        return False
    pfns = np.array([a.pte_pfn(p) for p in ptes], dtype=np.int64)
    if k.huge_zero_pfn is not None and bool((pfns == k.huge_zero_pfn).any()):
        return False
    if bool((pfns < 0).any() | (pfns >= mem.nr_frames).any()) or bool((mem.head[pfns] != pfns).any()):
        return False
    n = len(idxs)
    # folio_ref_add(), folio_try_dup_anon_rmap_pmd()
    _add_at(mem.refcount, pfns)
    mem.flags[pfns] &= _NOT_EXCL
    _add_at(mem.entire_mapcount, pfns)
    _add_at(mem.large_mapcount, pfns)
    c = k.counters
    c.add(REF_OPS, n)
    c.add(RMAP_OPS, n)
    dst_mm.add_mm_counter(MM_ANONPAGES, a.HPAGE_PMD_NR * n)
    # pmdp_set_wrprotect() loads each PMD; set_pmd_at() in the child
    src_mm.space.counters.add("pte.read", n)
    from ..hw.tables import AddressSpace

    wps = [a.pte_wrprotect(pte) for pte in ptes]
    # per PMD: the parent's write-protect, then the child's copy
    AddressSpace.pmd_store_lockstep(
        [
            (src_mm.space, idxs, [a.pte_pmd(wp) for wp in wps]),
            (dst_mm.space, idxs, [a.pte_pmd(a.pte_mkold(wp)) for wp in wps]),
        ]
    )
    return True


def _copy_tables(dst_vma: Vma, src_vma: Vma, pieces: list[tuple[int, int, int]]) -> int:
    """Copy consecutive table pieces: in bulk where possible, else one by one."""
    from .memory import copy_pte_range

    k = src_vma.vm_mm.kernel
    dst_space = dst_vma.vm_mm.space
    good: list[tuple[int, int, int]] = []
    ok = []
    for p in pieces:
        t = dst_space.pte_table(p[0])
        ok.append(p[0] not in dst_space.pmds and (t is None or not t.entries[p[1] : p[2]].any()))
    i = 0
    while i < len(pieces):
        if not ok[i]:
            pmd_idx, lo, _hi = pieces[i]
            addr = (pmd_idx << k.arch.PMD_SHIFT) | (lo << k.page_shift)
            ret = copy_pte_range(dst_vma, src_vma, pmd_idx, addr, addr + ((_hi - lo) << k.page_shift))
            if ret:
                return ret
            i += 1
            continue
        j = i
        while j < len(pieces) and ok[j]:
            j += 1
        good = pieces[i:j]
        if not _copy_tables_bulk(dst_vma, src_vma, good):
            if len(good) == 1:
                pmd_idx, lo, hi = good[0]
                addr = (pmd_idx << k.arch.PMD_SHIFT) | (lo << k.page_shift)
                ret = copy_pte_range(dst_vma, src_vma, pmd_idx, addr, addr + ((hi - lo) << k.page_shift))
                if ret:
                    return ret
            else:
                # find the tables that qualify: halve until they do
                mid = len(good) // 2
                for half in (good[:mid], good[mid:]):
                    ret = _copy_tables(dst_vma, src_vma, half)
                    if ret:
                        return ret
        i = j
    return 0


def _copy_tables_bulk(dst_vma: Vma, src_vma: Vma, pieces: list[tuple[int, int, int]]) -> bool:
    """Mirror ``copy_pte_range()`` on every piece; False (nothing done) if one does not qualify."""
    src_mm = src_vma.vm_mm
    dst_mm = dst_vma.vm_mm
    k = src_mm.kernel
    a = k.arch
    mem = k.memmap
    st = _Stack(k, pieces, [src_mm.space.tables[p[0]] for p in pieces])

    def key_fn(g: np.ndarray) -> np.ndarray:
        # folio_pte_batch(): FPB_IGNORE_SOFT_DIRTY, then pte_wrprotect(pte_mkold())
        return a.pte_wrprotect_v(a.pte_mkold_v(a.pte_clear_soft_dirty_v(g)))

    b = _find_batches(k, st, key_fn)
    if b is None:
        return False
    bb = b.b
    nb = len(bb)
    cow = is_cow_mapping(src_vma.vm_flags)
    some_writable = bool(b.any_writable.any())
    first = np.where(b.any_writable, a.pte_mkwrite_v(b.first), b.first) if some_writable else b.first
    writable = b.any_writable | b.first_writable if some_writable else b.first_writable
    wp = writable & cow if cow else np.zeros(nb, dtype=bool)
    # _copy_present_ptes(): the parent's batch write-protected, the
    # child's PTE old, write-protected if the parent's was
    nwp = int(np.count_nonzero(wp))
    parent = a.bulk_wrprotect_ptes(st.raw, bb if nwp == len(wp) else bb.subset(wp))
    if parent is None:
        return False
    new_src, c_src = parent
    if nwp == 0:
        child_first = a.pte_mkold_v(first)
    elif nwp == len(wp):
        child_first = a.pte_mkold_v(a.pte_wrprotect_v(first))
    else:
        child_first = a.pte_mkold_v(np.where(wp, a.pte_wrprotect_v(first), first))
    folio_nr = b.folio_nr if b.folio_nr is not None else np.left_shift(1, mem.order[b.heads].astype(np.int64))
    child = a.bulk_set_ptes(bb, child_first, b.heads, folio_nr)
    if child is None:
        return False
    new_dst, c_dst = child
    breaks = _lock_breaks(st, b)

    # -- commit: refcount before mapcount, as copy_present_ptes does --
    total = bb.total
    pages, where = _batch_pages_where(b)
    # uniform batches over consecutive pages: the heads every stride pages
    hwhere: slice | bool | None = False
    if bb.stride and bb.total == bb.n and isinstance(where, slice):
        hwhere = slice(where.start, where.stop, bb.stride)
    # (uniform: every batch stride pages)
    _add_at(mem.refcount, b.heads, np.int64(bb.stride) if isinstance(hwhere, slice) else bb.nrs, hwhere)
    _add_at(mem.mapcount, pages, None, where)
    mem.flags[where if isinstance(where, slice) else pages] &= _NOT_EXCL
    lg = b.large
    if bb.stride and nb and lg[0]:  # uniform: every batch a large folio's
        _add_at(
            mem.large_mapcount, b.heads, np.int64(bb.stride) if isinstance(hwhere, slice) else bb.nrs, hwhere
        )
    elif lg.any():
        _add_at(mem.large_mapcount, b.heads[lg], bb.nrs[lg])
    c = k.counters
    c.add(REF_OPS, nb)
    c.add(RMAP_OPS, nb)
    c.add(RMAP_PAGES, total)
    a.bulk_count_ptep_get(b.loop_reads + b.probe_reads, b.loop_gathers + b.probe_gathers)
    for name, v in (*c_src.items(), *c_dst.items()):
        if v:
            c.add(name, v)
    from .memory import FORK_BATCH, FORK_CALLS, FORK_LOCK_BREAK, FORK_PTES

    c.add(FORK_CALLS, nb)
    c.add(FORK_PTES, total)
    nbatch = (nb if bb.stride > 1 else 0) if bb.stride else int((bb.nrs > 1).sum())
    if nbatch:
        c.add(FORK_BATCH, nbatch)
    if breaks:
        c.add(FORK_LOCK_BREAK, breaks)
    per = st.per
    # add_mm_rss_vec() of every table: one sum
    if total:
        dst_mm.add_mm_counter(MM_ANONPAGES, total)
    # no batch write-protected: the kernel stores nothing to the parent
    # (copy_present_ptes() calls wrprotect_ptes() only on a writable batch)
    src_store = nwp > 0
    alloc = dst_mm.space.alloc_pte_table
    dst_tables = [alloc(p[0]) for p in pieces]
    released: list[Any] = [t for pair in zip(st.tables, dst_tables, strict=True) for t in pair]
    stores: list[tuple[Any, int, np.ndarray]] = []
    if st.full and not src_store:  # (the common case: whole tables, the parent unchanged)
        stores = list(zip(dst_tables, [0] * len(pieces), new_dst.reshape(-1, per), strict=True))
    else:
        for t, (_pmd_idx, lo, hi) in enumerate(pieces):
            base = t * per
            if hi > lo:
                if src_store:
                    stores.append((st.tables[t], lo, new_src[base + lo : base + hi]))
                stores.append((dst_tables[t], lo, new_dst[base + lo : base + hi]))
    # each table's store_bulk, in order (the observers hear them at once)
    PteTable.store_bulk_tables(stores)
    # each table's PTL drop, in order (every set is in its final state)
    a.ptl_release_many(released)
    if nb:
        _rmap_hooks(k, b.heads)
    return True


_ = (REF_OPS, MM_ANONPAGES)


# ---------------------------------------------------------------------------
# faults: a write access through none PTEs of anonymous memory
# ---------------------------------------------------------------------------
def fault_in_anon_write(vma: Vma, addr: int, npages: int, cpu: int) -> list[int]:
    """Take the write faults an access of ``npages`` from ``addr`` would take on none PTEs.

    Mirrors the faults of a user write sweeping the range: at each none
    PTE, ``handle_mm_fault()`` -> ``do_anonymous_page()`` ->
    ``alloc_anon_folio()`` (the same orders tried, the same pte_range_none
    reads, the same buddy allocations in the same order) and one
    ``set_ptes`` per folio; a PMD-size fault goes through the kernel-shaped
    ``handle_mm_fault``.  Stops before the first page that would do
    anything else (a present PTE it did not map, a TLB entry, low memory),
    where the kernel-shaped path takes over.  Returns the faulting
    addresses, in order: the hardware side of each (a TLB miss, a walk, a
    translation fault) is the caller's to count.

    Context: mmap_lock held; the access runs on ``cpu``.
    """
    from .huge_memory import thp_vma_allowable_order, thp_vma_allowable_orders, thp_vma_suitable_order
    from .memory import handle_mm_fault
    from .mm_types import FAULT_FLAG_WRITE, VM_WRITE

    mm = vma.vm_mm
    k = mm.kernel
    a = k.arch
    if not (
        _bulk_allowed(k)
        and vma_is_anonymous(vma)
        and not vma.vm_flags & VM_SHARED
        and vma.vm_flags & VM_WRITE
        and not vma.vm_flags & VM_UFFD_WP
        and vma.vm_start <= addr < vma.vm_end
    ):
        return []
    space = mm.space
    tlb = k.hw.tlbs[cpu]
    ps = k.PAGE_SIZE
    per = a.PTRS_PER_PTE
    end = min(addr + npages * ps, vma.vm_end)
    orders = thp_vma_allowable_orders(vma, (1 << k.PMD_ORDER) - 1)
    cand_all = sorted((o for o in range(k.PMD_ORDER + 1) if orders >> o & 1), reverse=True)
    pmd_thp = thp_vma_allowable_order(vma, k.PMD_ORDER)
    ours: set[int] = set()
    faults: list[int] = []
    pos = addr
    while pos < end:
        pmd_idx = pos >> a.PMD_SHIFT
        tbl_end = min((pmd_idx + 1) << a.PMD_SHIFT, end)
        if tlb.region_busy(space.asid, pmd_idx):
            break
        if pmd_idx in space.pmds:
            if pmd_idx in ours:
                pos = tbl_end
                continue
            break
        table = space.pte_table(pmd_idx)
        if table is None and pmd_thp and thp_vma_suitable_order(vma, pos, k.PMD_ORDER):
            if k.buddy.largest_free_order() < k.PMD_ORDER:
                break
            ret = handle_mm_fault(vma, pos, FAULT_FLAG_WRITE)
            faults.append(pos)
            if ret or pmd_idx not in space.pmds:
                break  # let the kernel-shaped path go on from here
            ours.add(pmd_idx)
            pos = tbl_end
            continue
        i = (pos >> k.page_shift) & (per - 1)
        lim = i + ((tbl_end - pos) >> k.page_shift)
        _done, stop = _fault_in_table(vma, pmd_idx, table, i, lim, cand_all, faults)
        if stop:
            break
        pos = tbl_end
    return faults


def _fault_in_table(
    vma: Vma, pmd_idx: int, table: Any, i: int, lim: int, cand_all: list[int], faults: list[int]
) -> tuple[int, bool]:
    """The none-PTE faults of entries ``[i, lim)`` of one table; (index reached, stop)."""
    from .kernel import PGFAULT
    from .memory import FAULT_ANON, anon_vma_prepare

    mm = vma.vm_mm
    k = mm.kernel
    a = k.arch
    ps = k.PAGE_SIZE
    per = a.PTRS_PER_PTE
    base = pmd_idx << a.PMD_SHIFT
    occ = table.entries != 0 if table is not None else np.zeros(per, dtype=bool)
    has_table = table is not None
    reads = 0
    f_idx: list[int] = []
    f_start: list[int] = []
    f_order: list[int] = []
    f_pfn: list[int] = []
    stop = False
    vs, ve = vma.vm_start, vma.vm_end
    buddy = k.buddy
    while i < lim:
        if occ[i]:
            stop = True
            break
        if buddy.nr_free == 0:
            stop = True
            break
        address = base | (i << k.page_shift)
        if has_table or f_idx:
            reads += 1  # handle_pte_fault: ptep_get_lockless
        anon_vma_prepare(vma)
        # alloc_anon_folio(): suitable orders, the first whose range is none
        ok: list[int] = []
        for o in cand_all:
            size = ps << o
            h = address & ~(size - 1)
            if h < vs or h + size > ve:
                continue
            reads += 1 << o
            ai = i & ~((1 << o) - 1)
            if not occ[ai : ai + (1 << o)].any():
                ok = [x for x in cand_all if x <= o]
                break
        folio = None
        for o in ok:
            folio = k.folio_alloc(o, zero=True)
            if folio is not None:
                break
            k.mthp_stat(o, "anon_fault_fallback")
        if folio is None:
            folio = k.folio_alloc(0, zero=True)
        assert folio is not None  # nr_free > 0
        order = folio.order
        nr = 1 << order
        start = i & ~(nr - 1)
        reads += 1 if nr == 1 else nr  # do_anonymous_page: ptep_get / pte_range_none
        occ[start : start + nr] = True
        f_idx.append(i)
        f_start.append(start)
        f_order.append(order)
        f_pfn.append(folio.pfn)
        faults.append(address)
        i = start + nr
    nf = len(f_idx)
    if nf == 0:
        return i, stop
    # -- commit the table: do_anonymous_page's bookkeeping, one set_ptes per folio --
    c = k.counters
    mem = k.memmap
    c.add(PGFAULT, nf)
    c.add(FAULT_ANON, nf)
    c.add(REF_OPS, nf)
    c.add(RMAP_OPS, nf)
    c.add("pte.read", reads)
    starts = np.array(f_start, dtype=np.int64)
    orders_a = np.array(f_order, dtype=np.int64)
    pfns = np.array(f_pfn, dtype=np.int64)
    nrs = np.left_shift(1, orders_a)
    total = int(nrs.sum())
    c.add(RMAP_PAGES, total)
    mm.add_mm_counter(MM_ANONPAGES, total)
    for o, cnt in zip(*np.unique(orders_a, return_counts=True), strict=True):
        if o > 0:
            k.mthp_stat(int(o), "anon_fault_alloc", int(cnt))
            k.mthp_stat(int(o), "nr_anon", int(cnt))
    mem.refcount[pfns] += (nrs - 1).astype(np.int32)
    mem.flags[pfns] |= np.uint32(PG_anon)
    assert vma.anon_vma is not None
    mem.mapping[pfns] = vma.anon_vma
    mem.index[pfns] = vma.vm_pgoff + ((base + (starts << k.page_shift) - vma.vm_start) >> k.page_shift)
    pages = batch_positions(pfns, nrs)
    mem.mapcount[pages] = 1
    big = nrs > 1
    mem.large_mapcount[pfns[big]] = nrs[big].astype(np.int32)
    mem.flags[pages] |= np.uint32(PG_anon_exclusive)
    prot = vma.vm_page_prot
    e0 = a.pte_mkwrite(a.pte_mkdirty(a.pfn_pte(0, prot)))
    ptes = np.uint64(e0) + (pfns.astype(np.uint64) << np.uint64(a.PFN_PTE_SHIFT))
    t = mm.space.alloc_pte_table(pmd_idx)
    res = a.bulk_set_ptes(PteBatches(starts, nrs, per), ptes, pfns, nrs)
    if res is None:  # pragma: no cover - fresh folios never fold through nr == 1
        from ..arch.pgtable import PtePtr

        for s_, n_, p_ in zip(f_start, nrs.tolist(), ptes.tolist(), strict=True):
            a.set_ptes(mm, base | (s_ << k.page_shift), PtePtr(t, s_), int(p_), n_)
    else:
        vals, cnt = res
        for name, v in cnt.items():
            if v:
                c.add(name, v)
        lo = int(starts[0])
        hi = int(starts[-1] + nrs[-1])
        t.store_bulk(lo, np.where(vals[lo:hi] != 0, vals[lo:hi], t.entries[lo:hi]))
    a.ptl_release(mm, t)
    _rmap_hooks(k, pfns)
    return i, stop


# ---------------------------------------------------------------------------
# zap: unmap_page_range (munmap, MADV_DONTNEED, exit)
# ---------------------------------------------------------------------------
def unmap_page_range_bulk(tlb: Any, vma: Vma, addr: int, end: int) -> bool:
    """``unmap_page_range()`` of a private anon VMA, whole tables at a time.

    Mirrors mm/memory.c ``unmap_page_range()`` -> ``zap_pte_range()`` ->
    ``zap_present_ptes()`` (see ``memory.unmap_page_range``): PMD-mapped
    ranges and tables the bulk form cannot take go through the
    kernel-shaped functions, in address order.  False (nothing done) when
    the VMA does not qualify at all.
    """
    mm = vma.vm_mm
    k = mm.kernel
    if not (
        _bulk_allowed(k)
        and k.batch_zap
        and _batching_is_mainline(k)
        and vma_is_anonymous(vma)
        and not vma.vm_flags & VM_SHARED
    ):
        return False
    from . import huge_memory
    from .memory import zap_pte_range

    a = k.arch
    space = mm.space
    per = a.PTRS_PER_PTE
    pmd_size = a.PMD_SIZE
    run: list[tuple[int, int, int]] = []

    def flush() -> None:
        if run:
            _zap_tables(tlb, vma, list(run))
            run.clear()

    while addr < end:
        next_ = min((addr & ~(pmd_size - 1)) + pmd_size, end)
        pmd_idx = addr >> a.PMD_SHIFT
        if pmd_idx in space.pmds:
            flush()
            if next_ - addr == pmd_size:
                huge_memory.zap_huge_pmd(tlb, vma, pmd_idx, addr)
                addr = next_
                continue
            huge_memory.split_huge_pmd(vma, pmd_idx, addr)
            zap_pte_range(tlb, vma, pmd_idx, addr, next_)
        elif space.pte_table(pmd_idx) is not None:
            lo = (addr >> k.page_shift) & (per - 1)
            hi = lo + ((next_ - addr) >> k.page_shift)
            run.append((pmd_idx, lo, hi))
        addr = next_
    flush()
    return True


def _zap_tables(tlb: Any, vma: Vma, pieces: list[tuple[int, int, int]]) -> None:
    """Zap consecutive table pieces: in bulk where possible, else one by one."""
    from .memory import zap_pte_range

    if _zap_tables_bulk(tlb, vma, pieces):
        return
    if len(pieces) == 1:
        k = vma.vm_mm.kernel
        pmd_idx, lo, hi = pieces[0]
        addr = (pmd_idx << k.arch.PMD_SHIFT) | (lo << k.page_shift)
        zap_pte_range(tlb, vma, pmd_idx, addr, addr + ((hi - lo) << k.page_shift))
        return
    mid = len(pieces) // 2
    _zap_tables(tlb, vma, pieces[:mid])
    _zap_tables(tlb, vma, pieces[mid:])


def _zap_tables_bulk(tlb: Any, vma: Vma, pieces: list[tuple[int, int, int]]) -> bool:
    """Mirror ``zap_pte_range()`` on every piece; False (nothing done) if one does not qualify.

    The mmu_gather's forced flushes (``MAX_GATHER_BATCH`` queued pages)
    happen after the same batches: the PTEs cleared before each flush are
    stored before it, the folios queued before it are put by it.
    """
    from .memmap import Folio
    from .memory import ZAP_BATCH, ZAP_CALLS, ZAP_PTES
    from .mmu_gather import MAX_GATHER_BATCH, FolioRun
    from .rmap import deferred_split_folio

    mm = vma.vm_mm
    k = mm.kernel
    a = k.arch
    mem = k.memmap
    st = _Stack(k, pieces, [mm.space.tables[p[0]] for p in pieces])

    def key_fn(g: np.ndarray) -> np.ndarray:
        # folio_pte_batch(): FPB_IGNORE_DIRTY | FPB_IGNORE_SOFT_DIRTY, then pte_wrprotect(pte_mkold())
        return a.pte_wrprotect_v(a.pte_mkold_v(a.pte_clear_soft_dirty_v(a.pte_mkclean_v(g))))

    b = _find_batches(k, st, key_fn, want_first=False)
    if b is None:
        return False
    bb = b.b
    starts, nrs = bb.starts, bb.nrs
    nb = len(starts)
    cnt = a.bulk_clear_full_ptes(st.raw, bb, tlb.fullmm)
    if cnt is None:
        return False
    pages, where = _batch_pages_where(b)
    pidx = where if isinstance(where, slice) else pages
    if (mem.mapcount[pidx] < 1).any():
        return False  # a mapcount underflow: the kernel-shaped path reports it
    lg = b.large
    lheads = b.heads[lg]
    if len(lheads) > 1 and b.pages is None:  # (consecutive pages: distinct folios)
        sh = np.sort(lheads)
        if (sh[1:] == sh[:-1]).any():
            return False  # a large folio in several batches (deferred split after each)

    # -- rmap: folio_remove_rmap_ptes() of every batch --
    minus = np.int64(-1) if where is not None else np.full(len(pages), -1, dtype=np.int64)
    _add_at(mem.mapcount, pages, minus, where)
    if len(lheads):
        lnrs = nrs[lg]
        _add_at(mem.large_mapcount, lheads, -lnrs)
        anon = (mem.flags[lheads] & np.uint32(PG_anon)) != 0
        still = anon & (mem.large_mapcount[lheads] > 0) & (mem.entire_mapcount[lheads] == 0)
        if still.any():
            cand = lheads[still]
            if b.pages is not None and bool(still.all()):
                # uniform: whole folios of stride pages, consecutive
                split = (mem.mapcount[b.pages] == 0).reshape(-1, bb.stride).any(axis=1)
            else:
                fnr = np.left_shift(1, mem.order[cand].astype(np.int64))
                zero = (mem.mapcount[batch_positions(cand, fnr)] == 0).astype(np.int64)
                offs = np.concatenate(([0], np.cumsum(fnr)[:-1]))
                split = np.add.reduceat(zero, offs) > 0
            for h in cand[split].tolist():
                deferred_split_folio(Folio(mem, h), k)
    c = k.counters
    total = bb.total
    c.add(RMAP_OPS, nb)
    c.add(RMAP_REMOVE, nb)
    c.add(RMAP_PAGES, total)
    a.bulk_count_ptep_get(b.loop_reads + b.probe_reads, b.loop_gathers + b.probe_gathers)
    for name, v in cnt.items():
        if v:
            c.add(name, v)
    c.add(ZAP_CALLS, nb)
    c.add(ZAP_PTES, total)
    nbatch = (nb if bb.stride > 1 else 0) if bb.stride else int((nrs > 1).sum())
    if nbatch:
        c.add(ZAP_BATCH, nbatch)

    # -- the PTE clears, the gather, its forced flushes, in batch order --
    per = st.per
    ps = k.PAGE_SIZE
    stride = bb.stride
    cs = nrs if stride else np.cumsum(nrs)  # (unused with a stride)

    def upto(j: int) -> int:  # pages in batches 0..j
        return (j + 1) * stride if stride else int(cs[j])

    def reaching(x: int) -> int:  # the first batch j with upto(j) >= x
        return max(0, -(-x // stride) - 1) if stride else int(np.searchsorted(cs, x, side="left"))

    def vaddr(i: int) -> int:
        s_ = int(starts[i])
        return (pieces[s_ // per][0] << a.PMD_SHIFT) | ((s_ % per) << k.page_shift)

    zeros = np.zeros(per, dtype=np.uint64)
    i = 0
    while i < nb:
        # the batch whose queueing forces a flush (or the last one)
        base = upto(i - 1) if i else 0
        j = reaching(MAX_GATHER_BATCH - tlb._queued + base)
        forced = j < nb
        j = min(j, nb - 1)
        # clear the PTEs of batches i..j, table by table
        si, sj, nj = int(starts[i]), int(starts[j]), int(nrs[j])
        t0, t1 = si // per, sj // per
        clears: list[tuple[Any, int, np.ndarray]] = []
        for t in range(t0, t1 + 1):
            lo = si - t * per if t == t0 else int(st.lo[t])
            hi = sj + nj - t * per if t == t1 else int(st.hi[t])
            if hi > lo:
                clears.append((st.tables[t], lo, zeros[: hi - lo]))
        PteTable.store_bulk_tables(clears)
        tlb.start = min(tlb.start, vaddr(i))
        tlb.end = max(tlb.end, vaddr(j) + nj * ps)
        tlb.cleared_ptes = True
        tlb._folios.append(FolioRun(b.heads[i : j + 1], nrs[i : j + 1]))
        tlb._queued += upto(j) - base
        if forced:
            tlb.tlb_flush_mmu()
        i = j + 1
    # add_mm_rss_vec() of every table: one sum
    if total:
        mm.add_mm_counter(MM_ANONPAGES, -total)
    a.ptl_release_many(st.tables)
    return True
