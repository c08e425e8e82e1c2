"""Validators with their own shadow state.

They never trust the structures they check: mapcounts are recomputed from
the page tables, expected values from a shadow of what each process wrote.
"""
