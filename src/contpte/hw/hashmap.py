"""An open-addressing hash map from non-negative i64 keys to i64 values.

The hardware's lookup structures (a TLB's entries by tag and address, the
rule checker's pending break records by block) need a map that compiled
code probes without boxing ints into Python objects: a Python ``dict``
costs 30-50 ns per probe from C, this one 3-10 ns.

Linear probing at a load factor of at most 1/2, backward-shift deletion
(no tombstones), keys mixed by a 64-bit multiplicative hash.  Key -1 marks
an empty slot, so keys must be >= 0.

Models nothing; model-internal.  Compiled (docs/core.md).
"""

from __future__ import annotations

import cython
import numpy as np

from ..errors import ModelUsageError

if not cython.compiled:
    from ..cdefs import i64, u64

__all__ = ["I64Map"]

#: Fibonacci hashing multiplier (2^64 / golden ratio).
_MIX = cython.declare(u64, 0x9E3779B97F4A7C15)
_U64_MAX = cython.declare(u64, 0xFFFFFFFFFFFFFFFF)


@cython.cfunc
@cython.exceptval(check=False)
def _log2(n: i64) -> i64:
    b: i64 = 0
    while (cython.cast(i64, 1) << b) < n:
        b += 1
    return b


@cython.final
@cython.cclass
class I64Map:
    """``key -> value`` for keys >= 0; ``get``/``set``/``pop`` at C speed."""

    def __init__(self, capacity: i64 = 16) -> None:
        cap: i64 = 16
        while cap < 2 * capacity:
            cap *= 2
        self.keys = np.full(cap, -1, dtype=np.int64)
        self.vals = np.zeros(cap, dtype=np.int64)
        self.mask = cap - 1
        self.n = 0
        self.bits = _log2(cap)

    def __len__(self) -> int:
        return int(self.n)

    @cython.cfunc
    @cython.inline
    @cython.exceptval(check=False)
    def _home(self, key: i64) -> i64:
        h: u64 = (cython.cast(u64, key) * _MIX) & _U64_MAX
        return cython.cast(i64, h >> (64 - self.bits))

    @cython.ccall
    @cython.exceptval(-2, check=True)
    def find(self, key: i64) -> i64:
        """The slot holding ``key``, or -1."""
        i: i64 = self._home(key)
        k: i64
        while True:
            k = self.keys[i]
            if k == key:
                return i
            if k == -1:
                return -1
            i = (i + 1) & self.mask

    @cython.ccall
    @cython.exceptval(-2, check=True)
    def get(self, key: i64, default: i64) -> i64:
        """The value of ``key``, or ``default``."""
        i: i64 = self._home(key)
        k: i64
        while True:
            k = self.keys[i]
            if k == key:
                return int(self.vals[i])
            if k == -1:
                return default
            i = (i + 1) & self.mask

    @cython.ccall
    def set(self, key: i64, val: i64) -> None:
        """Map ``key`` to ``val`` (inserted or replaced)."""
        self.put(key, val)

    @cython.ccall
    @cython.exceptval(-2, check=True)
    def put(self, key: i64, val: i64) -> i64:
        """Map ``key`` to ``val``; the value it replaced, or -1 (one probe sequence)."""
        if key < 0:
            raise ModelUsageError(f"I64Map keys must be >= 0, not {key}")
        i: i64 = self._home(key)
        k: i64
        while True:
            k = self.keys[i]
            if k == key:
                old: i64 = self.vals[i]
                self.vals[i] = val
                return old
            if k == -1:
                break
            i = (i + 1) & self.mask
        self.keys[i] = key
        self.vals[i] = val
        self.n += 1
        if 2 * self.n > self.mask + 1:
            self._rehash(2 * (self.mask + 1))
        return -1

    @cython.ccall
    @cython.exceptval(-2, check=True)
    def pop(self, key: i64, default: i64) -> i64:
        """Remove ``key``; its value, or ``default`` if absent."""
        i: i64 = self.find(key)
        if i < 0:
            return default
        v: i64 = int(self.vals[i])
        self._delete_slot(i)
        return v

    @cython.cfunc
    def _delete_slot(self, i: i64) -> None:
        # Backward-shift deletion: move later members of the probe run into
        # the hole unless their home lies cyclically in (hole, j].
        mask: i64 = self.mask
        j: i64 = i
        k: i64
        h: i64
        while True:
            j = (j + 1) & mask
            k = self.keys[j]
            if k == -1:
                break
            h = self._home(k)
            if i <= j:
                if i < h <= j:
                    continue
            elif h <= j or h > i:
                continue
            self.keys[i] = k
            self.vals[i] = self.vals[j]
            i = j
        self.keys[i] = -1
        self.n -= 1

    @cython.cfunc
    def _rehash(self, cap: i64) -> None:
        old_k = self.keys
        old_v = self.vals
        n: i64 = old_k.shape[0]
        self.keys = np.full(cap, -1, dtype=np.int64)
        self.vals = np.zeros(cap, dtype=np.int64)
        self.mask = cap - 1
        self.bits = _log2(cap)
        self.n = 0
        s: i64
        for s in range(n):
            if old_k[s] != -1:
                self.set(old_k[s], old_v[s])

    @cython.ccall
    def clear(self) -> None:
        """Remove every key (keeps the capacity)."""
        i: i64
        if self.n:
            for i in range(self.mask + 1):
                self.keys[i] = -1
            self.n = 0

    def items(self) -> list[tuple[int, int]]:
        """Every (key, value), in slot order (tests and messages)."""
        ks = np.asarray(self.keys)
        vs = np.asarray(self.vals)
        return [(int(ks[i]), int(vs[i])) for i in np.flatnonzero(ks != -1).tolist()]
