"""Differential state machines: one random syscall sequence, several kernels.

The same sequence runs on every machine of a class in lockstep; they must
agree on everything a process can observe (values read, errors, pagemap
present/order/writable/exclusive, which pages share a frame, RSS, maps,
mapcounts and refcounts), and each must match the test's model.  Only cost
may differ.  The ``slow`` soak versions run longer.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings

from .syscalls import SyscallMachine

FAST = settings(
    max_examples=15, stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
SOAK = settings(
    max_examples=300, stateful_step_count=80, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


class BatchForkArm64(SyscallMachine):
    """Batched fork (copy_present_ptes over a folio's run) vs one PTE at a time, on arm64."""

    configs = ({"arch": "arm64", "batch_fork": True}, {"arch": "arm64", "batch_fork": False})


class BatchForkGeneric(SyscallMachine):
    """Batched fork vs one PTE at a time on the generic backend."""

    configs = ({"arch": "generic", "batch_fork": True}, {"arch": "generic", "batch_fork": False})


class Arm64VsGeneric(SyscallMachine):
    """The arm64 backend (contpte) vs the generic one: only cost may differ."""

    configs = ({"arch": "arm64"}, {"arch": "generic"})


class ContpteVariants(SyscallMachine):
    """arm64 with contpte off, and with the pre-series fork (unfold on every wrprotect), vs mainline."""

    configs = (
        {"arch": "arm64"},
        {"arch": "arm64", "contpte": False},
        {"arch": "arm64", "wrprotect_ptes_opt": False, "teardown_opt": False, "batch_fork": False},
    )


TestBatchForkArm64 = BatchForkArm64.TestCase
TestBatchForkArm64.settings = FAST
TestBatchForkGeneric = BatchForkGeneric.TestCase
TestBatchForkGeneric.settings = FAST
TestArm64VsGeneric = Arm64VsGeneric.TestCase
TestArm64VsGeneric.settings = FAST
TestContpteVariants = ContpteVariants.TestCase
TestContpteVariants.settings = FAST


# Soak versions: ``pytest -m slow tests/stateful``.


class BatchForkArm64Soak(BatchForkArm64):
    pass


TestBatchForkArm64Soak = pytest.mark.slow(BatchForkArm64Soak.TestCase)
TestBatchForkArm64Soak.settings = SOAK


class BatchForkGenericSoak(BatchForkGeneric):
    pass


TestBatchForkGenericSoak = pytest.mark.slow(BatchForkGenericSoak.TestCase)
TestBatchForkGenericSoak.settings = SOAK


class Arm64VsGenericSoak(Arm64VsGeneric):
    pass


TestArm64VsGenericSoak = pytest.mark.slow(Arm64VsGenericSoak.TestCase)
TestArm64VsGenericSoak.settings = SOAK


class ContpteVariantsSoak(ContpteVariants):
    pass


TestContpteVariantsSoak = pytest.mark.slow(ContpteVariantsSoak.TestCase)
TestContpteVariantsSoak.settings = SOAK
