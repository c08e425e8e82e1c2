"""Descriptor formats the table walker understands.

``VmsaFormat``: the VMSAv8-64 stage-1 descriptor (Arm ARM D8.3, "Translation
table descriptor formats"), as used at EL1&0 with Direct permissions.
``FlatFormat``: an x86-64-like format (Intel SDM Vol. 3A 4.5) for the
comparison backend: no Contiguous hint, hardware always manages A/D.

Each format offers scalar decoders (Python ``int`` in and out) and
numpy-vectorised ones (``*_v``, ``uint64`` arrays in, bool/uint64 arrays
out).  Array masks are ``np.uint64`` constants: ``~MASK`` on a Python int is
negative, so array code never inverts a Python int.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from ..errors import ModelUsageError

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

U64 = npt.NDArray[np.uint64]
BoolArr = npt.NDArray[np.bool_]
I8Arr = npt.NDArray[np.int8]

#: Write state of a descriptor (Arm ARM D8.5.2 "dirty state").
WS_NONE = 0  # not writable: a write is a Permission fault
WS_CLEAN = 1  # writable-clean: DBM=1, AP[2]=1 (hardware may make it dirty)
WS_DIRTY = 2  # writable now: AP[2]=0

#: What a level-2 descriptor is.
L2_INVALID = 0
L2_BLOCK = 1
L2_TABLE = 2


def _b(x: object) -> BoolArr:
    """A comparison result as a typed bool array."""
    return np.asarray(x, dtype=np.bool_)


def cont_ptes_for(page_shift: int) -> int:
    """Entries in a level-3 contiguous set (Arm ARM Table D8-104).

    4K granule: 16 (64KB), 16K: 128 (2MB), 64K: 32 (2MB).
    """
    try:
        return {12: 16, 14: 128, 16: 32}[page_shift]
    except KeyError:
        raise ModelUsageError(f"page_shift {page_shift} is not a VMSAv8-64 granule (12, 14 or 16)") from None


class DescriptorFormat:
    """The interface a descriptor format offers the walker and the checker."""

    name = "abstract"
    #: Does the format have a Contiguous hint?
    has_contiguous = False

    def __init__(self, page_shift: int) -> None:
        self.page_shift = page_shift
        #: Entries per contiguous set at level 3 (1 when there is no hint).
        self.cont_ptes = 1
        #: Output-address mask (Python int) and the same as ``np.uint64``.
        self.oa_mask = 0
        self.oa_mask_u = np.uint64(0)
        #: The bits that make a level-3 descriptor valid (all of them set).
        self.valid_bits_u = np.uint64(0)
        #: The bits whose change between two valid descriptors may need
        #: break-before-make: output address, memory type, Contiguous bit.
        self.bbm_bits_u = np.uint64(0)
        #: The Contiguous bit (0 when the format has none).
        self.cont_bit_u = np.uint64(0)

    # -- scalar decoders ---------------------------------------------------
    def page_valid(self, d: int) -> bool:
        """A valid level-3 page descriptor."""
        raise NotImplementedError

    def l2_kind(self, d: int) -> int:
        """``L2_INVALID``, ``L2_BLOCK`` or ``L2_TABLE`` for a level-2 descriptor."""
        raise NotImplementedError

    def pfn(self, d: int) -> int:
        """Output address of the descriptor, in pages."""
        return (d & self.oa_mask) >> self.page_shift

    def cont(self, d: int) -> bool:
        """The Contiguous bit."""
        return False

    def af(self, d: int) -> bool:
        """The Access flag."""
        raise NotImplementedError

    def user(self, d: int) -> bool:
        """Accessible from EL0 / user mode."""
        raise NotImplementedError

    def write_state(self, d: int) -> int:
        """``WS_NONE``, ``WS_CLEAN`` or ``WS_DIRTY``."""
        raise NotImplementedError

    def writable_any(self, d: int) -> bool:
        """Writable now or writable-clean (counts as writable for BBM, RWHZWS)."""
        return self.write_state(d) != WS_NONE

    def set_af(self, d: int) -> int:
        """The descriptor after a hardware Access flag update."""
        raise NotImplementedError

    def set_dirty(self, d: int) -> int:
        """The descriptor after a hardware dirty-state update (AF set in the same RMW)."""
        raise NotImplementedError

    def prot_key(self, d: int, hd: bool = True) -> int:
        """Attributes and permissions that must be identical inside a contiguous set.

        Excludes the output address, AF, AP[2] when DBM=1 and hardware dirty
        management is on (``hd``; Arm ARM D8.5.5 RLCGVS), the Contiguous bit
        itself and the software-ignored bits.
        """
        raise NotImplementedError

    def memtype(self, d: int) -> int:
        """Memory type and shareability fields (a change needs BBM, RWHZWS)."""
        raise NotImplementedError

    # -- vectorised decoders -------------------------------------------------
    def page_valid_v(self, d: U64) -> BoolArr:
        raise NotImplementedError

    def pfn_v(self, d: U64) -> U64:
        return (d & self.oa_mask_u) >> np.uint64(self.page_shift)

    def l2_block_v(self, d: U64) -> BoolArr:
        """Which level-2 descriptors are blocks (``l2_kind(d) == L2_BLOCK``)."""
        raise NotImplementedError

    def cont_v(self, d: U64) -> BoolArr:
        return np.zeros(d.shape, dtype=np.bool_)

    def af_v(self, d: U64) -> BoolArr:
        raise NotImplementedError

    def user_v(self, d: U64) -> BoolArr:
        raise NotImplementedError

    def write_state_v(self, d: U64) -> I8Arr:
        raise NotImplementedError

    def set_af_v(self, d: U64) -> U64:
        raise NotImplementedError

    def set_dirty_v(self, d: U64) -> U64:
        raise NotImplementedError

    def prot_key_v(self, d: U64, hd: bool = True) -> U64:
        raise NotImplementedError

    def memtype_v(self, d: U64) -> U64:
        raise NotImplementedError

    # -- builders (tests and tools) -----------------------------------------
    def mk_page(
        self,
        pfn: int,
        *,
        user: bool = True,
        write: int = WS_DIRTY,
        af: bool = True,
        cont: bool = False,
    ) -> int:
        """Build a valid level-3 page descriptor."""
        raise NotImplementedError

    def mk_block(self, pfn: int, *, user: bool = True, write: int = WS_DIRTY, af: bool = True) -> int:
        """Build a valid level-2 block descriptor (``pfn`` aligned to the block)."""
        raise NotImplementedError


class VmsaFormat(DescriptorFormat):
    """VMSAv8-64 stage-1 descriptors, Direct permissions (Arm ARM D8.3, D8.4.1).

    Level 3: bits[1:0] = 0b11 page (0b01 is reserved: Translation fault).
    Level 2: 0b01 block, 0b11 table.  Upper/lower attributes: AttrIndx[4:2],
    NS 5, AP[1] 6 (EL0 access), AP[2] 7 (read-only), SH[9:8], AF 10, nG 11,
    GP 50, DBM 51, Contiguous 52, PXN 53, UXN 54; OA[47:page_shift].
    Bits 55-58 are reserved for software, 59-62 PBHA: ignored here.
    """

    name = "vmsa"
    has_contiguous = True

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

    def __init__(self, page_shift: int = 12) -> None:
        super().__init__(page_shift)
        self.cont_ptes = cont_ptes_for(page_shift)
        self.oa_mask = ((1 << 48) - 1) & ~((1 << page_shift) - 1)
        self.oa_mask_u = np.uint64(self.oa_mask)
        self._u_valid = np.uint64(self.VALID | self.TABLE_PAGE)
        self._u_af = np.uint64(self.AF_BIT)
        self._u_user = np.uint64(self.AP_USER)
        self._u_rdonly = np.uint64(self.AP_RDONLY)
        self._u_dbm = np.uint64(self.DBM)
        self._u_cont = np.uint64(self.CONT)
        self._u_not_rdonly = np.uint64(((1 << 64) - 1) ^ self.AP_RDONLY)
        self._u_key_mask = np.uint64(self.ATTR_MASK & ~(self.AF_BIT | self.CONT))
        self._u_key_mask_dbm = np.uint64(self.ATTR_MASK & ~(self.AF_BIT | self.CONT | self.AP_RDONLY))
        self._u_memtype = np.uint64(self.ATTRINDX | self.SH | self.NS)
        self.valid_bits_u = self._u_valid
        self.bbm_bits_u = np.uint64(self.oa_mask | self.ATTRINDX | self.SH | self.NS | self.CONT)
        self.cont_bit_u = self._u_cont

    def page_valid(self, d: int) -> bool:
        return (d & 0b11) == 0b11

    def l2_kind(self, d: int) -> int:
        low = d & 0b11
        if low == 0b01:
            return L2_BLOCK
        if low == 0b11:
            return L2_TABLE
        return L2_INVALID

    def cont(self, d: int) -> bool:
        return bool(d & self.CONT)

    def af(self, d: int) -> bool:
        return bool(d & self.AF_BIT)

    def user(self, d: int) -> bool:
        return bool(d & self.AP_USER)

    def write_state(self, d: int) -> int:
        if not d & self.AP_RDONLY:
            return WS_DIRTY
        if d & self.DBM:
            return WS_CLEAN
        return WS_NONE

    def set_af(self, d: int) -> int:
        return d | self.AF_BIT

    def set_dirty(self, d: int) -> int:
        # Arm ARM D8.5.2 IDSHLJ: never writable-dirty with AF=0.
        return (d | self.AF_BIT) & ~self.AP_RDONLY

    def prot_key(self, d: int, hd: bool = True) -> int:
        mask = self.ATTR_MASK & ~(self.AF_BIT | self.CONT)
        if hd and d & self.DBM:
            mask &= ~self.AP_RDONLY
        return d & mask

    def memtype(self, d: int) -> int:
        return d & (self.ATTRINDX | self.SH | self.NS)

    def page_valid_v(self, d: U64) -> BoolArr:
        return _b((d & self._u_valid) == self._u_valid)

    def cont_v(self, d: U64) -> BoolArr:
        return _b((d & self._u_cont) != 0)

    def l2_block_v(self, d: U64) -> BoolArr:
        return _b((d & np.uint64(0b11)) == np.uint64(0b01))

    def af_v(self, d: U64) -> BoolArr:
        return _b((d & self._u_af) != 0)

    def user_v(self, d: U64) -> BoolArr:
        return _b((d & self._u_user) != 0)

    def write_state_v(self, d: U64) -> I8Arr:
        rdonly = (d & self._u_rdonly) != 0
        dbm = (d & self._u_dbm) != 0
        out = np.full(d.shape, WS_DIRTY, dtype=np.int8)
        out[rdonly & dbm] = WS_CLEAN
        out[rdonly & ~dbm] = WS_NONE
        return out

    def set_af_v(self, d: U64) -> U64:
        return d | self._u_af

    def set_dirty_v(self, d: U64) -> U64:
        return (d | self._u_af) & self._u_not_rdonly

    def prot_key_v(self, d: U64, hd: bool = True) -> U64:
        if not hd:
            return d & self._u_key_mask
        dbm = (d & self._u_dbm) != 0
        out: U64 = d & np.where(dbm, self._u_key_mask_dbm, self._u_key_mask)
        return out

    def memtype_v(self, d: U64) -> U64:
        return d & self._u_memtype

    def mk_page(
        self,
        pfn: int,
        *,
        user: bool = True,
        write: int = WS_DIRTY,
        af: bool = True,
        cont: bool = False,
    ) -> int:
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
        return self.mk_page(pfn, user=user, write=write, af=af) & ~self.TABLE_PAGE


class FlatFormat(DescriptorFormat):
    """An x86-64-like descriptor (Intel SDM Vol. 3A, 4.5 "4-level paging").

    P 0, R/W 1, U/S 2, PWT 3, PCD 4, A 5, D 6, PS 7 (level-2 block),
    G 8, address bits[51:12], XD 63.  Hardware sets A and D itself; there is
    no Contiguous hint.  A present level-2 entry without PS points to a table.
    """

    name = "flat"
    has_contiguous = False

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

    def __init__(self, page_shift: int = 12) -> None:
        super().__init__(page_shift)
        self.oa_mask = ((1 << 52) - 1) & ~((1 << max(page_shift, 12)) - 1)
        self.oa_mask_u = np.uint64(self.oa_mask)
        self._u_present = np.uint64(self.PRESENT)
        self._u_rw = np.uint64(self.RW)
        self._u_user = np.uint64(self.USER)
        self._u_a = np.uint64(self.ACCESSED)
        self._u_ad = np.uint64(self.ACCESSED | self.DIRTY)
        self._u_d = np.uint64(self.DIRTY)
        self._u_key = np.uint64(self.KEY_MASK)
        self._u_memtype = np.uint64(self.PWT | self.PCD)
        self.valid_bits_u = self._u_present
        self.bbm_bits_u = np.uint64(self.oa_mask | self.PWT | self.PCD)

    def page_valid(self, d: int) -> bool:
        return bool(d & self.PRESENT)

    def l2_kind(self, d: int) -> int:
        if not d & self.PRESENT:
            return L2_INVALID
        return L2_BLOCK if d & self.PSE else L2_TABLE

    def af(self, d: int) -> bool:
        return bool(d & self.ACCESSED)

    def user(self, d: int) -> bool:
        return bool(d & self.USER)

    def write_state(self, d: int) -> int:
        if not d & self.RW:
            return WS_NONE
        return WS_DIRTY if d & self.DIRTY else WS_CLEAN

    def set_af(self, d: int) -> int:
        return d | self.ACCESSED

    def set_dirty(self, d: int) -> int:
        return d | self.ACCESSED | self.DIRTY

    def prot_key(self, d: int, hd: bool = True) -> int:
        return d & self.KEY_MASK

    def memtype(self, d: int) -> int:
        return d & (self.PWT | self.PCD)

    def page_valid_v(self, d: U64) -> BoolArr:
        return _b((d & self._u_present) != 0)

    def af_v(self, d: U64) -> BoolArr:
        return _b((d & self._u_a) != 0)

    def l2_block_v(self, d: U64) -> BoolArr:
        m = np.uint64(self.PRESENT | self.PSE)
        return _b((d & m) == m)

    def user_v(self, d: U64) -> BoolArr:
        return _b((d & self._u_user) != 0)

    def write_state_v(self, d: U64) -> I8Arr:
        rw = (d & self._u_rw) != 0
        dirty = (d & self._u_d) != 0
        out = np.full(d.shape, WS_NONE, dtype=np.int8)
        out[rw & dirty] = WS_DIRTY
        out[rw & ~dirty] = WS_CLEAN
        return out

    def set_af_v(self, d: U64) -> U64:
        return d | self._u_a

    def set_dirty_v(self, d: U64) -> U64:
        return d | self._u_ad

    def prot_key_v(self, d: U64, hd: bool = True) -> U64:
        return d & self._u_key

    def memtype_v(self, d: U64) -> U64:
        return d & self._u_memtype

    def mk_page(
        self,
        pfn: int,
        *,
        user: bool = True,
        write: int = WS_DIRTY,
        af: bool = True,
        cont: bool = False,
    ) -> int:
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
        return self.mk_page(pfn, user=user, write=write, af=af) | self.PSE


def make_format(name: str, page_shift: int) -> DescriptorFormat:
    """Return the format ``"vmsa"`` or ``"flat"`` for ``page_shift``."""
    if name == "vmsa":
        return VmsaFormat(page_shift)
    if name == "flat":
        return FlatFormat(page_shift)
    raise ModelUsageError(f"unknown descriptor format {name!r}; expected 'vmsa' or 'flat'")
