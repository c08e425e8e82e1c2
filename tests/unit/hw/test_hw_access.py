"""The compiled access loop against a page-by-page reference, on random states.

``ref_access`` is the access path written plainly, one page at a time: a
TLB lookup per page, the walk on a miss with the overlap check on every
fill, the checker's hooks on every hit and fill, the Contiguous pick by
``rng.randrange``.  ``Hardware.access`` serves the pages of a resolved entry
without looking them up again, checks a run of hits at once, skips the
overlap probe of a page fill right after a miss, caches the level-2 step
and draws with ``getrandbits``.  Two machines built alike must end every
access in the same state: the same result or violation, memory,
descriptors, every CPU's TLB (contents, LRU order, fill stamps), counters,
RNG state and checker state.
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from contpte.errors import InvariantViolation
from contpte.hw.features import CpuFeatures
from contpte.hw.format import L2_BLOCK, L2_INVALID, WS_CLEAN, WS_DIRTY, WS_NONE
from contpte.hw.hardware import Hardware, HwFault
from contpte.hw.tables import AddressSpace

NREGIONS = 3
NFRAMES = 8192


def ref_fault(
    hw: Hardware, cpu: int, space: AddressSpace, kind: str, vpn: int, level: int, write: bool
) -> HwFault:
    hw.counters.add("fault." + kind)
    if hw.flat:
        hw.tlbs[cpu].invalidate_range(space.asid, vpn, 1, 0)
    return HwFault(kind, vpn << hw.page_shift, level, write)


def ref_walk(hw: Hardware, cpu: int, space: AddressSpace, vpn: int, write: bool) -> int | HwFault:
    """The walk, one page (Arm ARM D8.2, D8.5, D8.7.1): the filled entry's number, or the fault."""
    fmt = hw.fmt
    hw.counters.add("tlb.walk")
    pmd_index = vpn >> (hw.page_shift - 3)
    pmd = space.pmds.get(pmd_index, 0)
    if pmd:
        kind = fmt.l2_kind(pmd)
        if kind == L2_INVALID:
            return ref_fault(hw, cpu, space, "translation", vpn, 2, write)
        if kind == L2_BLOCK:
            return ref_use(hw, cpu, space, -1, pmd_index, pmd, 2, vpn, write)
    slot = space.pte_table(pmd_index)
    if slot < 0:
        return ref_fault(hw, cpu, space, "translation", vpn, 2, write)
    ptep = (slot << hw.pool.shift) | (vpn & (hw.ptrs_per_pte - 1))
    d = hw.pool.peek(ptep)
    if not fmt.page_valid(d):
        return ref_fault(hw, cpu, space, "translation", vpn, 3, write)
    n = hw.cont_entry_pages
    if n > 1 and fmt.cont(d):
        cand = (ptep & ~(n - 1)) + hw.rng.randrange(n)
        dc = hw.pool.peek(cand)
        if fmt.page_valid(dc) and fmt.cont(dc):
            ptep, d = cand, dc
    return ref_use(hw, cpu, space, ptep, pmd_index, d, 3, vpn, write)


def ref_use(
    hw: Hardware,
    cpu: int,
    space: AddressSpace,
    ptep: int,
    pmd_index: int,
    d: int,
    level: int,
    vpn: int,
    write: bool,
) -> int | HwFault:
    fmt = hw.fmt
    feat = hw.features
    af = fmt.af(d)
    if not af and not feat.ha:
        return ref_fault(hw, cpu, space, "access_flag", vpn, level, write)
    if not fmt.user(d):
        return ref_fault(hw, cpu, space, "permission", vpn, level, write)
    ws = fmt.write_state(d)
    if write and (ws == WS_NONE or (ws == WS_CLEAN and not feat.hd)):
        return ref_fault(hw, cpu, space, "permission", vpn, level, write)
    new = d
    if not af:
        new = fmt.set_af(new)
        hw.counters.add("hw.af_update")
    if write and ws == WS_CLEAN:
        new = fmt.set_dirty(new)
        hw.counters.add("hw.dirty_update")
    if new != d:
        if level == 2:
            space.pmd_hw_store(pmd_index, new)
        else:
            hw.pool.hw_store(ptep, new)
    npages = hw.ptrs_per_pte if level == 2 else (hw.cont_entry_pages if fmt.cont(new) else 1)
    vbase = vpn & ~(npages - 1)
    pfn = fmt.pfn(new) & ~(npages - 1)
    tlb = hw.tlbs[cpu]
    ov = tlb.overlaps(space.asid, vbase, npages)
    if ov:
        hw.counters.add("tlb.conflict")
    if hw.checker is not None:
        j = tlb.last_overlap
        hw.checker.on_fill(
            cpu,
            space,
            vbase,
            npages,
            new,
            ptep,
            level,
            ov,
            tlb.entry(j).npages if ov else 0,
            tlb.entry(j).desc if ov else 0,
        )
    return tlb.insert(space.asid, vbase, npages, pfn, new, ptep, level, ov > 0)


def ref_translate(hw: Hardware, cpu: int, space: AddressSpace, vpn: int, write: bool) -> int | HwFault:
    """One page: the frame, or the fault."""
    fmt = hw.fmt
    tlb = hw.tlbs[cpu]
    k = tlb.lookup(space.asid, vpn)
    if k >= 0:
        hw.counters.add("tlb.hit")
        e = tlb.entry(k)
        if not fmt.user(e.desc):
            return ref_fault(hw, cpu, space, "permission", vpn, e.level, write)
        if write:
            ws = fmt.write_state(e.desc)
            if ws == WS_CLEAN and hw.features.hd:
                tlb.remove(k)
                r = ref_walk(hw, cpu, space, vpn, write)
                return r if isinstance(r, HwFault) else tlb.entry(r).pfn_of(vpn)
            if ws != WS_DIRTY:
                return ref_fault(hw, cpu, space, "permission", vpn, e.level, write)
        if hw.checker is not None:
            hw.checker.on_tlb_use(cpu, space, vpn, e.ptep, e.pfn_of(vpn), e.desc, write)
        return e.pfn_of(vpn)
    hw.counters.add("tlb.miss")
    r = ref_walk(hw, cpu, space, vpn, write)
    return r if isinstance(r, HwFault) else tlb.entry(r).pfn_of(vpn)


def ref_access(
    hw: Hardware, cpu: int, space: AddressSpace, va: int, npages: int, write: bool, value: Any, out: Any
) -> tuple[int, HwFault | None]:
    data = hw.memory.data
    vpn0 = va >> hw.page_shift
    for i in range(npages):
        r = ref_translate(hw, cpu, space, vpn0 + i, write)
        if isinstance(r, HwFault):
            return i, r
        if r >= hw.memory.nr_frames:
            raise InvariantViolation(
                "oa-range",
                f"translation to pfn {r:#x} beyond physical memory ({hw.memory.nr_frames:#x} frames)",
            )
        if write:
            data[r] = value[i] if isinstance(value, np.ndarray) else np.uint64(value)
        elif out is not None:
            out[i] = data[r]
    return npages, None


def build(p: dict[str, Any]) -> tuple[Hardware, AddressSpace]:
    feat = CpuFeatures(
        name="rand",
        hafdbs=p["hafdbs"],
        contig_tlb=p["contig_tlb"],
        tlb_entries=p["tlb_entries"],
        bbm_level=2 if p["noabort"] else 0,
        bbml2_noabort=p["noabort"],
    )
    hw = Hardware(
        NFRAMES,
        ncpus=2,
        features=feat,
        fmt=p["fmt"],
        checker=p["checker"],
        adversarial_tlb=p["adversarial"],
        seed=p["seed"],
    )
    s = hw.new_space(1, "p")
    other = hw.new_space(2, "q")
    rng = np.random.default_rng(p["seed"])
    fmt = hw.fmt
    flat = fmt.name == "flat"
    hw.memory.data[:] = rng.integers(0, 1 << 60, NFRAMES, dtype=np.uint64)
    for region in range(NREGIONS):
        kind = rng.integers(2 if p.get("no_holes") else 0, 6)
        if kind == 0:
            continue  # nothing mapped: translation faults at level 2
        if kind == 1:
            pfn = int(rng.integers(1, NFRAMES // 512)) * 512
            write = int(rng.choice([WS_NONE, WS_CLEAN, WS_DIRTY]))
            s.pmd_store(region, fmt.mk_block(pfn, write=write, af=bool(rng.random() < 0.7)))
            continue
        slot = s.alloc_pte_table(region)
        vals = np.zeros(512, dtype=np.uint64)
        dense = rng.random() < 0.6  # long runs without a fault
        for g in range(32):
            gk = rng.integers(1 if dense else 0, 10)
            base = int(rng.integers(0, NFRAMES // 16)) * 16
            if gk == 0:
                continue
            for i in range(16):
                if gk in (1, 2, 3) and not flat:  # Contiguous sets, mostly consistent
                    if gk == 3 and not dense and rng.random() < 0.1:
                        continue  # a hole
                    write = WS_CLEAN if (p["hafdbs"] == 2 and rng.random() < 0.3) else WS_DIRTY
                    if gk == 2 and not dense:
                        write = WS_NONE
                    cont = not (gk == 3 and not dense and rng.random() < 0.05)  # rarely misprogrammed
                    af = rng.random() < 0.8 or (dense and p["hafdbs"] == 0)
                    vals[g * 16 + i] = fmt.mk_page(base + i, cont=cont, write=write, af=bool(af))
                elif dense:
                    write = WS_CLEAN if (p["hafdbs"] == 2 and rng.random() < 0.3) else WS_DIRTY
                    af = p["hafdbs"] > 0 or rng.random() < 0.995
                    vals[g * 16 + i] = fmt.mk_page(int(rng.integers(0, NFRAMES)), write=write, af=af)
                elif rng.random() < 0.9:
                    write = int(rng.choice([WS_NONE, WS_CLEAN, WS_DIRTY], p=[0.1, 0.3, 0.6]))
                    vals[g * 16 + i] = fmt.mk_page(
                        int(rng.integers(0, NFRAMES)),
                        write=write,
                        af=bool(rng.random() < 0.8),
                        user=bool(rng.random() < 0.97),
                    )
        for i, v in enumerate(vals.tolist()):
            if not v and p.get("no_holes"):
                v = fmt.mk_page(int(rng.integers(0, NFRAMES)))
            if v:
                hw.pool.store((slot << hw.pool.shift) + i, v)
        if rng.random() < 0.3 and region == 2:
            s.pmd_store(region, fmt.mk_block(512, write=WS_DIRTY) & ~1)  # an invalid level-2 entry in the way
    oslot = other.alloc_pte_table(0)
    for i in range(64):
        hw.pool.store((oslot << hw.pool.shift) + i, fmt.mk_page(i * 7 % NFRAMES))
    return hw, s


def state(hw: Hardware) -> dict[str, Any]:
    out: dict[str, Any] = {
        "mem": hw.memory.data.tolist(),
        "pool": np.asarray(hw.pool.e).tolist(),
        "pmds": {a: dict(sp.pmds) for a, sp in hw.spaces.items()},
        "tlbs": [[(*e.as_tuple(), e.stamp) for e in t] for t in hw.tlbs],
        "counters": hw.counters.snapshot(),
        "rng": hw.rng.getstate(),
    }
    c = hw.checker
    if c is not None:
        out["checker"] = (
            c.seq,
            c.n_brk,
            c.violations,
            np.asarray(c.cks).tolist(),
            np.asarray(c.dirty).tolist(),
        )
    return out


def run(p: dict[str, Any], reference: bool) -> list[Any]:
    """Warm-up accesses, perturbations, then the access under test; everything observable after each."""
    hw, s = build(p)
    rng = np.random.default_rng(p["seed"] + 1)
    span = NREGIONS * 512
    trace: list[Any] = []

    def access(cpu: int, start: int, n: int, write: bool, value: Any) -> None:
        out = np.zeros(n, dtype=np.uint64)
        try:
            if reference:
                r: Any = ref_access(hw, cpu, s, start << 12, n, write, value, out)
            else:
                r = hw.access(cpu, s, start << 12, n, write, value, out)
        except InvariantViolation as e:
            r = (e.rule, str(e))
        trace.append((r, out.tolist(), state(hw)))

    def perturb() -> None:
        region = int(rng.integers(0, NREGIONS))
        slot = s.pte_table(region)
        if slot < 0:
            return
        ptep = (slot << hw.pool.shift) + int(rng.integers(0, 512))
        d = hw.pool.peek(ptep)
        if not d:
            return
        if not hw.flat and rng.random() < 0.3:
            # fold or unfold a block in place, no break, no TLBI (legal
            # with BBML2; TLB entries of the other size stay: conflicts)
            p0 = ptep & ~15
            cur = [hw.pool.peek(p0 + q) for q in range(16)]
            if all(hw.fmt.page_valid(v) for v in cur):
                cont = not hw.fmt.cont(cur[0])
                for q in range(16):
                    with contextlib.suppress(InvariantViolation):
                        hw.pool.store(p0 + q, hw.fmt.mk_page((hw.fmt.pfn(cur[0]) & ~15) + q, cont=cont))
                if rng.random() < 0.7:
                    # the BBML2_NOABORT way: flush one page; the others' entries age out
                    va = (region << hw.pmd_shift) | ((p0 & 511) + int(rng.integers(0, 16))) << hw.page_shift
                    with contextlib.suppress(InvariantViolation):
                        hw.tlbi("VALE1IS", asid=1, va=va)
                        hw.dsb("ish")
            return
        with contextlib.suppress(InvariantViolation):
            if rng.random() < 0.5:
                hw.pool.xchg(ptep, 0)  # no TLBI: stale entries stay
            elif not hw.fmt.cont(d):
                hw.pool.store(ptep, hw.fmt.mk_page(hw.fmt.pfn(d), write=WS_NONE, af=hw.fmt.af(d)))

    # warm-up accesses (they fill TLBs) with software changes in between, no TLBI
    for w in range(p["warm"]):
        start = int(rng.integers(0, span))
        n = min(int(rng.integers(1, 700)), span - start)
        access(int(rng.integers(0, 2)), start, n, bool(rng.random() < 0.5), 11)
        for _ in range(p["perturb"] // max(1, p["warm"]) if w < p["warm"] - 1 else 0):
            perturb()
    for _ in range(p["perturb"] // 2):
        perturb()
    value: Any = p["value"]
    if p["array_value"]:
        value = np.arange(p["npages"], dtype=np.uint64) + 1000
    access(p["cpu"], p["start"], p["npages"], p["write"], value)
    return trace


params_st = st.fixed_dictionaries(
    {
        "seed": st.integers(0, 2**31),
        "hafdbs": st.sampled_from([0, 1, 2, 2]),
        "contig_tlb": st.booleans(),
        "tlb_entries": st.sampled_from([3, 40, 1280]),
        "adversarial": st.booleans(),
        "noabort": st.booleans(),
        "fmt": st.sampled_from(["vmsa", "vmsa", "vmsa", "flat"]),
        "checker": st.booleans(),
        "warm": st.integers(0, 4),
        "perturb": st.integers(0, 30),
        "cpu": st.integers(0, 1),
        "start": st.integers(0, NREGIONS * 512 - 1),
        "npages": st.integers(1, 1200),
        "write": st.booleans(),
        "value": st.integers(0, 2**63),
        "array_value": st.booleans(),
    }
).map(lambda p: {**p, "npages": min(p["npages"], NREGIONS * 512 - p["start"])})


@settings(max_examples=150, deadline=None)
@given(params_st)
def test_access_equals_the_page_by_page_reference(params: dict[str, Any]) -> None:
    assert run(params, False) == run(params, True)


def test_conflicting_fills_equal_the_reference() -> None:
    """Fold and unfold in place with BBML2 (no break): fills overlapping entries of the other size."""
    conflicts = 0
    for seed in range(40):
        p = {
            "seed": seed,
            "hafdbs": 2,
            "contig_tlb": True,
            "tlb_entries": 1280,
            "adversarial": seed % 2 == 0,
            "noabort": seed % 4 != 3,
            "fmt": "vmsa",
            "checker": seed % 3 == 0,
            "warm": 4,
            "perturb": 40,
            "cpu": 0,
            "start": 0,
            "npages": NREGIONS * 512,
            "write": seed % 2 == 1,
            "value": 5,
            "array_value": False,
            "no_holes": True,
        }
        ours = run(p, False)
        assert ours == run(p, True), seed
        conflicts += any(t[2]["counters"].get("tlb.conflict") for t in ours)
    assert conflicts >= 5
