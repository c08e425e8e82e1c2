"""The isolation shadow: what each process (or file) should read, per page.

One ``ValueShadow`` per process (by virtual page) and per file written
through shared mappings (by page index), sparse by table of ``per`` pages
(the PTE table size, so a shadow table covers what one page table covers).
A ``ValueTable`` holds:

- the pages owned (written, inherited at fork): none, all, or a bitmap;
- their values: affine in the page index (``a + b * i``; a table written
  with one value has ``b == 0``, a table written with consecutive numbers
  ``b == 1``), or an array of ``per`` values when no such form fits;
- the pages MADV_FREE'd and not written since (may read zero once reclaim
  discarded them): none or a bitmap.

So a table written with one value (or with an affine sequence) costs about
two hundred bytes whatever its size, and an array only when the values are
arbitrary.  After fork the child's shadow shares every table with the
parent's (``copy``); a table is copied on the first change through either
(``refs``).

Compiled (docs/core.md).
"""

from __future__ import annotations

import cython
import numpy as np

if not cython.compiled:
    from ..cdefs import U64View, i64, u64

__all__ = ["ValueTable", "ValueShadow"]

_U64_MAX = cython.declare(u64, (1 << 64) - 1)


@cython.cfunc
@cython.inline
@cython.exceptval(check=False)
def _u(x: u64) -> u64:
    """``x`` (an array element) as an exact integer: interpreted, a numpy scalar
    becomes a Python int, so that u64 arithmetic wraps without warnings."""
    if not cython.compiled:
        return int(x)
    return x


@cython.final
@cython.cclass
class ValueTable:
    """What ``per`` consecutive pages should read (see the module docstring)."""

    def __init__(self, per: i64) -> None:
        self.refs = 1
        self.per = per
        self.nown = 0
        self.nlazy = 0
        self.a = 0
        self.b = 0
        self.vals: np.ndarray | None = None
        self.own: np.ndarray | None = None
        self.lazy: np.ndarray | None = None

    def __repr__(self) -> str:
        kind = "array" if self.vals is not None else f"affine {self.a:#x}+{self.b:#x}*i"
        return f"<ValueTable {kind} own={self.nown} lazy={self.nlazy} refs={self.refs}>"

    def nbytes(self) -> int:
        n = 120
        for a in (self.vals, self.own, self.lazy):
            if a is not None:
                n += 112 + a.nbytes
        return n

    @cython.cfunc
    @cython.exceptval(-1, check=True)
    def has(self, i: i64) -> cython.bint:
        if self.own is None:
            return self.nown == self.per
        w: U64View = self.own
        bit: u64 = w[i >> 6] >> (i & 63)
        return (bit & 1) != 0

    @cython.cfunc
    @cython.exceptval(-1, check=True)
    def value(self, i: i64) -> u64:
        if self.vals is None:
            return (self.a + self.b * cython.cast(u64, i)) & _U64_MAX
        v: U64View = self.vals
        return _u(v[i])

    @cython.cfunc
    @cython.exceptval(-1, check=True)
    def is_lazy(self, i: i64) -> cython.bint:
        if self.lazy is None:
            return False
        w: U64View = self.lazy
        bit: u64 = w[i >> 6] >> (i & 63)
        return (bit & 1) != 0

    @cython.cfunc
    @cython.exceptval(-1, check=True)
    def _count(self, words: np.ndarray, i0: i64, n: i64) -> i64:
        """Bits set in ``[i0, i0 + n)`` of a bitmap."""
        w: U64View = words
        c: i64 = 0
        i: i64
        for i in range(i0, i0 + n):
            if (w[i >> 6] >> (i & 63)) & 1:
                c += 1
        return c

    @cython.cfunc
    def _own(self, i0: i64, n: i64, on: cython.bint) -> None:
        """Mark pages ``[i0, i0 + n)`` owned (``on``) or not."""
        per: i64 = self.per
        if (on and self.nown == per) or (not on and self.nown == 0):
            return
        if i0 == 0 and n == per:
            self.nown = per if on else 0
            self.own = None
            return
        if self.own is None:
            self.own = np.full((per + 63) >> 6, _U64_MAX if self.nown else 0, dtype=np.uint64)
        w: U64View = self.own
        i: i64
        bit: u64
        for i in range(i0, i0 + n):
            bit = cython.cast(u64, 1) << (i & 63)
            if on and not w[i >> 6] & bit:
                w[i >> 6] |= bit
                self.nown += 1
            elif not on and w[i >> 6] & bit:
                w[i >> 6] ^= bit
                self.nown -= 1
        if self.nown == 0 or self.nown == per:
            self.own = None

    @cython.cfunc
    def _lazy(self, i0: i64, n: i64, on: cython.bint) -> None:
        """Mark pages ``[i0, i0 + n)`` lazyfree (``on``) or not."""
        if not on and self.nlazy == 0:
            return
        if self.lazy is None:
            self.lazy = np.zeros((self.per + 63) >> 6, dtype=np.uint64)
        w: U64View = self.lazy
        i: i64
        bit: u64
        for i in range(i0, i0 + n):
            bit = cython.cast(u64, 1) << (i & 63)
            if on and not w[i >> 6] & bit:
                w[i >> 6] |= bit
                self.nlazy += 1
            elif not on and w[i >> 6] & bit:
                w[i >> 6] ^= bit
                self.nlazy -= 1
        if self.nlazy == 0:
            self.lazy = None

    @cython.cfunc
    def _materialize(self) -> None:
        """Affine values -> an array."""
        if self.vals is not None:
            return
        self.vals = np.empty(self.per, dtype=np.uint64)
        v: U64View = self.vals
        i: i64
        for i in range(self.per):
            v[i] = (self.a + self.b * cython.cast(u64, i)) & _U64_MAX
        self.a = 0
        self.b = 0

    @cython.cfunc
    def store(self, i0: i64, n: i64, src: np.ndarray | None, s0: i64, u: u64) -> None:
        """Pages ``[i0, i0 + n)`` now own values ``src[s0:s0 + n]`` (``u`` for all if ``src`` is None)."""
        j: i64
        na: u64
        nb: u64
        ok: cython.bint
        sv: U64View
        if src is not None:
            sv = src
        # the values the write leaves as (a, b) if affine in the page index
        if src is None:
            na = u
            nb = 0
            ok = True
        elif n == 1:
            na = _u(sv[s0])
            nb = 0
            ok = True
        else:
            nb = (_u(sv[s0 + 1]) - _u(sv[s0])) & _U64_MAX
            na = (_u(sv[s0]) - nb * cython.cast(u64, i0)) & _U64_MAX
            ok = True
            for j in range(n):
                if _u(sv[s0 + j]) != (na + nb * cython.cast(u64, i0 + j)) & _U64_MAX:
                    ok = False
                    break
        covers: cython.bint = self.nown == 0 or self._owned_in(i0, n) == self.nown
        fits: cython.bint = False
        if self.vals is None and not covers:
            # the other owned pages keep a + b * i: do the new values continue it?
            fits = True
            for j in range(n):
                if (u if src is None else _u(sv[s0 + j])) != (
                    self.a + self.b * cython.cast(u64, i0 + j)
                ) & _U64_MAX:
                    fits = False
                    break
        if covers and ok:
            # every page owned afterwards reads na + nb * i: no array
            self.vals = None
            self.a = na
            self.b = nb
        elif not fits:
            self._materialize()
            assert self.vals is not None
            v: U64View = self.vals
            for j in range(n):
                v[i0 + j] = u if src is None else sv[s0 + j]
        self._own(i0, n, True)
        self._lazy(i0, n, False)

    @cython.cfunc
    @cython.exceptval(-1, check=True)
    def _owned_in(self, i0: i64, n: i64) -> i64:
        """Owned pages in ``[i0, i0 + n)``."""
        if self.own is None:
            return n if self.nown == self.per else 0
        return self._count(self.own, i0, n)

    @cython.cfunc
    def clone(self) -> ValueTable:
        t = ValueTable(self.per)
        t.nown = self.nown
        t.nlazy = self.nlazy
        t.a = self.a
        t.b = self.b
        t.vals = None if self.vals is None else np.array(self.vals)
        t.own = None if self.own is None else np.array(self.own)
        t.lazy = None if self.lazy is None else np.array(self.lazy)
        return t

    @cython.cfunc
    @cython.exceptval(-1, check=True)
    def contains(self, v: u64) -> cython.bint:
        """Does an owned page hold ``v``."""
        i: i64
        for i in range(self.per):  # noqa: SIM110 - a C loop
            if self.has(i) and self.value(i) == v:
                return True
        return False


@cython.final
@cython.cclass
class ValueShadow:
    """What one process (by virtual page) or file (by page index) should read.

    ``state(page)``: bit 0 owned (its value in ``last``), bit 1 lazyfree.
    """

    def __init__(self, per: i64) -> None:
        self.tabs: dict[int, ValueTable] = {}
        self.per = per
        sh: i64 = 0
        while (cython.cast(i64, 1) << sh) < per:
            sh += 1
        self.shift = sh
        self.cidx = -1
        self.ctab: ValueTable | None = None
        self.last = 0

    def __repr__(self) -> str:
        return f"<ValueShadow {len(self.tabs)} tables>"

    def nbytes(self) -> int:
        """Memory kept (shared tables counted once per sharer, split evenly)."""
        return int(sum(t.nbytes() / t.refs + 60 for t in self.tabs.values()))

    @cython.cfunc
    def _tab(self, idx: i64) -> ValueTable | None:
        if idx != self.cidx:
            self.cidx = idx
            self.ctab = self.tabs.get(idx)
        return self.ctab

    @cython.cfunc
    def _mine(self, idx: i64) -> ValueTable:
        """Table ``idx``, created, or copied first if shared."""
        t = self._tab(idx)
        if t is None:
            t = ValueTable(self.per)
            self.tabs[idx] = t
        elif t.refs > 1:
            t.refs -= 1
            t = t.clone()
            self.tabs[idx] = t
        self.ctab = t
        return t

    @cython.cfunc
    def _drop(self, idx: i64) -> None:
        t: ValueTable = self.tabs.pop(idx)
        t.refs -= 1
        self.cidx = -1
        self.ctab = None

    @cython.ccall
    def set(self, vpn: i64, n: i64, values: object) -> None:
        """Pages ``[vpn, vpn + n)`` own ``values`` (an int, or n u64s)."""
        src: np.ndarray | None = None
        u: u64 = 0
        if isinstance(values, np.ndarray):
            src = np.ascontiguousarray(values, dtype=np.uint64)
        else:
            u = cython.cast(u64, int(values) & _U64_MAX)  # type: ignore[call-overload]
        per: i64 = self.per
        i: i64 = 0
        c: i64
        off: i64
        t: ValueTable
        while i < n:
            off = (vpn + i) & (per - 1)
            c = min(per - off, n - i)
            t = self._mine((vpn + i) >> self.shift)
            t.store(off, c, src, i, u)
            i += c

    @cython.ccall
    def forget(self, vpn: i64, n: i64) -> None:
        """Pages ``[vpn, vpn + n)`` no longer own a value (unmapped, DONTNEED)."""
        self._range(vpn, n, 0)

    @cython.ccall
    def mark_lazy(self, vpn: i64, n: i64, on: cython.bint) -> None:
        """MADV_FREE (``on``): owned pages may read zero until written again."""
        self._range(vpn, n, 1 if on else 2)

    def _range(self, vpn: int, n: int, op: int) -> None:
        if n <= 0:
            return
        per = self.per
        first, last = vpn >> self.shift, (vpn + n - 1) >> self.shift
        if last - first + 1 > len(self.tabs):
            idxs = sorted(t for t in self.tabs if first <= t <= last)
        else:
            idxs = [t for t in range(first, last + 1) if t in self.tabs]
        for t in idxs:
            lo = max(vpn, t * per) - t * per
            hi = min(vpn + n, (t + 1) * per) - t * per
            if op == 0 and lo == 0 and hi == per:
                self._drop(t)
                continue
            tab = self._mine(t)
            if op == 0:
                tab._own(lo, hi - lo, False)
                tab._lazy(lo, hi - lo, False)
                if tab.nown == 0 and tab.nlazy == 0:
                    self._drop(t)
            else:
                tab._lazy(lo, hi - lo, op == 1)

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def state(self, vpn: i64) -> i64:
        """Bit 0: page ``vpn`` owns a value (then in ``last``); bit 1: lazyfree."""
        t = self._tab(vpn >> self.shift)
        if t is None:
            return 0
        i: i64 = vpn & (self.per - 1)
        s: i64 = 0
        if t.has(i):
            self.last = t.value(i)
            s = 1
        if t.nlazy and t.is_lazy(i):
            s |= 2
        return s

    @cython.ccall
    def copy(self) -> ValueShadow:
        """A shadow sharing every table with this one (fork)."""
        s = ValueShadow(self.per)
        s.tabs = dict(self.tabs)
        t: ValueTable
        for x in s.tabs.values():
            t = x
            t.refs += 1
        return s

    @cython.ccall
    def release(self) -> None:
        """Forget every table (the process exited)."""
        t: ValueTable
        for x in self.tabs.values():
            t = x
            t.refs -= 1
        self.tabs = {}
        self.cidx = -1
        self.ctab = None

    @cython.ccall
    @cython.exceptval(-1, check=True)
    def contains(self, v: u64) -> cython.bint:
        """Does an owned page hold ``v`` (messages only: a scan)."""
        t: ValueTable
        for x in self.tabs.values():
            t = x
            if t.contains(v):
                return True
        return False

    def get(self, vpn: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(values, owned) of pages ``[vpn, vpn + n)`` (tests)."""
        vals = np.zeros(n, dtype=np.uint64)
        own = np.zeros(n, dtype=bool)
        for j in range(n):
            if self.state(vpn + j) & 1:
                vals[j] = self.last
                own[j] = True
        return vals, own

    def get_lazy(self, vpn: int, n: int) -> np.ndarray:
        """Lazyfree flags of pages ``[vpn, vpn + n)`` (tests)."""
        return np.array([bool(self.state(vpn + j) & 2) for j in range(n)], dtype=bool)
