"""The incremental rule checker against a plain one, on random sequences.

``RefChecker`` keeps everything the simple way: a shadow of every
descriptor it saw stored, every break until the entry is made again, and
for every page, ASID and the whole machine the sequence number of the
latest TLBI issued, completed broadcast and completed local that reached
it (no records dropped, nothing incremental).  The checker under test keeps
per-block checksums and dirty bits, break records only while uncovered,
and records TLBIs only where a break is pending.  Random descriptor
stores, pokes behind the checker's back, TLBIs (every form, ranges, TTL
hints), DSBs, PTL releases, table frees and level-2 stores, issued from
random CPUs, must give the same verdicts: the same violation (rule,
message, address, descriptors) at the same step, or none.  At the end of a
clean run a full flush leaves the checker with no break record.

This also covers what the retired bulk-store tests covered: every store is
now checked by the one per-store path, whatever the caller's batching.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from conftest import ptep_of
from contpte.errors import InvariantViolation
from contpte.hw.features import PRESETS, CpuFeatures
from contpte.hw.format import L2_BLOCK, WS_CLEAN, WS_DIRTY, WS_NONE
from contpte.hw.hardware import Hardware
from contpte.hw.tables import AddressSpace
from contpte.hw.tlbi import tlbi_code, tlbi_range_pages

NEVER = -1


class RefChecker:
    """The Arm ARM rules kept the plain way (see the module docstring)."""

    def __init__(self, hw: Hardware) -> None:
        self.hw = hw
        self.fmt = hw.fmt
        f = hw.features
        self.hd = f.hd
        self.bbm_level = f.bbm_level
        self.noabort = f.bbml2_noabort
        self.arm = hw.fmt.has_contiguous
        self.cn = hw.fmt.cont_ptes if self.arm else 16
        self.ptrs = hw.ptrs_per_pte
        self.shift = hw.pool.shift
        self.seq = 0
        self.shadow: dict[int, int] = {}
        self.tainted: set[tuple[int, int]] = set()
        self.dirty: dict[int, set[int]] = {}
        self.brk: dict[tuple[int, int], tuple[int, int]] = {}
        # field -> key -> seq; keys: ("p", asid, vpn), ("pa", vpn) any ASID,
        # ("a", asid), ("all",); level-2: ("r", asid, region), ("ra", region)
        self.seqs: dict[str, dict[Any, int]] = {"cover": {}, "issued": {}, "local": {}}
        self.pmd_shadow: dict[tuple[int, int], int] = {}
        self.pmd_brk: dict[tuple[int, int], tuple[int, int]] = {}
        self.pending: list[list[tuple[Any, ...]]] = [[] for _ in range(hw.ncpus)]

    # -- helpers ------------------------------------------------------------
    def where(self, ptep: int) -> tuple[int, int, int]:
        pool = self.hw.pool
        slot = ptep >> self.shift
        asid = int(pool.slot_asid[slot])
        vpn = (int(pool.slot_pmd[slot]) << self.shift) | (ptep & (self.ptrs - 1))
        return slot, asid, vpn

    def seq_of(self, field: str, asid: int, vpn: int) -> int:
        d = self.seqs[field]
        return max(d.get(("p", asid, vpn), NEVER), d.get(("pa", vpn), NEVER), self._wide(d, asid))

    def seq2_of(self, field: str, asid: int, region: int) -> int:
        d = self.seqs[field]
        return max(d.get(("r", asid, region), NEVER), d.get(("ra", region), NEVER), self._wide(d, asid))

    @staticmethod
    def _wide(d: dict[Any, int], asid: int) -> int:
        return max(d.get(("a", asid), NEVER), d.get(("all",), NEVER))

    def needs_bbm(self, old: int, new: int) -> bool:
        fmt = self.fmt
        data = self.hw.memory.data
        po, pn = fmt.pfn(old), fmt.pfn(new)
        nf = len(data)
        differs = True if not (po < nf and pn < nf) else bool(data[po] != data[pn])
        writable = fmt.writable(old, self.hd) or fmt.writable(new, self.hd)
        if (po != pn and (writable or differs)) or fmt.memtype(old) != fmt.memtype(new):
            return True
        return self.bbm_level == 0 and fmt.cont(old) != fmt.cont(new)

    @staticmethod
    def fail(rule: str, msg: str, addr: int, ptes: list[int] | None) -> None:
        raise InvariantViolation(rule, msg, addr, ptes)

    # -- hooks ----------------------------------------------------------------
    def on_store(self, ptep: int, old: int, new: int) -> None:
        fmt = self.fmt
        slot, asid, vpn = self.where(ptep)
        block = (ptep & (self.ptrs - 1)) // self.cn
        if self.shadow.get(ptep, 0) != old:
            # memory was changed behind the checker's back: the block stays
            # wrong until its next release, whatever is stored over it
            self.tainted.add((slot, block))
        self.shadow[ptep] = new
        self.dirty.setdefault(slot, set()).add(block)
        if not self.arm or old == new:
            return
        ov, nv = fmt.page_valid(old), fmt.page_valid(new)
        va = vpn << self.hw.page_shift
        if ov and nv:
            if (old ^ new) & fmt.bbm_bits and self.needs_bbm(old, new):
                self.fail(
                    "bbm",
                    f"valid descriptor {old:#x} replaced by {new:#x} without break-before-make (D8.17.1 RWHZWS)",
                    va,
                    [old, new],
                )
        elif ov:
            self.seq += 1
            self.brk[(asid, vpn)] = (old, self.seq)
        elif nv:
            pmd = vpn >> self.shift
            if (asid, pmd) in self.pmd_brk:
                self.check_pmd_covered(asid, pmd, "level-3 descriptors written")
            b = self.brk.get((asid, vpn))
            if b is not None:
                if self.needs_bbm(b[0], new):
                    self.check_covered(asid, vpn, b[0], b[1], new)
                del self.brk[(asid, vpn)]

    def check_covered(self, asid: int, vpn: int, old: int, seq: int, new: int) -> None:
        cn = self.cn
        if self.fmt.cont(old):
            pages = range(vpn & ~(cn - 1), (vpn & ~(cn - 1)) + cn)
            what = f"the whole {cn}-entry contiguous block"
        else:
            pages = range(vpn, vpn + 1)
            what = "the page"
        done = [self.seq_of("cover", asid, p) > seq for p in pages]
        issued = [self.seq_of("issued", asid, p) > seq for p in pages]
        local = [self.seq_of("local", asid, p) > seq for p in pages]
        if all(done):
            return
        va = vpn << self.hw.page_shift
        ptes = [old, new]
        n = len(done)
        if any(done):
            self.fail(
                "tlbi-coverage",
                f"the TLBIs after the break covered {sum(done)} of {n} pages; they must cover {what} (D8.7.1)",
                va,
                ptes,
            )
        if all(i or d for i, d in zip(issued, done, strict=True)):
            self.fail(
                "bbm",
                "new descriptor written before the TLBI after the break was completed by a DSB ISH "
                "(D8.17.1 RDDMVT step 4)",
                va,
                ptes,
            )
        if all(lo or d for lo, d in zip(local, done, strict=True)):
            self.fail(
                "tlbi-coverage",
                "the TLBI after the break was local (no IS); other CPUs may still hold the old translation",
                va,
                ptes,
            )
        if any(issued) or any(local) or any(done):
            self.fail("tlbi-coverage", f"the TLBIs after the break did not cover {what} (D8.7.1)", va, ptes)
        self.fail(
            "bbm",
            "descriptor invalidated and rewritten with no TLBI in between (D8.17.1 RDDMVT step 3)",
            va,
            ptes,
        )

    def check_pmd_covered(self, asid: int, pmd: int, what: str) -> None:
        old, seq = self.pmd_brk[(asid, pmd)]
        if self.seq2_of("cover", asid, pmd) > seq:
            del self.pmd_brk[(asid, pmd)]
            return
        if self.seq2_of("issued", asid, pmd) > seq:
            msg, rule = "the TLBI after the level-2 break was not completed by a DSB ISH", "bbm"
        elif self.seq2_of("local", asid, pmd) > seq:
            msg, rule = "the TLBI after the level-2 break was local (no IS)", "tlbi-coverage"
        else:
            msg, rule = "no TLBI after the level-2 block was invalidated", "bbm"
        self.fail(rule, f"{what}: {msg} (D8.17.1 RDDMVT)", pmd << self.hw.pmd_shift, [old])

    def on_table_alloc(self, slot: int) -> None:
        base = slot << self.shift
        for p in range(base, base + self.ptrs):
            self.shadow.pop(p, None)
        self.dirty.pop(slot, None)
        self.tainted = {t for t in self.tainted if t[0] != slot}

    def on_table_free(self, slot: int) -> None:
        if not self.arm:
            return
        first = True
        for p in range(slot << self.shift, (slot + 1) << self.shift):
            d = self.hw.pool.peek(p)
            if self.fmt.page_valid(d):
                if first:
                    self.seq += 1
                    first = False
                _, asid, vpn = self.where(p)
                self.brk[(asid, vpn)] = (d, self.seq)

    def on_pmd_store(self, asid: int, pmd: int, old: int, new: int) -> None:
        fmt = self.fmt
        cur = self.pmd_shadow.get((asid, pmd), 0)
        va = pmd << self.hw.pmd_shift
        if cur != old:
            self.fail(
                "unobserved-store",
                f"level-2 descriptor changed without a store the checker saw: shadow {cur:#x}, memory {old:#x}",
                va,
                None,
            )
        self.seq += 1
        self.pmd_shadow[(asid, pmd)] = new
        if not self.arm:
            return
        ob = bool(old) and fmt.l2_kind(old) == L2_BLOCK
        nb = bool(new) and fmt.l2_kind(new) == L2_BLOCK
        if ob and nb and old != new:
            if self.needs_bbm(old, new):
                self.fail(
                    "bbm", "valid level-2 block replaced without break-before-make (D8.17.1)", va, [old, new]
                )
        elif ob and not nb:
            self.pmd_brk[(asid, pmd)] = (old, self.seq)
        elif nb and not ob:
            if (asid, pmd) in self.pmd_brk:
                if self.needs_bbm(self.pmd_brk[(asid, pmd)][0], new):
                    self.check_pmd_covered(asid, pmd, "level-2 block written")
                self.pmd_brk.pop((asid, pmd), None)
            pend = sorted(v for (a, v) in self.brk if a == asid and v >> self.shift == pmd)
            if self.bbm_level == 0:
                for v in pend:
                    old_v, seq = self.brk[(asid, v)]
                    if not self.seq_of("cover", asid, v) > seq:
                        self.fail(
                            "bbm",
                            "level-2 block written over level-3 translations that were never flushed "
                            "(size change, D8.17.1)",
                            v << self.hw.page_shift,
                            [old_v, new],
                        )
            for v in pend:
                del self.brk[(asid, v)]

    def ptl_release(self, slot: int) -> None:
        pool = self.hw.pool
        cn = self.cn
        for b in sorted(self.dirty.get(slot, ())):
            p0 = (slot << self.shift) | (b * cn)
            mem = [pool.peek(p0 + q) for q in range(cn)]
            if [self.shadow.get(p0 + q, 0) for q in range(cn)] != mem or (slot, b) in self.tainted:
                self.fail(
                    "unobserved-store",
                    f"a descriptor of this {cn}-entry block changed without a store the checker saw "
                    "(checksum of the stores it saw differs from memory)",
                    self.where(p0)[2] << self.hw.page_shift,
                    mem,
                )
            if self.arm:
                self.check_set(p0, mem)
            self.dirty[slot].discard(b)

    def check_set(self, p0: int, vals: list[int]) -> None:
        fmt = self.fmt
        cn = self.cn
        valid = [fmt.page_valid(v) for v in vals]
        cont = [fmt.cont(v) and ok for v, ok in zip(vals, valid, strict=True)]
        if not any(cont):
            return
        why = None
        if any(ok and not c for ok, c in zip(valid, cont, strict=True)):
            why = "valid Contiguous and valid non-Contiguous entries in one set (misprogrammed, RQTRPM)"
        else:
            bases = {fmt.pfn(v) - q for q, v in enumerate(vals) if cont[q]}
            first = next(q for q in range(cn) if cont[q])
            keys = {fmt.prot_key(v, self.hd) for q, v in enumerate(vals) if cont[q]}
            if len(bases) != 1 or (fmt.pfn(vals[first]) - first) % cn:
                why = "output addresses not consecutive or block not aligned"
            elif len(keys) != 1:
                why = "attributes or permissions differ (ignoring AF and AP[2] with DBM, RJQQTC)"
        if why is not None:
            self.fail(
                "contig-consistency", f"{why}, at PTL release", self.where(p0)[2] << self.hw.page_shift, vals
            )

    def on_tlbi(
        self, cpu: int, broadcast: bool, scope: str, asid: int, vpn: int, npages: int, level: int
    ) -> None:
        self.seq += 1
        t = (self.seq, broadcast, scope, asid, vpn, npages, level)
        if broadcast:
            self.apply(t, "issued")
        self.pending[cpu].append(t)

    def on_dsb(self, cpu: int, domain: str) -> None:
        if domain.endswith("st"):
            return
        keep = []
        for t in self.pending[cpu]:
            if t[1] and domain == "nsh":
                keep.append(t)
                continue
            self.apply(t, "cover" if t[1] else "local")
        self.pending[cpu] = keep

    def apply(self, t: tuple[Any, ...], field: str) -> None:
        seq, _b, scope, asid, vpn, npages, level = t
        d = self.seqs[field]
        l3 = level in (0, 3)
        l2 = level in (0, 2)

        def put(key: Any) -> None:
            d[key] = max(d.get(key, NEVER), seq)

        if scope == "asid":
            put(("a", asid))
        elif scope == "all":
            put(("all",))
        else:
            if l3:
                for p in range(vpn, vpn + npages):
                    put(("p", asid, p) if asid >= 0 else ("pa", p))
            if l2:
                for r in range(vpn >> self.shift, ((vpn + npages - 1) >> self.shift) + 1):
                    put(("r", asid, r) if asid >= 0 else ("ra", r))


TTL_LEVEL = {0: 0, 3: 3, 2: 2, 0b0111: 3, 0b1011: -1}


class Harness:
    """Drive the hardware (its checker) and the reference in lockstep."""

    def __init__(self, hw: Hardware, spaces: list[AddressSpace]) -> None:
        self.hw = hw
        self.ref = RefChecker(hw)
        self.spaces = spaces

    def both(self, real: Any, ref: Any) -> tuple[str, str, int | None, list[int]] | None:
        """Run ``real()`` then ``ref()``; the violation each raised must be the same."""
        got = want = None
        try:
            real()
        except InvariantViolation as e:
            got = (e.rule, str(e), e.addr, e.ptes)
        try:
            ref()
        except InvariantViolation as e:
            want = (e.rule, str(e), e.addr, e.ptes)
        assert got == want
        return got

    def store(self, ptep: int, value: int) -> Any:
        pool = self.hw.pool
        old = pool.peek(ptep)
        return self.both(lambda: pool.store(ptep, value), lambda: self.ref.on_store(ptep, old, value))

    def tlbi(self, name: str, asid: int, va: int, ttl: int) -> Any:
        hw = self.hw
        code = tlbi_code(name)
        scope = "asid" if name.startswith("ASIDE1") else ("all" if name.startswith("VMALLE1") else "va")
        by_asid = not name.startswith(("VAA", "VMALL"))
        broadcast = name.endswith("IS") or hw.ncpus == 1
        level = TTL_LEVEL[ttl] if scope == "va" else 0
        cpu = hw.current_cpu
        vpn = va >> hw.page_shift if scope == "va" else 0

        def ref() -> None:
            if level >= 0:
                self.ref.on_tlbi(cpu, broadcast, scope, asid if by_asid else -1, vpn, 1, level)
            else:
                self.ref.seq += 1

        return self.both(lambda: hw.tlbi_op(code, asid if by_asid else -1, va, ttl), ref)

    def tlbi_range(self, name: str, asid: int, va: int, scale: int, num: int, ttl: int) -> Any:
        hw = self.hw
        cpu = hw.current_cpu
        by_asid = not name.startswith("RVAA")
        n = tlbi_range_pages(scale, num)
        return self.both(
            lambda: hw.tlbi_range(name, asid if by_asid else None, va, scale, num, ttl),
            lambda: self.ref.on_tlbi(
                cpu, name.endswith("IS") or hw.ncpus == 1, "va", asid if by_asid else -1, va >> 12, n, ttl
            ),
        )

    def dsb(self, domain: str) -> Any:
        cpu = self.hw.current_cpu
        return self.both(lambda: self.hw.dsb(domain), lambda: self.ref.on_dsb(cpu, domain))

    def release(self, space: AddressSpace, pmd: int) -> Any:
        slot = space.pte_table(pmd)
        if slot < 0:
            return None
        chk = self.hw.checker
        assert chk is not None
        return self.both(lambda: chk.ptl_release(space, slot), lambda: self.ref.ptl_release(slot))

    def free(self, space: AddressSpace, pmd: int) -> Any:
        slot = space.pte_table(pmd)
        if slot < 0:
            return None
        self.ref.on_table_free(slot)  # (it reads the table, which the free zeroes)
        return self.both(lambda: space.free_pte_table(pmd), lambda: None)

    def alloc(self, space: AddressSpace, pmd: int) -> None:
        if space.pte_table(pmd) < 0:
            slot = space.alloc_pte_table(pmd)
            self.ref.on_table_alloc(slot)

    def pmd_store(self, space: AddressSpace, pmd: int, value: int) -> Any:
        old = space.pmd_peek(pmd)
        return self.both(
            lambda: space.pmd_store(pmd, value), lambda: self.ref.on_pmd_store(space.asid, pmd, old, value)
        )


def episode(seed: int, features: CpuFeatures, ncpus: int) -> tuple[int, str | None]:
    """One random run; (steps, rule of the violation that ended it or None)."""
    rng = np.random.default_rng(seed)
    hw = Hardware(4096, ncpus=ncpus, features=features, seed=seed)
    fmt = hw.fmt
    spaces = [hw.new_space(1, "a"), hw.new_space(2, "b")]
    h = Harness(hw, spaces)
    for sp in spaces:
        for pmd in range(2):
            h.alloc(sp, pmd)
    nblocks = 6  # the entries used: 6 contiguous blocks per table

    def value(cur: int, idx: int) -> int:
        k = rng.integers(0, 10)
        base = 64 * int(rng.integers(0, 4))
        write = (WS_DIRTY, WS_CLEAN, WS_NONE)[int(rng.integers(0, 3))]
        af = bool(rng.random() < 0.8)
        if k < 2:
            return 0
        if k < 4:
            return fmt.mk_page(base + idx % 16, cont=True, write=write, af=af)
        if k < 6 and fmt.page_valid(cur):  # write-protect / mkold / mkclean the current one
            return fmt.mk_page(fmt.pfn(cur), cont=fmt.cont(cur), write=write, af=af)
        if k < 8:
            return fmt.mk_page(base + idx, write=write, af=af)
        if k < 9:
            return fmt.mk_page(int(rng.integers(0, 4096)), cont=bool(rng.random() < 0.3), write=write)
        return 0x1234 << 12  # invalid, not zero (a swap entry)

    def flush(sp: AddressSpace, va0: int, n: int) -> Any:
        """A TLB flush of ``n`` pages from ``va0``, right or wrong in one of many ways."""
        if rng.random() < 0.85:
            kind = str(rng.choice(["pages", "pages", "range", "aside", "vmall"]))
        else:
            kind = str(rng.choice(["vaa", "partial", "local", "nodsb", "nsh", "ttl2", "none"]))
        res = h.dsb("ishst")
        if kind == "none" or res is not None:
            return res
        if kind == "range" and hw.features.tlbirange and n > 1:
            num = (n >> 1) - 1 if n <= 64 else 0
            res = h.tlbi_range("RVALE1IS", sp.asid, va0, 0 if n <= 64 else 1, num, 3)
        elif kind == "aside":
            res = h.tlbi("ASIDE1IS", sp.asid, 0, 0)
        elif kind == "vmall":
            res = h.tlbi("VMALLE1IS", sp.asid, 0, 0)
        else:
            name = {"local": "VALE1", "vaa": "VAALE1IS"}.get(kind, "VALE1IS")
            ttl = 2 if kind == "ttl2" else int(rng.choice([0, 3, 0b0111]))
            count = int(rng.integers(1, n)) if kind == "partial" and n > 1 else n
            for q in range(count):
                res = h.tlbi(name, sp.asid, va0 + (q << hw.page_shift), ttl)
                if res is not None:
                    return res
        if res is None and kind != "nodsb":
            res = h.dsb("nsh" if kind == "nsh" else str(rng.choice(["ish", "ish", "sy"])))
        return res

    steps = 0
    for steps in range(1, 150):
        op = rng.random()
        sp = spaces[int(rng.integers(0, 2))]
        pmd = int(rng.integers(0, 3))
        idx = int(rng.integers(0, 16 * nblocks))
        va = (pmd << hw.pmd_shift) | (idx << hw.page_shift)
        have = sp.pte_table(pmd) >= 0
        res = None
        if op < 0.03:
            if have:
                p = ptep_of(hw, sp, va)
                res = h.store(p, value(hw.pool.peek(p), idx))
        elif op < 0.40:  # break, flush (rightly or not), make: a page or a whole block
            if have:
                block = rng.random() < 0.6
                va0 = va & ~(16 * 4096 - 1) if block else va
                n = 16 if block else 1
                p0 = ptep_of(hw, sp, va0)
                i0 = (va0 >> hw.page_shift) & 511
                for q in range(n):
                    res = res or h.store(p0 + q, 0)
                res = res or flush(sp, va0, n)
                base = 64 * int(rng.integers(0, 4)) + (i0 & ~15)
                cont = block and rng.random() < 0.6
                write = (WS_DIRTY, WS_CLEAN, WS_NONE)[int(rng.integers(0, 3))]
                for q in range(n):
                    if res is None:
                        res = h.store(p0 + q, fmt.mk_page(base + (i0 & 15) + q, cont=cont, write=write))
        elif op < 0.50:  # write-protect, mkold, mkclean a page or a block in place
            if have:
                block = rng.random() < 0.6
                va0 = va & ~(16 * 4096 - 1) if block else va
                p0 = ptep_of(hw, sp, va0)
                write = (WS_DIRTY, WS_CLEAN, WS_NONE)[int(rng.integers(0, 3))]
                af = bool(rng.random() < 0.5)
                for q in range(16 if block else 1):
                    cur = hw.pool.peek(p0 + q)
                    if res is None and fmt.page_valid(cur):
                        res = h.store(
                            p0 + q, fmt.mk_page(fmt.pfn(cur), cont=fmt.cont(cur), write=write, af=af)
                        )
                if res is None and rng.random() < 0.5:
                    res = flush(sp, va0, 16 if block else 1)
        elif op < 0.58:
            name = str(
                rng.choice(
                    ["VALE1IS", "VAE1IS", "VALE1", "VAE1", "ASIDE1IS", "ASIDE1", "VMALLE1IS", "VAAE1IS"]
                )
            )
            ttl = int(rng.choice([0, 0, 3, 2, 0b0111, 0b1011]))
            res = h.tlbi(name, sp.asid, va, ttl)
        elif op < 0.61:
            if hw.features.tlbirange:
                name = str(rng.choice(["RVALE1IS", "RVAE1IS", "RVAE1", "RVAAE1IS"]))
                scale = int(rng.integers(0, 2))
                num = int(rng.integers(0, 8))
                res = h.tlbi_range(name, sp.asid, va & ~0xFFFF, scale, num, int(rng.choice([0, 3, 2])))
        elif op < 0.68:
            res = h.dsb(str(rng.choice(["ish", "ish", "ishst", "nsh", "sy", "osh"])))
        elif op < 0.80:
            res = h.release(sp, pmd)
        elif op < 0.83:
            res = h.free(sp, pmd)
        elif op < 0.86:
            h.alloc(sp, pmd)
        elif op < 0.91:
            k = rng.integers(0, 3)
            pv = 0 if k == 0 else fmt.mk_block(512 * int(rng.integers(1, 4)), write=int(rng.integers(0, 3)))
            reg = 2 + int(rng.integers(0, 2))
            res = h.pmd_store(sp, reg, pv)
            if res is None and k == 0 and rng.random() < 0.5:
                res = flush(sp, reg << hw.pmd_shift, 1)
        elif op < 0.913:
            if have:
                hw.pool.poke(ptep_of(hw, sp, va), value(0, idx))  # behind both checkers' backs
        else:
            hw.current_cpu = int(rng.integers(0, ncpus))
        if res is not None:
            return steps, res[0]
    # a clean run: a full flush from every CPU leaves no break record
    chk = hw.checker
    assert chk is not None
    for cpu in range(ncpus):
        hw.current_cpu = cpu
        hw.dsb("ish")
    hw.tlbi("VMALLE1IS")
    hw.dsb("ish")
    assert chk.n_brk == 0 and not chk.pmd_breaks, (chk.n_brk, chk.pmd_breaks)
    return steps, None


@pytest.mark.parametrize(
    "features",
    [
        PRESETS["neoverse-n1"],
        PRESETS["neoverse-v2"],
        CpuFeatures(name="bbml2-noabort", bbm_level=2, bbml2_noabort=True, tlbirange=True),
        CpuFeatures(name="no-hd", hafdbs=1, tlbirange=True),
    ],
    ids=lambda f: f.name,
)
def test_incremental_checker_equals_the_plain_one(features: CpuFeatures) -> None:
    rules: dict[str | None, int] = {}
    for seed in range(200):
        _steps, rule = episode(seed, features, ncpus=1 + seed % 4)
        rules[rule] = rules.get(rule, 0) + 1
    # both verdicts exercised, and every rule these operations can break
    assert {None, "bbm", "tlbi-coverage", "contig-consistency", "unobserved-store"} <= set(rules), rules
