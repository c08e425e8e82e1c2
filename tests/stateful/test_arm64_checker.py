"""Random syscalls on arm64 under the Arm ARM rule checker and an adversarial TLB.

The syscall rules, the outcome model and the invariants are the shared
``SyscallMachine`` (``syscalls.py``); this machine runs them on arm64 with
``check=True`` (the rule checker watches every descriptor store, TLBI and
DSB; the validators run after every syscall), ``adversarial_tlb=True``
(TLBs never evict, so a missing invalidation stays visible as a stale
translation), four CPUs (processes are placed round-robin, so forks,
CoW faults and teardowns broadcast to CPUs holding entries), 16K and 64K
mTHP folios biased towards ``always`` and PMD THPs through
``madvise(hugepage)``.  It adds rules aimed at contpte's corner cases: a
single-page mprotect at the first, a middle or the last entry of a 64K
block (unfold, and refold when the last entry is rewritten) and a
single-page write inside a block (CoW of one page, hardware dirty update on
one member).  The invariant is ``m.check()`` (plus the shared ones).
"""

from __future__ import annotations

import errno

import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import initialize, precondition, rule

import contpte
from contpte.mm.shmem import file_initial_value

from .syscalls import ARENA, ARENA_PAGES, FILES, NONE, PROTS, PS, ProcModel, SyscallMachine

FAST = settings(
    max_examples=25, stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
SOAK = settings(
    max_examples=300, stateful_step_count=80, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

BLOCK_PAGES = 16
"""CONT_PTES with 4K pages."""


class Arm64CheckerSyscalls(SyscallMachine):
    """The shared syscall machine on arm64, rule checker on, adversarial TLB, 4 CPUs."""

    configs = ({"arch": "arm64"},)

    @initialize(
        mthp=st.fixed_dictionaries(
            {
                "16K": st.sampled_from(["always", "always", "never", "inherit"]),
                "64K": st.sampled_from(["always", "always", "always", "madvise", "never"]),
                "2M": st.sampled_from(["inherit", "madvise", "never"]),
            }
        ),
        thp=st.sampled_from(["madvise", "madvise", "always", "never"]),
        seed=st.integers(0, 2**16),
    )
    def boot(self, mthp: dict[str, str], thp: str, seed: int) -> None:  # type: ignore[override]
        for cfg in self.configs:
            m = contpte.Machine(
                memory="64M", cpus=4, mthp=mthp, thp=thp, check=True, adversarial_tlb=True, seed=seed, **cfg
            )
            self.machines.append(m)
            self.files.append([m.open_file(name, pages * PS, folio_size=fs) for name, pages, fs in FILES])
        for obj, (_, pages, _) in enumerate(FILES):
            fid = self.files[0][obj].id
            self.model.objects[obj] = np.array(
                [file_initial_value(fid, i) for i in range(pages)], dtype=np.uint64
            )
        self._spawn()

    def _block_page(self, data: st.DataObject, pm: ProcModel) -> int:
        """A page at entry 0, a middle entry or the last entry of a block, mapped if possible."""
        mapped = np.nonzero(pm.kind != NONE)[0]
        if len(mapped) and data.draw(st.booleans(), label="mapped block"):
            block = int(mapped[data.draw(st.integers(0, len(mapped) - 1), label="page")]) // BLOCK_PAGES
        else:
            block = data.draw(st.integers(0, ARENA_PAGES // BLOCK_PAGES - 1), label="block")
        entry = data.draw(st.sampled_from([0, 5, BLOCK_PAGES - 1]), label="entry")
        return block * BLOCK_PAGES + entry

    @precondition(lambda self: len(self.procs) > 0)
    @rule(data=st.data(), prot=st.sampled_from(["r", "rw", "rw"]))
    def mprotect_block_entry(self, data: st.DataObject, prot: str) -> None:
        """mprotect one page of a block: unfolds it; the last entry made consistent refolds it."""
        k = self.pick(data)
        pm = self.model.procs[k]
        i = self._block_page(data, pm)
        out = self.run(lambda m: self.procs[k][m].mprotect(ARENA + i * PS, PS, prot))
        if pm.kind[i] == NONE:
            assert out == ("errno", errno.ENOMEM), out
            return
        assert out == ("ok", None), out
        pm.prot[i] = PROTS[prot]

    @precondition(lambda self: len(self.procs) > 0)
    @rule(data=st.data())
    def write_block_entry(self, data: st.DataObject) -> None:
        """Write one page of a block (CoW of one page, or a hardware dirty update on one member)."""
        k = self.pick(data)
        pm = self.model.procs[k]
        i = self._block_page(data, pm)
        value = self.next_values(1, data)
        out = self.run(lambda m: self.procs[k][m].write(ARENA + i * PS, PS, value))
        bad = self.model.first_fault(pm, i, 1, write=True)
        if bad is None:
            vals = value if isinstance(value, np.ndarray) else np.full(1, value, dtype=np.uint64)
            self.model.write(pm, i, vals)
            assert out == ("ok", None), out
        else:
            assert out == ("segv", ARENA + i * PS, bad[1]), out


TestArm64Checker = Arm64CheckerSyscalls.TestCase
TestArm64Checker.settings = FAST


@pytest.mark.slow
class TestArm64CheckerSoak(Arm64CheckerSyscalls.TestCase):  # type: ignore[name-defined,misc]
    settings = SOAK
