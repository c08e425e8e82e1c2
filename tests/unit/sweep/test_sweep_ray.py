"""``contpte sweep --ray``: a local Ray cluster gives the pool's results, row for row.

Ray is in the ``test`` extra, so these tests run wherever the README's test
command runs (they never skip).  One local Ray instance of 2 CPUs is started
and stopped by the sweep itself (about 5 s).
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from contpte import cli
from contpte.sweep import load_spec, read_runs, run_sweep
from contpte.sweep.store import RESULT_COLUMNS

SPEC = """\
workloads = ["zygote-fork", "page-fault3"]
kernels = ["6.12", "7.2"]
variants = ["mainline", "contpte-off"]
profiles = ["altra", "m2-vm"]
cpus = [1, 16]

[params.zygote-fork]
heap = "1M"
children = 2

[params.page-fault3]
size = "256K"
"""
RUNS = 2 * 2 * 2 * 2 * 2


def _results(db: str) -> list[tuple[object, ...]]:
    return [tuple(repr(r[c]) for c in RESULT_COLUMNS) for r in read_runs(db)]


def test_local_ray_cluster_and_pool_store_identical_runs(tmp_path: Path) -> None:
    import ray  # noqa: F401  (a test dependency: fail, never skip, without it)

    spec_file = tmp_path / "grid.toml"
    spec_file.write_text(SPEC)
    spec = load_spec(str(spec_file))
    pool_db, ray_db = str(tmp_path / "pool.duckdb"), str(tmp_path / "ray.duckdb")
    by_pool = run_sweep(spec, pool_db, jobs=2)
    by_ray = run_sweep(spec, ray_db, engine="ray", ray_address="local", jobs=2)
    assert by_pool.ran == by_ray.ran == RUNS
    pool_rows, ray_rows = _results(pool_db), _results(ray_db)
    assert len(pool_rows) == RUNS and pool_rows == ray_rows
    assert {r["engine"] for r in read_runs(ray_db)} == {"ray"}
    # Re-running on Ray skips what the pool's database already has, and starts no cluster.
    again = run_sweep(spec, pool_db, engine="ray", ray_address="local", jobs=2)
    assert (again.skipped, again.ran) == (RUNS, 0)


def test_a_ray_address_that_does_not_answer_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec_file = tmp_path / "grid.toml"
    spec_file.write_text(SPEC)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    db = tmp_path / "never.duckdb"
    assert cli.main(["sweep", str(spec_file), "--db", str(db), "--ray", f"127.0.0.1:{port}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"no Ray cluster answers at 127.0.0.1:{port}" in err, err
    assert not db.exists()
    assert cli.main(["sweep", str(spec_file), "--db", str(db), "--ray", "nowhere"]) == 2
    assert "expected 'local', HOST:PORT or ray://HOST:PORT" in capsys.readouterr().err
    assert not db.exists()


def test_a_refused_connection_says_why_in_one_line() -> None:
    from contpte.sweep.engine import _why

    inner = (
        "Failed to connect to GCS. Last connection error: Traceback (most recent call last):\n"
        '  File "node.py", line 996, in _init_gcs_client\n'
        "ray.exceptions.AuthenticationError: RPC error: InvalidAuthToken: Authentication token is "
        "missing or incorrect. Note: RAY_AUTH_MODE is currently 'disabled' (not 'token'). Ensure that ..."
    )
    try:
        try:
            raise RuntimeError(inner)
        except RuntimeError as e:
            raise ConnectionError("Failed to connect to Ray cluster at 10.0.0.1:6379") from e
    except ConnectionError as e:
        why = _why(e)
    assert why == (
        "Failed to connect to Ray cluster at 10.0.0.1:6379 (RPC error: InvalidAuthToken: Authentication "
        "token is missing or incorrect. Note: RAY_AUTH_MODE is currently 'disabled' (not 'token').)"
    )
    assert "\n" not in why and _why(ValueError("no cause")) == "no cause"
