"""The sweep database: DuckDB, one row per run, written in one transaction when the run completes.

Table ``runs``:

============================  ==============================================================
``run_id``                    what the run depends on, hashed (workload steps, kernel,
                              variant keys, profile figures, CPU count, model source): a
                              sweep skips every run whose id is already there
``sweep``                     the spec's name (of the sweep that first ran it)
``workload``, ``params``      the workload's name and parameters (JSON)
``kernel``                    the kernel version
``variant``, ``variant_keys`` the variant's name and its Machine keys (JSON)
``variant_index``             the variant's place in the spec (0: the baseline)
``profile``, ``cpus``         the machine profile and the copies running at once
``time_ns``                   time of one copy's measured steps
``breakdown``                 MAP(VARCHAR, DOUBLE): ns per cost term
``counters``                  MAP(VARCHAR, BIGINT): every non-zero counter of the measured
                              steps and the totals (``tlbi.total``, ...)
``steps``                     MAP(VARCHAR, BIGINT): measured steps by verb
``broadcasters``, ``stretch`` other CPUs broadcasting at once, the DVM stretch factor
``model``, ``version``        digest of the model's source, the package version
``engine``, ``elapsed_s``,    where and how fast it ran, when it finished (the only
``finished_at``               columns that differ between two runs of the same grid)
============================  ==============================================================

Query it with DuckDB: ``SELECT workload, kernel, variant, cpus, time_ns,
counters['tlbi.total'] FROM runs``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..errors import ModelUsageError

__all__ = ["COLUMNS", "RESULT_COLUMNS", "Store", "read_runs"]

COLUMNS: tuple[tuple[str, str], ...] = (
    ("run_id", "VARCHAR PRIMARY KEY"),
    ("sweep", "VARCHAR"),
    ("workload", "VARCHAR"),
    ("params", "VARCHAR"),
    ("kernel", "VARCHAR"),
    ("variant", "VARCHAR"),
    ("variant_keys", "VARCHAR"),
    ("variant_index", "INTEGER"),
    ("profile", "VARCHAR"),
    ("cpus", "INTEGER"),
    ("time_ns", "DOUBLE"),
    ("breakdown", "MAP(VARCHAR, DOUBLE)"),
    ("counters", "MAP(VARCHAR, BIGINT)"),
    ("steps", "MAP(VARCHAR, BIGINT)"),
    ("broadcasters", "DOUBLE"),
    ("stretch", "DOUBLE"),
    ("model", "VARCHAR"),
    ("version", "VARCHAR"),
    ("engine", "VARCHAR"),
    ("elapsed_s", "DOUBLE"),
    ("finished_at", "TIMESTAMP"),
)
"""The columns of ``runs``, in order."""

RESULT_COLUMNS = tuple(c for c, _ in COLUMNS if c not in ("engine", "elapsed_s", "finished_at"))
"""The columns that depend only on the run: two engines must agree on them."""


def _duckdb() -> Any:
    try:
        import duckdb
    except ImportError:  # pragma: no cover - a declared dependency
        raise ModelUsageError("the sweep database needs the duckdb package (pip install duckdb)") from None
    return duckdb


class Store:
    """An open sweep database (a DuckDB file); ``with Store(path) as db: ...``."""

    def __init__(self, path: str | Path, create: bool = True) -> None:
        duckdb = _duckdb()
        self.path = str(path)
        if not create and not Path(path).exists():
            raise ModelUsageError(f"{path}: no such sweep database")
        try:
            self.con = duckdb.connect(self.path, read_only=not create)
        except duckdb.Error as e:
            raise ModelUsageError(f"{path}: cannot open the sweep database: {_one_line(e)}") from None
        if create:
            cols = ", ".join(f"{name} {kind}" for name, kind in COLUMNS)
            self.con.execute(f"CREATE TABLE IF NOT EXISTS runs ({cols})")
        else:
            have = self.con.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_name = 'runs'"
            ).fetchone()
            if not have or not have[0]:
                self.close()
                raise ModelUsageError(f"{path}: not a sweep database (no 'runs' table)")

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.con.close()

    @staticmethod
    def existing_runs(path: str | Path) -> set[str]:
        """The ids of the runs in the database at ``path``; none if there is no database yet."""
        if not Path(path).exists():
            return set()
        with Store(path, create=False) as db:
            return db.done()

    def done(self) -> set[str]:
        """The ids of every run already in the database."""
        return {r[0] for r in self.con.execute("SELECT run_id FROM runs").fetchall()}

    def insert(self, rows: Iterable[Mapping[str, Any]]) -> int:
        """Add completed runs, all in one transaction (all or none); a run already there is kept."""
        rows = list(rows)
        if not rows:
            return 0
        names = [c for c, _ in COLUMNS]
        sql = f"INSERT OR IGNORE INTO runs ({', '.join(names)}) VALUES ({', '.join('?' for _ in names)})"
        self.con.execute("BEGIN TRANSACTION")
        try:
            for r in rows:
                self.con.execute(sql, [r[n] for n in names])
            self.con.execute("COMMIT")
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        return len(rows)

    def rows(self) -> list[dict[str, Any]]:
        """Every run, as dicts, in a stable order."""
        cur = self.con.execute(
            "SELECT * FROM runs ORDER BY sweep, workload, profile, kernel, variant_index, variant, cpus"
        )
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def read_runs(path: str | Path) -> list[dict[str, Any]]:
    """Every run of the database at ``path`` (read-only)."""
    with Store(path, create=False) as db:
        rows = db.rows()
    for r in rows:
        r["params"] = json.loads(r["params"])
        r["variant_keys"] = json.loads(r["variant_keys"])
    return rows


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())
