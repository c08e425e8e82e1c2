"""arm64: the VMSA PTE format and transparent contiguous PTEs (contpte).

Modules: ``pgtable_prot`` (bits), ``pgtable_base`` (format, private helpers),
``tlbflush``, ``contpte`` (arch/arm64/mm/contpte.c), ``pgtable`` (``Arm64Pgtable``).
"""
