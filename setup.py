"""Build: compile the kernel-shaped core with Cython (pure-Python mode).

The list of compiled modules is ``COMPILED`` in src/contpte/_compiled.py.
Every extension is optional: without a working C compiler the package
installs as plain Python and runs interpreted (it says so once at import).
"""

from __future__ import annotations

import os
import runpy
import sys

from setuptools import setup

HERE = os.path.dirname(os.path.abspath(__file__))
COMPILED = runpy.run_path(os.path.join(HERE, "src", "contpte", "_compiled.py"))["COMPILED"]

#: Cython directives of the whole core (docs/core.md): bounds are checked
#: (a model bug raises IndexError, never corrupts memory); negative indices
#: are not Python's wrap-around; annotations give C types.
DIRECTIVES = {
    "language_level": 3,
    "boundscheck": True,
    "wraparound": False,
    "initializedcheck": False,
    "cdivision": False,
    "embedsignature": True,
}


def ext_modules() -> list:
    if os.environ.get("CONTPTE_NO_COMPILE"):
        return []
    try:
        from Cython.Build import cythonize
        from setuptools import Extension
    except ImportError as e:  # pragma: no cover - Cython is a build requirement
        print(f"contpte: Cython unavailable ({e}); installing the interpreted core", file=sys.stderr)
        return []
    exts = []
    for name in COMPILED:
        path = os.path.join("src", *name.split(".")) + ".py"
        exts.append(Extension(name, [path], optional=True, extra_compile_args=["-O2"]))
    return cythonize(
        exts,
        compiler_directives=DIRECTIVES,
        include_path=["src"],
        quiet=True,
        nthreads=os.cpu_count() or 1,
    )


setup(ext_modules=ext_modules())
