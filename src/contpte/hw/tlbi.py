"""TLB maintenance instructions and barriers: int codes, Arm names, counters.

The kernel issues a TLBI for every page it flushes; parsing an Arm name per
instruction would cost more than executing it.  Compiled callers use the
codes below (C constants, cimported from ``contpte/hw/tlbi.pxd``); Python
callers and messages use the names (``"VALE1IS"``, ``"ish"``).

An op code is a base operation (bits [3:0]) ORed with a shareability:
``TLBI_IS`` (Inner Shareable, broadcast to every PE of the domain) or
``TLBI_OS`` (Outer Shareable, the same in this model); neither is the local
form.  ``TLBI_VALE1IS == TLBI_VALE1 | TLBI_IS``.  The x86 forms (INVLPG,
INVPCID) are ops of their own, always local.

Base operations (Arm ARM D8.17.5): ``VAE1`` by VA and ASID, ``VALE1`` the
same for leaf entries only, ``VAAE1``/``VAALE1`` by VA for any ASID,
``ASIDE1`` every entry of an ASID, ``VMALLE1`` every entry; with
FEAT_TLBIRANGE the ``R`` forms take a range operand.

DSB domains (D8.17.8), coded so that the ``st`` forms (which order stores
only and complete no TLBI) are the odd codes.

Compiled (docs/core.md).
"""

from __future__ import annotations

import cython

from ..errors import ModelUsageError

if not cython.compiled:
    from ..cdefs import i64

__all__ = [
    "TLBI_VAE1",
    "TLBI_VALE1",
    "TLBI_VAAE1",
    "TLBI_VAALE1",
    "TLBI_ASIDE1",
    "TLBI_VMALLE1",
    "TLBI_RVAE1",
    "TLBI_RVALE1",
    "TLBI_RVAAE1",
    "TLBI_RVAALE1",
    "TLBI_INVLPG",
    "TLBI_INVPCID",
    "TLBI_IS",
    "TLBI_OS",
    "TLBI_VAE1IS",
    "TLBI_VALE1IS",
    "TLBI_VAAE1IS",
    "TLBI_VAALE1IS",
    "TLBI_ASIDE1IS",
    "TLBI_VMALLE1IS",
    "TLBI_RVAE1IS",
    "TLBI_RVALE1IS",
    "TLBI_RVAAE1IS",
    "TLBI_RVAALE1IS",
    "SCOPE_VA",
    "SCOPE_ASID",
    "SCOPE_ALL",
    "DSB_ISH",
    "DSB_ISHST",
    "DSB_NSH",
    "DSB_NSHST",
    "DSB_OSH",
    "DSB_OSHST",
    "DSB_SY",
    "DSB_ST",
    "DSB_DOMAINS",
    "TLBI_NCODES",
    "tlbi_valid",
    "tlbi_base",
    "tlbi_broadcast",
    "tlbi_scope",
    "tlbi_by_asid",
    "tlbi_last_level",
    "tlbi_is_range",
    "TLBI_OPS",
    "RANGE_TLBI_OPS",
    "tlbi_code",
    "tlbi_name",
    "dsb_code",
    "tlbi_range_pages",
]

# Base operations (bits [3:0] of an op code).
TLBI_VAE1 = cython.declare(i64, 0)
TLBI_VALE1 = cython.declare(i64, 1)
TLBI_VAAE1 = cython.declare(i64, 2)
TLBI_VAALE1 = cython.declare(i64, 3)
TLBI_ASIDE1 = cython.declare(i64, 4)
TLBI_VMALLE1 = cython.declare(i64, 5)
TLBI_RVAE1 = cython.declare(i64, 6)
TLBI_RVALE1 = cython.declare(i64, 7)
TLBI_RVAAE1 = cython.declare(i64, 8)
TLBI_RVAALE1 = cython.declare(i64, 9)
TLBI_INVLPG = cython.declare(i64, 10)
TLBI_INVPCID = cython.declare(i64, 11)
# Shareability.
TLBI_IS = cython.declare(i64, 16)
TLBI_OS = cython.declare(i64, 32)
# The broadcast forms the kernel issues.
TLBI_VAE1IS = cython.declare(i64, 0 | 16)
TLBI_VALE1IS = cython.declare(i64, 1 | 16)
TLBI_VAAE1IS = cython.declare(i64, 2 | 16)
TLBI_VAALE1IS = cython.declare(i64, 3 | 16)
TLBI_ASIDE1IS = cython.declare(i64, 4 | 16)
TLBI_VMALLE1IS = cython.declare(i64, 5 | 16)
TLBI_RVAE1IS = cython.declare(i64, 6 | 16)
TLBI_RVALE1IS = cython.declare(i64, 7 | 16)
TLBI_RVAAE1IS = cython.declare(i64, 8 | 16)
TLBI_RVAALE1IS = cython.declare(i64, 9 | 16)
#: Number of op codes (bases x shareabilities).
TLBI_NCODES = cython.declare(i64, 64)

#: What a TLBI reaches: one VA range, every entry of an ASID, every entry.
SCOPE_VA = cython.declare(i64, 0)
SCOPE_ASID = cython.declare(i64, 1)
SCOPE_ALL = cython.declare(i64, 2)

DSB_ISH = cython.declare(i64, 0)
DSB_ISHST = cython.declare(i64, 1)
DSB_NSH = cython.declare(i64, 2)
DSB_NSHST = cython.declare(i64, 3)
DSB_OSH = cython.declare(i64, 4)
DSB_OSHST = cython.declare(i64, 5)
DSB_SY = cython.declare(i64, 6)
DSB_ST = cython.declare(i64, 7)

DSB_DOMAINS = ("ish", "ishst", "nsh", "nshst", "osh", "oshst", "sy", "st")
"""DSB domain names, indexed by code."""

_BASES = ("VAE1", "VALE1", "VAAE1", "VAALE1", "ASIDE1", "VMALLE1", "RVAE1", "RVALE1", "RVAAE1", "RVAALE1")
_X86 = ("INVLPG", "INVPCID")

#: Non-range TLBI operations: base name -> (scope, by-ASID, last-level only).
TLBI_OPS: dict[str, tuple[str, bool, bool]] = {
    "VAE1": ("va", True, False),
    "VALE1": ("va", True, True),
    "VAAE1": ("va", False, False),
    "VAALE1": ("va", False, True),
    "ASIDE1": ("asid", True, False),
    "VMALLE1": ("all", False, False),
}
#: Range TLBI operations (FEAT_TLBIRANGE): base name -> (by-ASID, last-level only).
RANGE_TLBI_OPS: dict[str, tuple[bool, bool]] = {
    "RVAE1": (True, False),
    "RVALE1": (True, True),
    "RVAAE1": (False, False),
    "RVAALE1": (False, True),
}


def _names() -> list[str]:
    out = [""] * 64
    for b, name in enumerate(_BASES):
        out[b] = name
        out[b | 16] = name + "IS"
        out[b | 32] = name + "OS"
    for b, name in enumerate(_X86, 10):
        out[b] = name
    return out


_NAMES = _names()
_CODES = {name: code for code, name in enumerate(_NAMES) if name}


@cython.ccall
@cython.exceptval(check=False)
def tlbi_valid(op: i64) -> cython.bint:
    """Is ``op`` a TLBI op code?"""
    if op < 0 or op >= TLBI_NCODES:
        return False
    b: i64 = op & 15
    if b <= TLBI_RVAALE1:
        return (op >> 4) <= 2  # local, IS or OS (not both)
    if b <= TLBI_INVPCID:
        return (op >> 4) == 0  # x86 forms are local
    return False


@cython.ccall
@cython.inline
@cython.exceptval(check=False)
def tlbi_base(op: i64) -> i64:
    """The base operation of op code ``op``."""
    return op & 15


@cython.ccall
@cython.inline
@cython.exceptval(check=False)
def tlbi_broadcast(op: i64) -> cython.bint:
    """``op`` has an IS or OS suffix (reaches every PE)."""
    return (op & (TLBI_IS | TLBI_OS)) != 0


@cython.ccall
@cython.exceptval(check=False)
def tlbi_scope(op: i64) -> i64:
    """``SCOPE_VA``, ``SCOPE_ASID`` or ``SCOPE_ALL`` of op code ``op``."""
    b: i64 = op & 15
    if b in (TLBI_ASIDE1, TLBI_INVPCID):
        return SCOPE_ASID
    if b == TLBI_VMALLE1:
        return SCOPE_ALL
    return SCOPE_VA


@cython.ccall
@cython.exceptval(check=False)
def tlbi_by_asid(op: i64) -> cython.bint:
    """``op`` matches entries of one ASID only (not the VAA/VMALL forms)."""
    b: i64 = op & 15
    return b not in (TLBI_VAAE1, TLBI_VAALE1, TLBI_RVAAE1, TLBI_RVAALE1, TLBI_VMALLE1)


@cython.ccall
@cython.exceptval(check=False)
def tlbi_last_level(op: i64) -> cython.bint:
    """``op`` is a leaf-only (``L``) form."""
    b: i64 = op & 15
    return b in (TLBI_VALE1, TLBI_VAALE1, TLBI_RVALE1, TLBI_RVAALE1)


@cython.ccall
@cython.exceptval(check=False)
def tlbi_is_range(op: i64) -> cython.bint:
    """``op`` is a FEAT_TLBIRANGE form."""
    b: i64 = op & 15
    return TLBI_RVAE1 <= b <= TLBI_RVAALE1


def tlbi_code(name: str) -> int:
    """The op code of TLBI ``name`` (``"VALE1IS"``); ModelUsageError if unknown."""
    code = _CODES.get(name)
    if code is None:
        raise ModelUsageError(f"unknown TLBI operation {name!r}")
    return code


def tlbi_name(op: int) -> str:
    """The Arm (or x86) name of op code ``op``."""
    if not 0 <= op < 64 or not _NAMES[op]:
        raise ModelUsageError(f"no TLBI op code {op}")
    return _NAMES[op]


def dsb_code(domain: str) -> int:
    """The code of DSB ``domain`` (``"ish"``); ModelUsageError if unknown."""
    try:
        return DSB_DOMAINS.index(domain)
    except ValueError:
        raise ModelUsageError(
            f"unknown DSB domain {domain!r}; expected one of {', '.join(DSB_DOMAINS)}"
        ) from None


@cython.ccall
@cython.exceptval(-1, check=True)
def tlbi_range_pages(scale: i64, num: i64) -> i64:
    """Pages a range TLBI covers: ``(NUM+1) * 2^(5*SCALE+1)`` (Arm ARM D8.17.5.2)."""
    if not 0 <= scale <= 3 or not 0 <= num <= 31:
        raise ModelUsageError(f"TLBI range operand out of range: scale={scale} (0..3), num={num} (0..31)")
    return (num + 1) << (5 * scale + 1)


if cython.compiled:
    globals().update(
        TLBI_VAE1=TLBI_VAE1,
        TLBI_VALE1=TLBI_VALE1,
        TLBI_VAAE1=TLBI_VAAE1,
        TLBI_VAALE1=TLBI_VAALE1,
        TLBI_ASIDE1=TLBI_ASIDE1,
        TLBI_VMALLE1=TLBI_VMALLE1,
        TLBI_RVAE1=TLBI_RVAE1,
        TLBI_RVALE1=TLBI_RVALE1,
        TLBI_RVAAE1=TLBI_RVAAE1,
        TLBI_RVAALE1=TLBI_RVAALE1,
        TLBI_INVLPG=TLBI_INVLPG,
        TLBI_INVPCID=TLBI_INVPCID,
        TLBI_IS=TLBI_IS,
        TLBI_OS=TLBI_OS,
        TLBI_VAE1IS=TLBI_VAE1IS,
        TLBI_VALE1IS=TLBI_VALE1IS,
        TLBI_VAAE1IS=TLBI_VAAE1IS,
        TLBI_VAALE1IS=TLBI_VAALE1IS,
        TLBI_ASIDE1IS=TLBI_ASIDE1IS,
        TLBI_VMALLE1IS=TLBI_VMALLE1IS,
        TLBI_RVAE1IS=TLBI_RVAE1IS,
        TLBI_RVALE1IS=TLBI_RVALE1IS,
        TLBI_RVAAE1IS=TLBI_RVAAE1IS,
        TLBI_RVAALE1IS=TLBI_RVAALE1IS,
        TLBI_NCODES=TLBI_NCODES,
        SCOPE_VA=SCOPE_VA,
        SCOPE_ASID=SCOPE_ASID,
        SCOPE_ALL=SCOPE_ALL,
        DSB_ISH=DSB_ISH,
        DSB_ISHST=DSB_ISHST,
        DSB_NSH=DSB_NSH,
        DSB_NSHST=DSB_NSHST,
        DSB_OSH=DSB_OSH,
        DSB_OSHST=DSB_OSHST,
        DSB_SY=DSB_SY,
        DSB_ST=DSB_ST,
    )
