"""Descriptor formats the table walker understands.

``VmsaFormat``: the VMSAv8-64 stage-1 descriptor (Arm ARM D8.3, "Translation
table descriptor formats"), as used at EL1&0 with Direct permissions.
``FlatFormat``: an x86-64-like format (Intel SDM Vol. 3A 4.5) for the
comparison backend: no Contiguous hint, hardware always manages A/D.

A format is a set of masks (C fields of ``DescriptorFormat``): every
decoder is one or two mask operations, the same for both formats, so the
walker and the rule checker read the masks directly in their loops and
the methods here serve everyone else.  Masks are u64: never ``~`` a Python
int (it is negative); the complements are precomputed.

Compiled (docs/core.md).
"""

from __future__ import annotations

import cython

from ..errors import ModelUsageError

if not cython.compiled:
    from ..cdefs import i64, u64

__all__ = [
    "WS_NONE",
    "WS_CLEAN",
    "WS_DIRTY",
    "L2_INVALID",
    "L2_BLOCK",
    "L2_TABLE",
    "DescriptorFormat",
    "VmsaFormat",
    "FlatFormat",
    "make_format",
    "cont_ptes_for",
]

#: Write state of a descriptor (Arm ARM D8.5.2 "dirty state").
WS_NONE = cython.declare(i64, 0)  # not writable: a write is a Permission fault
WS_CLEAN = cython.declare(i64, 1)  # writable-clean: DBM=1, AP[2]=1 (hardware may make it dirty)
WS_DIRTY = cython.declare(i64, 2)  # writable now: AP[2]=0

#: What a level-2 descriptor is.
L2_INVALID = cython.declare(i64, 0)
L2_BLOCK = cython.declare(i64, 1)
L2_TABLE = cython.declare(i64, 2)

_ALL = (1 << 64) - 1


def cont_ptes_for(page_shift: int) -> int:
    """Entries in a level-3 contiguous set (Arm ARM Table D8-104).

    4K granule: 16 (64KB), 16K: 128 (2MB), 64K: 32 (2MB).
    """
    try:
        return {12: 16, 14: 128, 16: 32}[page_shift]
    except KeyError:
        raise ModelUsageError(f"page_shift {page_shift} is not a VMSAv8-64 granule (12, 14 or 16)") from None


@cython.cclass
class DescriptorFormat:
    """The masks of a descriptor format and the decoders built from them.

    ``valid_mask``/``valid_val``: a level-3 page descriptor is valid iff
    ``d & valid_mask == valid_val``.  Level 2: bit 0 set is valid, then
    ``d & l2_block_mask == l2_block_val`` is a block, else a table.
    ``dirty_*``/``clean_*``: the same test for writable-dirty and
    writable-clean.  ``set_dirty_or``/``set_dirty_and``: the hardware dirty
    update.  ``key_mask``/``key_mask_dbm``: ``prot_key`` without and with
    a DBM bit (``dbm_bit``) under hardware dirty management.
    ``bbm_bits``: output address, memory type and Contiguous bit (a change
    of none of them never needs break-before-make).
    """

    def __init__(self, page_shift: i64) -> None:
        self.name = "abstract"
        self.has_contiguous = False
        self.page_shift = page_shift
        self.cont_ptes = 1
        self.oa_mask = 0
        self.valid_mask = 1
        self.valid_val = 1
        self.l2_block_mask = 0
        self.l2_block_val = 0
        self.cont_bit = 0
        self.af_bit = 0
        self.user_bit = 0
        self.dirty_mask = 0
        self.dirty_val = 0
        self.clean_mask = 0
        self.clean_val = 0
        self.set_dirty_or = 0
        self.set_dirty_and = _ALL
        self.key_mask = 0
        self.key_mask_dbm = 0
        self.dbm_bit = 0
        self.memtype_mask = 0
        self.bbm_bits = 0

    def _finish(self) -> None:
        self.bbm_bits = self.oa_mask | self.memtype_mask | self.cont_bit

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {1 << self.page_shift >> 10}K>"

    # -- decoders ----------------------------------------------------------
    @cython.ccall
    @cython.exceptval(check=False)
    def page_valid(self, d: u64) -> cython.bint:
        """A valid level-3 page descriptor."""
        return (d & self.valid_mask) == self.valid_val

    @cython.ccall
    @cython.exceptval(check=False)
    def l2_kind(self, d: u64) -> i64:
        """``L2_INVALID``, ``L2_BLOCK`` or ``L2_TABLE`` for a level-2 descriptor."""
        if not d & 1:
            return L2_INVALID
        if (d & self.l2_block_mask) == self.l2_block_val:
            return L2_BLOCK
        return L2_TABLE

    @cython.ccall
    @cython.exceptval(check=False)
    def pfn(self, d: u64) -> i64:
        """Output address of the descriptor, in pages."""
        return cython.cast(i64, (d & self.oa_mask) >> self.page_shift)

    @cython.ccall
    @cython.exceptval(check=False)
    def cont(self, d: u64) -> cython.bint:
        """The Contiguous bit (always clear in a format without one)."""
        return (d & self.cont_bit) != 0

    @cython.ccall
    @cython.exceptval(check=False)
    def af(self, d: u64) -> cython.bint:
        """The Access flag."""
        return (d & self.af_bit) != 0

    @cython.ccall
    @cython.exceptval(check=False)
    def user(self, d: u64) -> cython.bint:
        """Accessible from EL0 / user mode."""
        return (d & self.user_bit) != 0

    @cython.ccall
    @cython.exceptval(check=False)
    def write_state(self, d: u64) -> i64:
        """``WS_NONE``, ``WS_CLEAN`` or ``WS_DIRTY``."""
        if (d & self.dirty_mask) == self.dirty_val:
            return WS_DIRTY
        if (d & self.clean_mask) == self.clean_val:
            return WS_CLEAN
        return WS_NONE

    @cython.ccall
    @cython.exceptval(check=False)
    def writable(self, d: u64, hd: cython.bint) -> cython.bint:
        """Writable now, or writable-clean with hardware dirty management (RWHZWS)."""
        if (d & self.dirty_mask) == self.dirty_val:
            return True
        return hd and (d & self.clean_mask) == self.clean_val

    @cython.ccall
    @cython.exceptval(check=False)
    def set_af(self, d: u64) -> u64:
        """The descriptor after a hardware Access flag update."""
        return d | self.af_bit

    @cython.ccall
    @cython.exceptval(check=False)
    def set_dirty(self, d: u64) -> u64:
        """The descriptor after a hardware dirty-state update (AF set in the same RMW)."""
        return (d | self.set_dirty_or) & self.set_dirty_and

    @cython.ccall
    @cython.exceptval(check=False)
    def prot_key(self, d: u64, hd: cython.bint = True) -> u64:
        """Attributes and permissions that must be identical inside a contiguous set.

        Excludes the output address, AF, AP[2] when DBM=1 and hardware dirty
        management is on (``hd``; Arm ARM D8.5.5 RLCGVS), the Contiguous bit
        itself and the software-ignored bits.
        """
        if hd and d & self.dbm_bit:
            return d & self.key_mask_dbm
        return d & self.key_mask

    @cython.ccall
    @cython.exceptval(check=False)
    def memtype(self, d: u64) -> u64:
        """Memory type and shareability fields (a change needs BBM, RWHZWS)."""
        return d & self.memtype_mask


@cython.cclass
class VmsaFormat(DescriptorFormat):
    """VMSAv8-64 stage-1 descriptors, Direct permissions (Arm ARM D8.3, D8.4.1).

    Level 3: bits[1:0] = 0b11 page (0b01 is reserved: Translation fault).
    Level 2: 0b01 block, 0b11 table.  Upper/lower attributes: AttrIndx[4:2],
    NS 5, AP[1] 6 (EL0 access), AP[2] 7 (read-only), SH[9:8], AF 10, nG 11,
    GP 50, DBM 51, Contiguous 52, PXN 53, UXN 54; OA[47:page_shift].
    Bits 55-58 are reserved for software, 59-62 PBHA: ignored here.
    """

    VALID = 1 << 0
    TABLE_PAGE = 1 << 1
    ATTRINDX = 0b111 << 2
    NS = 1 << 5
    AP_USER = 1 << 6  # AP[1]
    AP_RDONLY = 1 << 7  # AP[2]
    SH = 0b11 << 8
    AF_BIT = 1 << 10
    NG = 1 << 11
    GP = 1 << 50
    DBM = 1 << 51
    CONT = 1 << 52
    PXN = 1 << 53
    UXN = 1 << 54
    #: Every bit the hardware interprets apart from the output address and bits[1:0].
    ATTR_MASK = ATTRINDX | NS | AP_USER | AP_RDONLY | SH | AF_BIT | NG | GP | DBM | CONT | PXN | UXN

    def __init__(self, page_shift: i64 = 12) -> None:
        super().__init__(page_shift)
        self.name = "vmsa"
        self.has_contiguous = True
        self.cont_ptes = cont_ptes_for(page_shift)
        self.oa_mask = ((1 << 48) - 1) & (_ALL ^ ((1 << page_shift) - 1))
        self.valid_mask = self.VALID | self.TABLE_PAGE
        self.valid_val = self.VALID | self.TABLE_PAGE
        self.l2_block_mask = 0b11
        self.l2_block_val = 0b01
        self.cont_bit = self.CONT
        self.af_bit = self.AF_BIT
        self.user_bit = self.AP_USER
        # writable-dirty: AP[2] clear; writable-clean: AP[2] and DBM set
        self.dirty_mask = self.AP_RDONLY
        self.dirty_val = 0
        self.clean_mask = self.AP_RDONLY | self.DBM
        self.clean_val = self.AP_RDONLY | self.DBM
        # Arm ARM D8.5.2 IDSHLJ: never writable-dirty with AF=0
        self.set_dirty_or = self.AF_BIT
        self.set_dirty_and = _ALL ^ self.AP_RDONLY
        self.key_mask = self.ATTR_MASK & (_ALL ^ (self.AF_BIT | self.CONT))
        self.key_mask_dbm = self.key_mask & (_ALL ^ self.AP_RDONLY)
        self.dbm_bit = self.DBM
        self.memtype_mask = self.ATTRINDX | self.SH | self.NS
        self._finish()

    def mk_page(
        self,
        pfn: int,
        *,
        user: bool = True,
        write: int = WS_DIRTY,
        af: bool = True,
        cont: bool = False,
    ) -> int:
        """Build a valid level-3 page descriptor (tests and tools)."""
        # AttrIndx 0 (Normal WB in the model), SH inner (0b11), nG (user).
        d = (pfn << self.page_shift) | self.VALID | self.TABLE_PAGE | (0b11 << 8) | self.NG | self.PXN
        if user:
            d |= self.AP_USER
        if write == WS_CLEAN:
            d |= self.DBM | self.AP_RDONLY
        elif write == WS_DIRTY:
            d |= self.DBM
        else:
            d |= self.AP_RDONLY
        if af:
            d |= self.AF_BIT
        if cont:
            d |= self.CONT
        return d

    def mk_block(self, pfn: int, *, user: bool = True, write: int = WS_DIRTY, af: bool = True) -> int:
        """Build a valid level-2 block descriptor (``pfn`` aligned to the block)."""
        return self.mk_page(pfn, user=user, write=write, af=af) & (_ALL ^ self.TABLE_PAGE)


@cython.cclass
class FlatFormat(DescriptorFormat):
    """An x86-64-like descriptor (Intel SDM Vol. 3A, 4.5 "4-level paging").

    P 0, R/W 1, U/S 2, PWT 3, PCD 4, A 5, D 6, PS 7 (level-2 block),
    G 8, address bits[51:12], XD 63.  Hardware sets A and D itself; there is
    no Contiguous hint.  A present level-2 entry without PS points to a table.
    """

    PRESENT = 1 << 0
    RW = 1 << 1
    USER = 1 << 2
    PWT = 1 << 3
    PCD = 1 << 4
    ACCESSED = 1 << 5
    DIRTY = 1 << 6
    PSE = 1 << 7
    GLOBAL = 1 << 8
    NX = 1 << 63
    KEY_MASK = RW | USER | PWT | PCD | GLOBAL | NX

    def __init__(self, page_shift: i64 = 12) -> None:
        super().__init__(page_shift)
        self.name = "flat"
        self.oa_mask = ((1 << 52) - 1) & (_ALL ^ ((1 << max(page_shift, 12)) - 1))
        self.valid_mask = self.PRESENT
        self.valid_val = self.PRESENT
        self.l2_block_mask = self.PRESENT | self.PSE
        self.l2_block_val = self.PRESENT | self.PSE
        self.af_bit = self.ACCESSED
        self.user_bit = self.USER
        # writable-dirty: RW and D; writable-clean: RW without D
        self.dirty_mask = self.RW | self.DIRTY
        self.dirty_val = self.RW | self.DIRTY
        self.clean_mask = self.RW | self.DIRTY
        self.clean_val = self.RW
        self.set_dirty_or = self.ACCESSED | self.DIRTY
        self.key_mask = self.KEY_MASK
        self.key_mask_dbm = self.KEY_MASK
        self.memtype_mask = self.PWT | self.PCD
        self._finish()

    def mk_page(
        self,
        pfn: int,
        *,
        user: bool = True,
        write: int = WS_DIRTY,
        af: bool = True,
        cont: bool = False,
    ) -> int:
        """Build a valid level-3 page descriptor (tests and tools)."""
        if cont:
            raise ModelUsageError("the Flat format has no contiguous hint")
        d = (pfn << self.page_shift) | self.PRESENT | self.NX
        if user:
            d |= self.USER
        if write == WS_CLEAN:
            d |= self.RW
        elif write == WS_DIRTY:
            d |= self.RW | self.DIRTY
        if af:
            d |= self.ACCESSED
        return d

    def mk_block(self, pfn: int, *, user: bool = True, write: int = WS_DIRTY, af: bool = True) -> int:
        """Build a valid level-2 block descriptor (``pfn`` aligned to the block)."""
        return self.mk_page(pfn, user=user, write=write, af=af) | self.PSE


def make_format(name: str, page_shift: int) -> DescriptorFormat:
    """Return the format ``"vmsa"`` or ``"flat"`` for ``page_shift``."""
    if name == "vmsa":
        return VmsaFormat(page_shift)
    if name == "flat":
        return FlatFormat(page_shift)
    raise ModelUsageError(f"unknown descriptor format {name!r}; expected 'vmsa' or 'flat'")


if cython.compiled:
    globals().update(
        WS_NONE=WS_NONE,
        WS_CLEAN=WS_CLEAN,
        WS_DIRTY=WS_DIRTY,
        L2_INVALID=L2_INVALID,
        L2_BLOCK=L2_BLOCK,
        L2_TABLE=L2_TABLE,
    )
