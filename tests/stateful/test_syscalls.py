"""Random syscall sequences on one machine, checked against the test's model.

Every validator runs after every syscall (``check=True``) and again as an
invariant; outcomes (values read, OSError errnos, SIGSEGVs) must be what the
model in ``syscalls.py`` predicts.  The ``slow`` soak versions run longer.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings

from .syscalls import SyscallMachine

FAST = settings(
    max_examples=12, stateful_step_count=25, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
SOAK = settings(
    max_examples=300, stateful_step_count=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


class GenericSyscalls(SyscallMachine):
    configs = ({"arch": "generic"},)


class Arm64Syscalls(SyscallMachine):
    configs = ({"arch": "arm64"},)


TestGenericSyscalls = GenericSyscalls.TestCase
TestGenericSyscalls.settings = FAST
TestArm64Syscalls = Arm64Syscalls.TestCase
TestArm64Syscalls.settings = FAST


# Soak versions: ``pytest -m slow tests/stateful``.


class GenericSyscallsSoak(GenericSyscalls):
    pass


TestGenericSyscallsSoak = pytest.mark.slow(GenericSyscallsSoak.TestCase)
TestGenericSyscallsSoak.settings = SOAK


class Arm64SyscallsSoak(Arm64Syscalls):
    pass


TestArm64SyscallsSoak = pytest.mark.slow(Arm64SyscallsSoak.TestCase)
TestArm64SyscallsSoak.settings = SOAK
