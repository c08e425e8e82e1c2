"""The arm64 backend: VMSA PTE format, transparent contpte, broadcast TLBI.

Models (Linux v6.12): arch/arm64/include/asm/pgtable.h (``pgtable.py``:
``Arm64Pgtable``), pgtable-hwdef.h + pgtable-prot.h (``pgtable_prot.py``),
arch/arm64/mm/contpte.c (``contpte.py``), asm/tlbflush.h + asm/tlb.h
``tlb_flush`` (``tlbflush.py``).  Import the modules themselves.
"""
