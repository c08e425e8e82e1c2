"""arm64 descriptor bits and page protections.

Models: arch/arm64/include/asm/pgtable-hwdef.h and pgtable-prot.h (Linux
v6.12), arch/arm64/mm/mmap.c ``protection_map[]`` and the swap-entry layout
of asm/pgtable.h.  Plain Python ints (``pte_t``/``pgprot_t`` values); the
numpy twins used by vectorised loops live next to their users.
"""

from __future__ import annotations

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
]

_U64 = (1 << 64) - 1

# --- pgtable-hwdef.h: hardware descriptor bits (level 3, 64-bit, non-D128) ---
PTE_VALID = 1 << 0
PTE_TABLE_BIT = 1 << 1
PTE_TYPE_PAGE = 3 << 0  # level-3 page descriptor: bits[1:0] = 0b11
PMD_TYPE_SECT = 1 << 0  # level-2 block descriptor: bits[1:0] = 0b01
PTE_ATTRINDX_MASK = 7 << 2
PTE_USER = 1 << 6  # AP[1]
PTE_RDONLY = 1 << 7  # AP[2]: with DBM this is "not hardware-dirty"
PTE_SHARED = 3 << 8  # SH[1:0] inner shareable
PTE_AF = 1 << 10
PTE_NG = 1 << 11
PTE_GP = 1 << 50  # BTI guarded page
PTE_DBM = 1 << 51
PTE_CONT = 1 << 52
PTE_PXN = 1 << 53
PTE_UXN = 1 << 54
PTE_PO_IDX_MASK = 7 << 60  # POE pkey index (v6.12)

# --- pgtable-prot.h: software bits ---
PTE_WRITE = PTE_DBM  # software "writable" is the hardware DBM bit
PTE_SWP_EXCLUSIVE = 1 << 2  # only for swap ptes
PTE_SWP_UFFD_WP = 1 << 3  # only for swap ptes
PTE_DIRTY = 1 << 55
PTE_SPECIAL = 1 << 56
PTE_DEVMAP = 1 << 57
PTE_UFFD_WP = 1 << 58
# v6.10+ (so in v6.12): PTE_PROT_NONE (bit 58) is gone; "present but invalid"
# overlays nG, meaningful only while PTE_VALID is clear (user PTEs always
# have nG set, so a valid user PTE never looks present-invalid by mistake).
PTE_PRESENT_INVALID = PTE_NG
PMD_PRESENT_INVALID = PTE_PRESENT_INVALID

_PROT_DEFAULT = PTE_TYPE_PAGE | PTE_AF | PTE_SHARED
_PAGE_DEFAULT = _PROT_DEFAULT  # | PTE_ATTRINDX(MT_NORMAL), and MT_NORMAL == 0

PAGE_NONE = (_PAGE_DEFAULT & ~PTE_VALID) | PTE_PRESENT_INVALID | PTE_RDONLY | PTE_NG | PTE_PXN | PTE_UXN
# Shared writable pages start clean: RDONLY|WRITE, hardware DBM makes them dirty.
PAGE_SHARED = _PAGE_DEFAULT | PTE_USER | PTE_RDONLY | PTE_NG | PTE_PXN | PTE_UXN | PTE_WRITE
PAGE_SHARED_EXEC = _PAGE_DEFAULT | PTE_USER | PTE_RDONLY | PTE_NG | PTE_PXN | PTE_WRITE
PAGE_READONLY = _PAGE_DEFAULT | PTE_USER | PTE_RDONLY | PTE_NG | PTE_PXN | PTE_UXN
PAGE_READONLY_EXEC = _PAGE_DEFAULT | PTE_USER | PTE_RDONLY | PTE_NG | PTE_PXN

# include/linux/mm.h vm_flags bits.
VM_NONE, VM_READ, VM_WRITE, VM_EXEC, VM_SHARED = 0, 1, 2, 4, 8

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
_SWP_TYPE_SHIFT = 6
_SWP_TYPE_BITS = 5
_SWP_TYPE_MASK = (1 << _SWP_TYPE_BITS) - 1
_SWP_OFFSET_SHIFT = 12
_SWP_OFFSET_BITS = 50
_SWP_OFFSET_MASK = (1 << _SWP_OFFSET_BITS) - 1

#: CONFIG_ARM64_CONT_PTE_SHIFT per granule: page_shift -> CONT_PTES.
CONT_PTES_BY_SHIFT = {12: 16, 14: 128, 16: 32}
