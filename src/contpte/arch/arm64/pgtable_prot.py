"""arm64 descriptor bits and page protections.

Models: arch/arm64/include/asm/pgtable-hwdef.h and pgtable-prot.h (Linux
v6.12), arch/arm64/mm/mmap.c ``protection_map[]`` and the swap-entry layout
of asm/pgtable.h.  ``pte_t``/``pgprot_t`` values are u64.

Compiled: every constant is a C variable (``cython.declare``), published to
Python at the end of the module (docs/core.md).
"""

from __future__ import annotations

import cython

if not cython.compiled:
    from ...cdefs import u64

__all__ = [
    "PTE_VALID",
    "PTE_TABLE_BIT",
    "PTE_TYPE_PAGE",
    "PMD_TYPE_SECT",
    "PTE_ATTRINDX_MASK",
    "PTE_USER",
    "PTE_RDONLY",
    "PTE_SHARED",
    "PTE_AF",
    "PTE_NG",
    "PTE_GP",
    "PTE_DBM",
    "PTE_CONT",
    "PTE_PXN",
    "PTE_UXN",
    "PTE_PO_IDX_MASK",
    "PTE_WRITE",
    "PTE_SWP_EXCLUSIVE",
    "PTE_SWP_UFFD_WP",
    "PTE_DIRTY",
    "PTE_SPECIAL",
    "PTE_DEVMAP",
    "PTE_UFFD_WP",
    "PTE_PRESENT_INVALID",
    "PMD_PRESENT_INVALID",
    "PAGE_NONE",
    "PAGE_SHARED",
    "PAGE_SHARED_EXEC",
    "PAGE_READONLY",
    "PAGE_READONLY_EXEC",
    "VM_NONE",
    "VM_READ",
    "VM_WRITE",
    "VM_EXEC",
    "VM_SHARED",
    "PROTECTION_MAP",
    "CONT_PTES_BY_SHIFT",
    "U64_MAX",
]

U64_MAX = cython.declare(u64, (1 << 64) - 1)

# --- pgtable-hwdef.h: hardware descriptor bits (level 3, 64-bit, non-D128) ---
PTE_VALID = cython.declare(u64, 1 << 0)
PTE_TABLE_BIT = cython.declare(u64, 1 << 1)
PTE_TYPE_PAGE = cython.declare(u64, 3 << 0)  # level-3 page descriptor: bits[1:0] = 0b11
PMD_TYPE_SECT = cython.declare(u64, 1 << 0)  # level-2 block descriptor: bits[1:0] = 0b01
PTE_ATTRINDX_MASK = cython.declare(u64, 7 << 2)
PTE_USER = cython.declare(u64, 1 << 6)  # AP[1]
PTE_RDONLY = cython.declare(u64, 1 << 7)  # AP[2]: with DBM this is "not hardware-dirty"
PTE_SHARED = cython.declare(u64, 3 << 8)  # SH[1:0] inner shareable
PTE_AF = cython.declare(u64, 1 << 10)
PTE_NG = cython.declare(u64, 1 << 11)
PTE_GP = cython.declare(u64, 1 << 50)  # BTI guarded page
PTE_DBM = cython.declare(u64, 1 << 51)
PTE_CONT = cython.declare(u64, 1 << 52)
PTE_PXN = cython.declare(u64, 1 << 53)
PTE_UXN = cython.declare(u64, 1 << 54)
PTE_PO_IDX_MASK = cython.declare(u64, 7 << 60)  # POE pkey index (v6.12)

# --- pgtable-prot.h: software bits ---
PTE_WRITE = cython.declare(u64, PTE_DBM)  # software "writable" is the hardware DBM bit
PTE_SWP_EXCLUSIVE = cython.declare(u64, 1 << 2)  # only for swap ptes
PTE_SWP_UFFD_WP = cython.declare(u64, 1 << 3)  # only for swap ptes
PTE_DIRTY = cython.declare(u64, 1 << 55)
PTE_SPECIAL = cython.declare(u64, 1 << 56)
PTE_DEVMAP = cython.declare(u64, 1 << 57)
PTE_UFFD_WP = cython.declare(u64, 1 << 58)
# v6.10+ (so in v6.12): PTE_PROT_NONE (bit 58) is gone; "present but invalid"
# overlays nG, meaningful only while PTE_VALID is clear (user PTEs always
# have nG set, so a valid user PTE never looks present-invalid by mistake).
PTE_PRESENT_INVALID = cython.declare(u64, PTE_NG)
PMD_PRESENT_INVALID = cython.declare(u64, PTE_PRESENT_INVALID)

_PROT_DEFAULT = cython.declare(u64, PTE_TYPE_PAGE | PTE_AF | PTE_SHARED)
_PAGE_DEFAULT = cython.declare(u64, _PROT_DEFAULT)  # | PTE_ATTRINDX(MT_NORMAL), and MT_NORMAL == 0

PAGE_NONE = cython.declare(
    u64, (_PAGE_DEFAULT & ~PTE_VALID) | PTE_PRESENT_INVALID | PTE_RDONLY | PTE_NG | PTE_PXN | PTE_UXN
)
# Shared writable pages start clean: RDONLY|WRITE, hardware DBM makes them dirty.
PAGE_SHARED = cython.declare(
    u64, _PAGE_DEFAULT | PTE_USER | PTE_RDONLY | PTE_NG | PTE_PXN | PTE_UXN | PTE_WRITE
)
PAGE_SHARED_EXEC = cython.declare(u64, _PAGE_DEFAULT | PTE_USER | PTE_RDONLY | PTE_NG | PTE_PXN | PTE_WRITE)
PAGE_READONLY = cython.declare(u64, _PAGE_DEFAULT | PTE_USER | PTE_RDONLY | PTE_NG | PTE_PXN | PTE_UXN)
PAGE_READONLY_EXEC = cython.declare(u64, _PAGE_DEFAULT | PTE_USER | PTE_RDONLY | PTE_NG | PTE_PXN)

# include/linux/mm.h vm_flags bits.
VM_NONE = cython.declare(u64, 0)
VM_READ = cython.declare(u64, 1)
VM_WRITE = cython.declare(u64, 2)
VM_EXEC = cython.declare(u64, 4)
VM_SHARED = cython.declare(u64, 8)

# arch/arm64/mm/mmap.c protection_map[] (v6.12).  Private writable mappings
# map read-only (arm64 has no separate PAGE_COPY: it is PAGE_READONLY) so the
# first write faults and CoWs; only shared writable ones get PTE_WRITE (DBM).
PROTECTION_MAP = (
    PAGE_NONE,  # ---
    PAGE_READONLY,  # r--
    PAGE_READONLY,  # -w-
    PAGE_READONLY,  # rw-
    PAGE_READONLY_EXEC,  # --x  (PAGE_EXECONLY with Enhanced PAN; not modelled)
    PAGE_READONLY_EXEC,  # r-x
    PAGE_READONLY_EXEC,  # -wx
    PAGE_READONLY_EXEC,  # rwx
    PAGE_NONE,  # s---
    PAGE_READONLY,  # sr--
    PAGE_SHARED,  # s-w-
    PAGE_SHARED,  # srw-
    PAGE_READONLY_EXEC,  # s--x
    PAGE_READONLY_EXEC,  # sr-x
    PAGE_SHARED_EXEC,  # s-wx
    PAGE_SHARED_EXEC,  # srwx
)

# Swap entry layout (v6.10+): bits[1:0] = 0, b2 exclusive, b3 uffd-wp,
# b10:6 type, b11 (PRESENT_INVALID) = 0, b61:12 offset.
_SWP_TYPE_SHIFT = cython.declare(u64, 6)
_SWP_TYPE_BITS = cython.declare(u64, 5)
_SWP_TYPE_MASK = cython.declare(u64, (1 << _SWP_TYPE_BITS) - 1)
_SWP_OFFSET_SHIFT = cython.declare(u64, 12)
_SWP_OFFSET_BITS = cython.declare(u64, 50)
_SWP_OFFSET_MASK = cython.declare(u64, (1 << _SWP_OFFSET_BITS) - 1)

#: CONFIG_ARM64_CONT_PTE_SHIFT per granule: page_shift -> CONT_PTES.
CONT_PTES_BY_SHIFT = {12: 16, 14: 128, 16: 32}


# C constants are invisible to Python importers: publish their values.
if cython.compiled:
    globals().update(
        PTE_VALID=PTE_VALID,
        PTE_TABLE_BIT=PTE_TABLE_BIT,
        PTE_TYPE_PAGE=PTE_TYPE_PAGE,
        PMD_TYPE_SECT=PMD_TYPE_SECT,
        PTE_ATTRINDX_MASK=PTE_ATTRINDX_MASK,
        PTE_USER=PTE_USER,
        PTE_RDONLY=PTE_RDONLY,
        PTE_SHARED=PTE_SHARED,
        PTE_AF=PTE_AF,
        PTE_NG=PTE_NG,
        PTE_GP=PTE_GP,
        PTE_DBM=PTE_DBM,
        PTE_CONT=PTE_CONT,
        PTE_PXN=PTE_PXN,
        PTE_UXN=PTE_UXN,
        PTE_PO_IDX_MASK=PTE_PO_IDX_MASK,
        PTE_WRITE=PTE_WRITE,
        PTE_SWP_EXCLUSIVE=PTE_SWP_EXCLUSIVE,
        PTE_SWP_UFFD_WP=PTE_SWP_UFFD_WP,
        PTE_DIRTY=PTE_DIRTY,
        PTE_SPECIAL=PTE_SPECIAL,
        PTE_DEVMAP=PTE_DEVMAP,
        PTE_UFFD_WP=PTE_UFFD_WP,
        PTE_PRESENT_INVALID=PTE_PRESENT_INVALID,
        PMD_PRESENT_INVALID=PMD_PRESENT_INVALID,
        _PROT_DEFAULT=_PROT_DEFAULT,
        _PAGE_DEFAULT=_PAGE_DEFAULT,
        PAGE_NONE=PAGE_NONE,
        PAGE_SHARED=PAGE_SHARED,
        PAGE_SHARED_EXEC=PAGE_SHARED_EXEC,
        PAGE_READONLY=PAGE_READONLY,
        PAGE_READONLY_EXEC=PAGE_READONLY_EXEC,
        _SWP_TYPE_SHIFT=_SWP_TYPE_SHIFT,
        _SWP_TYPE_BITS=_SWP_TYPE_BITS,
        _SWP_TYPE_MASK=_SWP_TYPE_MASK,
        _SWP_OFFSET_SHIFT=_SWP_OFFSET_SHIFT,
        _SWP_OFFSET_BITS=_SWP_OFFSET_BITS,
        _SWP_OFFSET_MASK=_SWP_OFFSET_MASK,
        VM_NONE=VM_NONE,
        VM_READ=VM_READ,
        VM_WRITE=VM_WRITE,
        VM_EXEC=VM_EXEC,
        VM_SHARED=VM_SHARED,
        U64_MAX=U64_MAX,
    )
