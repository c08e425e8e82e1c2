"""Linux core-mm, one module per mm/*.c file.  Never sees PTE_CONT.

Every modelled function keeps the kernel's name and argument order; the
kernel's ``__x`` becomes ``_x``.  The architecture is reached only through
the pgtable API of ``contpte.arch.pgtable.Pgtable`` (``kernel.arch``).
"""
