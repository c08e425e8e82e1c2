"""``python -m contpte.oracle.arm64``: fetch what the arm64 oracle needs into its cache (CI runs this)."""

from .env import main

raise SystemExit(main())
