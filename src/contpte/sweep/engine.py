"""Run a sweep's grid on a local process pool or on a Ray cluster; store each run when it completes.

The grid (``spec.Spec``) is cut into *tasks*: one simulation of a workload
under one kernel, variant and profile (the profile's CPU preset decides some
counts), priced for every CPU count of the grid, each price one *run* (one row
of the database).  The model is deterministic, so where a task runs changes
nothing in its rows but ``engine``, ``elapsed_s`` and ``finished_at``.

Engines: ``pool`` (the default) is a ``concurrent.futures`` process pool of
``jobs`` workers (spawned, so each starts from a clean interpreter, as a Ray
worker does); ``ray`` submits one Ray task per task to the cluster at
``ray_address`` (``local``: a Ray instance this process starts and stops, with
``jobs`` CPUs).  The driver alone writes the database: the rows of a task are
inserted in one transaction when it completes, so an interrupted sweep keeps
every completed run and nothing else, and a re-run skips them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..cost.pricing import _model_digest, price, simulate
from ..cost.profile import Profile
from ..counters import TOTALS
from ..errors import ModelUsageError
from ..workloads.scenario import parse
from .spec import Spec
from .store import Store

__all__ = ["Task", "plan", "run_task", "SweepResult", "run_sweep", "check_ray_address"]


@dataclass(frozen=True)
class Task:
    """One simulation and the runs priced from it (``cpus``: the CPU counts still to run)."""

    sweep: str
    workload: str
    params: dict[str, int]
    text: str
    path: str
    kernel: str
    variant: str
    overrides: dict[str, Any]
    variant_index: int
    profile: Profile
    cpus: tuple[int, ...]
    ids: tuple[str, ...]
    model: str
    """The digest of the driver's model source: a worker running another model refuses the task."""

    @property
    def label(self) -> str:
        return f"{self.workload} {self.kernel} {self.variant} {self.profile.name}"


def _profile_digest(p: Profile) -> str:
    figs = {k: f.value for k, f in sorted(p.figures.items())}
    blob = json.dumps({"arch": p.arch, "cpu": p.cpu, "figures": figs}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def run_id(workload_digest: str, kernel: str, variant_keys: str, profile: Profile, cpus: int) -> str:
    """What a run depends on, hashed: the workload's steps, the kernel, the variant's keys, the
    profile's figures, the CPU count and the model's source."""
    blob = json.dumps(
        [workload_digest, kernel, variant_keys, profile.name, _profile_digest(profile), cpus, _model_digest()]
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def plan(spec: Spec, done: set[str]) -> tuple[list[Task], int]:
    """The tasks of the runs not in ``done``; and how many runs were skipped."""
    tasks: list[Task] = []
    skipped = 0
    for w in spec.workloads:
        digest = w.digest
        for pr in spec.profiles:
            for k in spec.kernels:
                for i, v in enumerate(spec.variants):
                    todo = []
                    for c in spec.cpus:
                        rid = run_id(digest, k, v.spec, pr, c)
                        if rid in done:
                            skipped += 1
                        else:
                            todo.append((c, rid))
                    if todo:
                        tasks.append(
                            Task(
                                spec.name,
                                w.name,
                                dict(w.params),
                                w.text,
                                w.path,
                                k,
                                v.name,
                                dict(v.overrides),
                                i,
                                pr,
                                tuple(c for c, _ in todo),
                                tuple(r for _, r in todo),
                                _model_digest()[:16],
                            )
                        )
    return tasks, skipped


def run_task(task: Task) -> list[dict[str, Any]]:
    """Simulate the task's workload once and price it for each of its CPU counts: one row per run."""
    t0 = time.perf_counter()
    if _model_digest()[:16] != task.model:
        raise ModelUsageError(
            f"{socket.gethostname()}: this worker's contpte model ({_model_digest()[:16]}) is not the "
            f"driver's ({task.model}): install the same contpte on every node of the cluster"
        )
    sc = parse(task.text, task.path)
    measured = simulate(sc, {**task.overrides, "kernel": task.kernel}, task.profile)
    counters = dict(measured.counters)
    counters.update({name: int(f(counters)) for name, (_, f) in TOTALS.items()})
    rows = []
    for cpus, rid in zip(task.cpus, task.ids, strict=True):
        bd = price(measured, task.profile, cpus)
        rows.append(
            {
                "run_id": rid,
                "sweep": task.sweep,
                "workload": task.workload,
                "params": json.dumps(task.params, sort_keys=True),
                "kernel": task.kernel,
                "variant": task.variant,
                "variant_keys": json.dumps(task.overrides, sort_keys=True),
                "variant_index": task.variant_index,
                "profile": task.profile.name,
                "cpus": cpus,
                "time_ns": float(bd.total_ns),
                "breakdown": {k: float(v) for k, v in sorted(bd.by_kind.items()) if v},
                "counters": {k: int(v) for k, v in sorted(counters.items()) if v},
                "steps": {k: int(v) for k, v in sorted(measured.steps.items())},
                "broadcasters": float(bd.concurrent_broadcasters),
                "stretch": float(bd.stretch),
                "model": task.model,
                "version": _version(),
            }
        )
    elapsed = time.perf_counter() - t0
    for r in rows:
        r["elapsed_s"] = elapsed
    return rows


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("contpte")
    except PackageNotFoundError:  # pragma: no cover - a tree without metadata
        return "unknown"


@dataclass(frozen=True)
class SweepResult:
    """What a sweep did."""

    runs: int
    """Runs in the grid."""
    skipped: int
    """Runs already in the database."""
    ran: int
    """Runs run and stored now."""
    tasks: int
    engine: str
    seconds: float

    def as_dict(self) -> dict[str, object]:
        return {
            "runs": self.runs,
            "skipped": self.skipped,
            "ran": self.ran,
            "simulations": self.tasks,
            "engine": self.engine,
            "seconds": self.seconds,
        }


def check_ray_address(address: str, timeout: float = 3.0) -> None:
    """Fail at once, with one line, when nothing answers at a Ray address (``host:port``, ``ray://host:port``)."""
    if address in ("local", "auto"):
        return
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, colon, port_s = hostport.rpartition(":")
    if not colon or not host or not port_s.isdigit():
        raise ModelUsageError(f"--ray {address!r}: expected 'local', HOST:PORT or ray://HOST:PORT")
    try:
        with socket.create_connection((host.strip("[]"), int(port_s)), timeout=timeout):
            pass
    except OSError as e:
        why = e.strerror or type(e).__name__
        raise ModelUsageError(f"--ray {address}: no Ray cluster answers at {host}:{port_s} ({why})") from None


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ModelUsageError("--ray needs the ray package: pip install 'contpte[ray]'") from None
    return ray


def _pool_results(tasks: list[Task], jobs: int) -> Iterator[list[dict[str, Any]]]:
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    ex = ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"))
    try:
        pending = {ex.submit(run_task, t) for t in tasks}
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for f in done:
                yield f.result()
    finally:
        ex.shutdown(wait=True, cancel_futures=True)


@contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Keep what Ray's C++ core logs on file descriptor 2 (retries, warnings) off the terminal."""
    import sys
    import tempfile

    try:
        fd = sys.stderr.fileno()
    except (AttributeError, ValueError, OSError):  # a stderr without a descriptor (tests)
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), fd)
        try:
            yield
        finally:
            os.dup2(saved, fd)
            os.close(saved)


@contextmanager
def _ray_session(jobs: int, address: str) -> Iterator[Any]:
    """Start (``local``) or join a Ray cluster for the sweep; always shut the connection down."""
    import logging

    ray = _import_ray()
    check_ray_address(address)  # refused or unreachable: one line at once, not Ray's retries
    try:
        with _quiet_stderr():
            if address == "local":
                # address="local": always a new instance, never a cluster already running here.
                ray.init(
                    address="local",
                    num_cpus=jobs,
                    include_dashboard=False,
                    log_to_driver=False,
                    logging_level=logging.ERROR,
                )
            else:
                ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
    except Exception as e:  # ray raises ConnectionError, RuntimeError, ValueError, ...
        raise ModelUsageError(f"--ray {address}: cannot connect: {_why(e)}") from None
    try:
        yield ray
    finally:
        ray.shutdown()


def _why(e: BaseException) -> str:
    """One line: Ray's error and, if it has one, the root cause (an authentication failure, ...)."""
    top = " ".join(str(e).split()) or type(e).__name__
    root = e
    while root.__cause__ is not None or (root.__context__ is not None and not root.__suppress_context__):
        root = root.__cause__ or root.__context__  # type: ignore[assignment]
    if root is e:
        return top
    # Ray embeds the innermost traceback as text: its last "module.Error: message" line says why.
    found = [m.group(1) for m in re.finditer(r"^[\w.]+(?:Error|Exception): (.+)$", str(root), re.M)]
    detail = found[-1] if found else str(root).strip().splitlines()[0] if str(root).strip() else ""
    detail = " ".join(" ".join(re.split(r"(?<=\.) ", detail)[:2]).split())
    return f"{top} ({detail[:300]})" if detail else top


def _ray_results(ray: Any, tasks: list[Task]) -> Iterator[list[dict[str, Any]]]:
    remote = ray.remote(num_cpus=1, max_retries=0)(run_task)
    pending = [remote.remote(t) for t in tasks]
    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                yield ray.get(ref)
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)


def run_sweep(
    spec: Spec,
    db_path: str,
    *,
    engine: str = "pool",
    jobs: int = 2,
    ray_address: str = "local",
    progress: Callable[[str], None] | None = None,
    on_plan: Callable[[int, int], None] | None = None,
) -> SweepResult:
    """Run every run of ``spec`` not yet in the database at ``db_path``; store each as it completes.

    ``on_plan(to_run, skipped)`` is called once the database says what is left.
    Bad input fails before the database is created or changed: the spec is
    checked by its loader, a Ray address that does not answer here.
    """
    if engine not in ("pool", "ray"):
        raise ModelUsageError(f"engine {engine!r}: expected pool or ray")
    if jobs < 1:
        raise ModelUsageError(f"--jobs {jobs}: expected a positive number of workers")
    t0 = time.perf_counter()
    ran = 0
    if engine == "ray":
        check_ray_address(ray_address)
    tasks, skipped = plan(spec, Store.existing_runs(db_path))
    with ExitStack() as stack:
        # Connected (or failed, with one line) before the database is created or changed;
        # with nothing left to run, no cluster is started.
        ray = stack.enter_context(_ray_session(jobs, ray_address)) if engine == "ray" and tasks else None
        db = stack.enter_context(Store(db_path))
        tasks, skipped = plan(spec, db.done())
        todo = sum(len(t.cpus) for t in tasks)
        if on_plan is not None:
            on_plan(todo, skipped)
        if tasks:
            results = _pool_results(tasks, jobs) if ray is None else _ray_results(ray, tasks)
            for rows in results:
                now = datetime.now()
                for r in rows:
                    r["engine"] = engine
                    r["finished_at"] = now
                ran += db.insert(rows)
                if progress is not None:
                    for r in rows:
                        progress(f"{r['workload']} {r['kernel']} {r['variant']} {r['profile']} x{r['cpus']}")
    return SweepResult(spec.size, skipped, ran, len(tasks), engine, time.perf_counter() - t0)
