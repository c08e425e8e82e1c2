"""Threads and interleavings: clone_thread, the scheduler's preemption points, the explorer.

The scenario files in ``threads/`` assert their outcomes themselves (``read
... expect=``, ``!SIGSEGV``); here they are run and the exact place where
each ``at`` step ran is checked, with the counters that show the race.
The lock rules follow v6.12 kernel/fork.c ``dup_mmap()``
(``mmap_write_lock_killable(oldmm)``, ``vma_start_write(mpnt)``) and the
lockless reader of arch/arm64/mm/contpte.c (``contpte_ptep_get_lockless``).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from scenario_util import PAGE, assert_checked

import contpte
from contpte.errors import ScenarioError
from contpte.system import Thread
from contpte.workloads.explore import explore, explore_random, replay_scenario
from contpte.workloads.scenario import format_scenario, parse, parse_file, run

HERE = Path(__file__).parent / "threads"
BLOCK = 64 << 10


def _run(name: str, **kw: object) -> list:  # type: ignore[type-arg]
    outs = run(parse_file(str(HERE / name)), **kw)
    failed = [o for o in outs if o.failed]
    assert not failed, failed[0].failed
    return outs


def _by_text(outs: list, text: str):  # type: ignore[no-untyped-def,type-arg]
    return next(o for o in outs if o.text == text)


@pytest.mark.parametrize("arch", ["arm64", "generic"])
def test_clone_thread_shares_the_mm_on_another_cpu(arch: str) -> None:
    m = contpte.Machine(arch=arch, memory="32M", cpus=4, check=True)
    p = m.spawn()
    t = p.clone_thread()
    assert isinstance(t, Thread) and isinstance(t, contpte.Process)
    assert (t.pid, t.mm, t.process) == (p.pid, p.mm, p)
    assert t.cpu != p.cpu and t.tid != p.tid
    a = p.mmap(BLOCK)
    t.write(a, BLOCK, 3)
    assert p.read(a, BLOCK).tolist() == [3] * 16
    # The mm's cpumask holds every CPU a thread of it ran on.
    assert p.mm.cpumask == {p.cpu, t.cpu}
    t.exit()
    assert not t.alive and p.alive and p.threads == []
    with pytest.raises(contpte.ModelUsageError, match="has exited"):
        t.read(a, PAGE)
    assert_checked(m)


def test_exit_of_the_process_ends_its_threads() -> None:
    m = contpte.Machine(arch="arm64", memory="32M", cpus=2, check=True)
    p = m.spawn()
    t = p.clone_thread()
    p.exit()
    assert not t.alive


@pytest.mark.parametrize("arch", ["arm64", "generic"])
def test_another_threads_mprotect_reaches_this_cpus_tlb(arch: str) -> None:
    outs = _run("thread-own-tlb.scn", arch=arch)
    assert _by_text(outs, "t2 write buf 4K 6  !SIGSEGV:ACCERR").error == "SIGSEGV:ACCERR"


def test_fork_lock_break_runs_tlb_hits_and_blocks_faults() -> None:
    outs = _run("fork-lock-break-tlb-hit.scn")
    ran = [o.ran for o in outs if o.ran]
    assert ran == ["fork.lock_break:1", "fork.lock_break:1", "blocked at fork.lock_break:1, resumed after"]
    fork = _by_text(outs, "c = p fork")
    # Three nested steps; lock breaks after the first and second blocks.
    assert fork.counters["sched.preempt"] == 3
    assert fork.counters["fork.lock_break_point"] == 2
    # The child saw the write through the stale writable entry (9), the
    # walk of the block not copied yet (8), not the blocked fault (0).
    assert _by_text(outs, "c read buf 12K").values == [9, 5, 5]


def test_lockless_reader_restarts_when_another_thread_unfolds_the_block() -> None:
    outs = _run("lockless-torn-block.scn")
    w = _by_text(outs, "p write buf 4K 2")
    assert _by_text(outs, "at contpte_ptep_get_lockless t2 madvise buf+60K 4K dontneed").ran == (
        "contpte_ptep_get_lockless:1"
    )
    assert w.counters["contpte.lockless_retry"] == 1
    assert w.counters["call.contpte_ptep_get_lockless"] == 1
    assert w.counters["contpte.unfold.clear_full_ptes"] == 1
    assert _by_text(outs, "p read buf 64K").values == [2] + [1] * 14 + [0]


def test_lockless_reader_without_preemption_reads_once() -> None:
    sc = parse_file(str(HERE / "lockless-torn-block.scn"))
    sc.steps = [s for s in sc.steps if not s.at]
    outs = run(sc)
    w = _by_text(outs, "p write buf 4K 2")
    assert "contpte.lockless_retry" not in w.counters and not any(o.failed for o in outs)


def test_on_the_generic_backend_the_lockless_point_does_not_exist() -> None:
    outs = _run("lockless-torn-block.scn", arch="generic")
    assert _by_text(outs, "at contpte_ptep_get_lockless t2 madvise buf+60K 4K dontneed").ran == "after"


def test_fork_no_vma_write_lock_is_caught_by_isolation() -> None:
    sc = parse_file("src/contpte/workloads/bugs/fork_no_vma_write_lock.scn")
    clean = run(sc)
    assert not any(o.failed for o in clean)
    assert [o.ran for o in clean if o.ran] == ["blocked at fork.lock_break:1, resumed after"]
    bad = run(sc, bugs=("fork_no_vma_write_lock",))
    assert [o.ran for o in bad if o.ran] == ["fork.lock_break:1"]
    fork = _by_text(bad, "c = p fork")
    # The fault folded the block in between; fork write-protects pages
    # 25-31 of it, a part of the block: unfold.
    assert fork.counters["contpte.unfold.wrprotect_ptes"] == 1 and fork.counters["sched.preempt"] == 1
    # The child maps pages 25-31 of the new folio and not 16-24: it reads 0
    # at page 16 where the parent's thread had written 7 before the copy.
    last = bad[-1]
    assert last.text == "c read buf+64K 64K expect=0x0" and last.error == "violation:isolation"
    assert "read 0x0 at 0x7effffff0000, expected 0x7" in str(last.violation)
    assert last.line == 18 and len(bad) == len(clean) - 1


_SYSCALLS = """\
machine arch=arm64 memory=32M cpus=4 mthp.64K=always check=true
p = spawn
t2 = p thread
q = spawn
buf = p mmap 128K rw private|anonymous
qb = q mmap 64K rw private|anonymous
p write buf 128K 1
at fork.lock_break:1 t2 munmap buf+64K 64K
at fork.lock_break:1 q write qb 64K 4
c = p fork
c read buf+64K 4K expect=1
q read qb 4K expect=4
p read buf+64K 4K  !SIGSEGV:MAPERR
"""


def test_syscalls_of_the_forking_mm_block_other_processes_run() -> None:
    outs = run(parse(_SYSCALLS, "syscalls.scn"))
    assert not any(o.failed for o in outs), [o.failed for o in outs if o.failed]
    assert [o.ran for o in outs if o.ran] == [
        "blocked at fork.lock_break:1, resumed after",
        "fork.lock_break:1",
    ]


_FREE = """\
machine arch=arm64 memory=32M cpus=2 mthp.64K=always check=true
p = spawn
t2 = p thread
buf = p mmap 128K rw private|anonymous
p write buf 4K 1
p madvise buf+4K 60K dontneed
at * t2 write buf+64K 64K 7
c = p fork
c read buf+64K 64K expect=0
p read buf+64K 64K expect=7
"""


def test_explore_visits_every_schedule_and_finds_the_historical_race() -> None:
    sc = parse(_FREE, "free.scn")
    # One copied page (copy_present_ptes:1, where t2's fault blocks on the
    # write-locked VMA) and one lock break (page 25): fire at either, or
    # after the fork.
    res = explore(sc, bound=2)
    assert res.ok and res.complete and (res.schedules, res.decisions) == (3, 5)
    bad = explore(sc, bound=2, bugs=("fork_no_vma_write_lock",))
    # Without the VMA write-lock the fault already runs at the first point,
    # copy_present_ptes:1 (page 0 copied, not yet write-protected).
    assert not bad.ok and bad.choices == [1] and bad.schedules == 2
    assert bad.replay is not None
    text = bad.replay_text()
    assert "at copy_present_ptes:1 t2 write buf+64K 64K 7" in text
    replayed = run(parse(text, "replay.scn"), bugs=("fork_no_vma_write_lock",))
    assert any(o.failed for o in replayed)
    # Zero preemptions: only the schedule that runs t2's write after the fork.
    assert explore(sc, bound=0, bugs=("fork_no_vma_write_lock",)).schedules == 1


def test_explore_random_is_seeded() -> None:
    sc = parse(_FREE, "free.scn")
    a = explore_random(sc, seed=3, runs=20, bugs=("fork_no_vma_write_lock",))
    b = explore_random(sc, seed=3, runs=20, bugs=("fork_no_vma_write_lock",))
    assert not a.ok and (a.schedules, a.choices) == (b.schedules, b.choices)
    assert explore_random(sc, seed=3, runs=20).ok


def test_replay_moves_unfired_steps_after_their_step() -> None:
    sc = parse(_FREE, "free.scn")
    outs = run(sc)
    rp = replay_scenario(sc, outs)
    assert [s.op for s in rp.steps][5:8] == ["fork", "write", "read"]
    assert all(s.at is None for s in rp.steps)


def test_at_syntax_round_trips_and_is_checked() -> None:
    sc = parse(_FREE, "free.scn")
    assert parse(format_scenario(sc), "again.scn").steps == sc.steps
    with pytest.raises(ScenarioError, match=r"free\.scn:7: at: expected"):
        parse(_FREE.replace("at *", "at nowhere"), "free.scn")
    with pytest.raises(ScenarioError, match="binds no name"):
        parse(_FREE.replace("at * t2 write buf+64K 64K 7", "at * x = t2 fork"), "free.scn")


_LOCKLESS_FAULT = """\
machine arch=arm64 memory=32M cpus=2 mthp.64K=always check=true
p = spawn
t2 = p thread
buf = p mmap 64K rw private|anonymous
p write buf 64K 1
c = p fork
at contpte_ptep_get_lockless t2 write buf+32K 4K 3
p write buf 4K 2
p read buf 64K
c read buf 64K expect=1
"""


def test_another_threads_cow_fault_during_the_lockless_read() -> None:
    # t2's write fault takes the per-VMA lock for read too: it runs in p's
    # fault, copies page 8 (wp_page_copy), which unfolds the block under
    # p's reader; p starts again and copies page 0.
    outs = run(parse(_LOCKLESS_FAULT, "lockless-fault.scn"))
    assert not any(o.failed for o in outs), [o.failed for o in outs if o.failed]
    at = _by_text(outs, "at contpte_ptep_get_lockless t2 write buf+32K 4K 3")
    assert at.ran == "contpte_ptep_get_lockless:1"
    w = _by_text(outs, "p write buf 4K 2")
    assert w.counters["contpte.lockless_retry"] == 1
    assert w.counters["fault.wp_copy"] == 2
    assert _by_text(outs, "p read buf 64K").values == [2] + [1] * 7 + [3] + [1] * 7


def test_cli_run_explore(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from contpte import cli

    f = tmp_path / "free.scn"
    f.write_text(_FREE)
    assert cli.main(["run", str(f), "--explore", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["schedules"], out["complete"], out["passed"]) == (3, True, True)
    f.write_text(_FREE.replace("check=true", "check=true bugs=fork_no_vma_write_lock"))
    assert cli.main(["run", str(f), "--explore", "1"]) == 1
    text = capsys.readouterr().out
    assert "the failing interleaving, as a scenario that replays it:" in text
    assert "at copy_present_ptes:1 t2 write buf+64K 64K 7" in text
    assert cli.main(["run", str(f), "--random", "3", "--runs", "20", "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["replay"]
    assert cli.main(["run", str(HERE / "thread-own-tlb.scn"), "--explore", "1"]) == 2


def test_explore_the_lock_break_scenario_with_every_step_free() -> None:
    # The three thread writes of fork-lock-break-tlb-hit.scn, each free to
    # fire at either of fork's two lock breaks or after it: with at most
    # two preemptions every schedule keeps every validator quiet (the
    # file's value expectations are dropped: they hold for one schedule).
    text = (
        (HERE / "fork-lock-break-tlb-hit.scn")
        .read_text()
        .replace("at fork.lock_break:1", "at fork.lock_break")
    )
    text = "\n".join(ln for ln in text.splitlines() if "expect=" not in ln) + "\n"
    res = explore(parse(text, "free-lock-break.scn"), bound=2)
    assert res.ok and res.complete
    assert (res.schedules, res.decisions) == (13, 26)


# -- the mmap_lock read sections, pte_offset_map_lock re-checks, GUP-fast ----------


def test_fault_backs_out_when_another_thread_mapped_the_page_meanwhile() -> None:
    outs = _run("fault-alloc-race.scn")
    w = _by_text(outs, "p write buf 4K 7")
    assert _by_text(outs, "at do_anonymous_page t2 write buf 4K 5").ran == "do_anonymous_page:1"
    # Two anon faults (p's, t2's nested one), one backed out: one folio freed.
    assert (w.counters["fault.anon"], w.counters["fault.pte_changed"], w.counters["folio.free"]) == (2, 1, 1)
    assert _by_text(outs, "t2 read buf 8K").values == [7, 0]


def test_a_large_folio_backs_out_when_its_range_is_no_longer_none() -> None:
    text = (HERE / "fault-alloc-race.scn").read_text().replace("check=true", "mthp.64K=always check=true")
    outs = run(parse(text, "fault-alloc-race-64K.scn"))
    assert not any(o.failed for o in outs)
    w = _by_text(outs, "p write buf 4K 7")
    # pte_range_none() of the 16 entries fails once t2's 64K folio is there.
    # (anon_fault_alloc counts the folio that got mapped: t2's.)
    assert w.counters["fault.pte_changed"] == 1 and w.counters["mthp.64kB.anon_fault_alloc"] == 1
    bad = run(parse(text, "fault-alloc-race-64K.scn"), bugs=("fault_no_pte_recheck",))
    assert any(o.violation is not None for o in bad)


def test_cow_copy_backs_out_when_another_thread_copied_first() -> None:
    outs = _run("cow-copy-race.scn")
    w = _by_text(outs, "p write buf 4K 7")
    assert (w.counters["fault.wp_copy"], w.counters["fault.pte_changed"]) == (2, 1)


@pytest.mark.parametrize(
    ("name", "bug", "rule"),
    [
        ("fault-alloc-race.scn", "fault_no_pte_recheck", "bbm"),
        ("cow-copy-race.scn", "fault_no_pte_recheck", None),
        ("gup-fast-pte-changed.scn", "gup_fast_no_pte_recheck", "pin-mapped"),
        ("fork-gup-fast-seq.scn", "gup_fast_no_write_protect_seq", "pinned-anon-exclusive"),
    ],
)
def test_explore_finds_the_broken_recheck_and_nothing_on_the_kernel(
    name: str, bug: str, rule: str | None
) -> None:
    # Every 'at' step free: the explorer decides where it fires.
    text = (HERE / name).read_text()
    # (GUP-fast reads one PTE: its two steps must both run at that one point)
    text = text.replace("at gup_fast_pte_range t2 madvise", "at gup_fast_pte_range:1 t2 madvise")
    # (values and the unpin hold for one schedule only)
    text = "\n".join(ln for ln in text.splitlines() if "expect=" not in ln and "unpin" not in ln) + "\n"
    sc = parse(text, name)
    good = explore(sc, bound=2)
    assert good.ok and good.complete
    bad = explore(sc, bound=2, bugs=(bug,))
    assert not bad.ok and bad.schedules <= good.schedules
    assert bad.failure is not None
    hit = next(o for o in bad.failure if o.violation is not None)
    if rule is not None:
        assert hit.violation is not None and hit.violation.rule == rule


def test_gup_fast_drops_the_pin_of_a_page_that_changed_under_it() -> None:
    outs = _run("gup-fast-pte-changed.scn")
    pin = _by_text(outs, "p pin buf 4K")
    assert (pin.counters["gup.fast_backout"], pin.counters["gup.pin"]) == (1, 1)
    assert "gup.fast" not in pin.counters  # the slow path pinned it


def test_gup_fast_pins_a_mapped_page_without_faulting() -> None:
    m = contpte.Machine(arch="arm64", memory="32M", mthp={"64K": "always"}, check=True)
    p = m.spawn()
    a = p.mmap(BLOCK)
    p.write(a, BLOCK, 1)
    s = m.stats()
    p.pin(a, BLOCK)
    d = {k: v - s.get(k, 0) for k, v in m.stats().items() if v != s.get(k, 0)}
    # 16 lockless reads of the folded block (contpte_ptep_get_lockless each), no fault.
    assert (d["gup.fast"], d["gup.pin"], d["call.contpte_ptep_get_lockless"]) == (16, 16, 16)
    assert "pgfault" not in d
    p.unpin(a, BLOCK)
    assert_checked(m)


def test_fork_write_protect_seq_sends_gup_fast_to_the_slow_path() -> None:
    outs = _run("fork-gup-fast-seq.scn")
    at = _by_text(outs, "at copy_present_ptes:1 t2 pin buf 4K")
    # The seqcount is odd: GUP-fast pins nothing; the slow path sleeps on
    # the mmap_lock fork holds and runs after it.
    assert at.ran == "blocked at copy_present_ptes:1, resumed after"
    bad = run(parse_file(str(HERE / "fork-gup-fast-seq.scn")), bugs=("gup_fast_no_write_protect_seq",))
    fork = _by_text(bad, "c = p fork")
    assert fork.error == "violation:pinned-anon-exclusive"


def test_dontneed_zap_point_runs_faults_between_tables() -> None:
    outs = _run("dontneed-zap-fault.scn")
    assert [o.ran for o in outs if o.ran] == ["zap_pte_range:1", "zap_pte_range:1"]
    assert _by_text(outs, "at zap_pte_range:1 t2 read buf+3M 4K").values == [1]
    res = explore(parse((HERE / "dontneed-zap-fault.scn").read_text(), "z.scn"), bound=1)
    assert res.ok and res.complete


_MADV_SPLIT = """\
machine arch=arm64 memory=32M cpus=2 mthp.64K=always check=true
p = spawn
t2 = p thread
buf = p mmap 128K rw private|anonymous
p write buf 128K 1
at {point} t2 write buf+32K 4K 5
p madvise buf+16K 16K {advice}
p read buf+32K 4K expect=5
"""


@pytest.mark.parametrize(
    ("point", "advice"),
    [("madvise_free_pte_range", "free"), ("madvise_cold_or_pageout_pte_range", "cold")],
)
def test_madvise_split_window_is_a_point(point: str, advice: str) -> None:
    # The 64K folio is only partly covered: madvise splits it with the PTL
    # dropped; t2 writes a page of it meanwhile, then the walk goes on.
    outs = run(parse(_MADV_SPLIT.format(point=point, advice=advice), "split.scn"))
    assert not any(o.failed for o in outs), [o.failed for o in outs if o.failed]
    assert outs[4].ran == f"{point}:1"


_DONTNEED_STALE_READ = """\
machine arch=arm64 memory=32M cpus=1 mthp.64K=never check=true
p = spawn
t2 = p thread
buf = p mmap 172K rw private|anonymous
p write buf 64K 7
at zap_pte_range t2 read buf+56K 4K
p madvise buf 64K dontneed
t2 read buf+56K 4K expect=0
p read buf 64K expect=0
"""


def test_a_read_racing_with_dontneed_may_see_the_old_page_until_the_flush() -> None:
    # zap_pte_range cleared the PTEs but the gather has not flushed the TLB
    # (nor freed the pages): t2, on the CPU whose TLB holds buf+56K, reads
    # the old value through it, which Linux allows for a program racing
    # with its own MADV_DONTNEED (found by contpte fuzz, seed 20261213, as a
    # false isolation violation).  Once madvise returns, the page reads 0.
    outs = run(parse(_DONTNEED_STALE_READ, "stale.scn"))
    assert not [o for o in outs if o.failed], [o.failed for o in outs if o.failed]
    at = _by_text(outs, "at zap_pte_range t2 read buf+56K 4K")
    assert at.ran == "zap_pte_range:1" and at.values == [7]


_DONTNEED_SHARED_STALE_READ = """\
machine arch=generic memory=32M cpus=4 mthp.64K=always check=true max_gather_batch_count=1
p1 = spawn
m5 = p1 mmap 64K rw private|anonymous
p1 write m5 24K 0xa23c
c6 = p1 fork
c10 = c6 fork
p11 = spawn
t13 = p11 thread
c15 = p11 fork
t16 = c10 thread
c10 read m5+20K 4K
at zap_pte_range t16 read m5+16K 18K
c10 madvise m5+12K 24K dontneed
c10 read m5+12K 24K expect=0
"""


def test_a_read_racing_with_dontneed_of_a_cow_shared_page_is_no_breach() -> None:
    # t16 shares c10's CPU (4 CPUs, the fifth task wraps) and reads m5+20K
    # through the TLB entry c10's read filled, after the zap cleared it and
    # before its flush; the frame is still mapped (read-only, CoW) by c10's
    # parent and grandparent and held by the gather: reading it is no
    # isolation breach (contpte fuzz --seed 3, generic, a false stale-tlb).
    outs = run(parse(_DONTNEED_SHARED_STALE_READ, "shared-stale.scn"))
    assert not [o for o in outs if o.failed], [o.failed for o in outs if o.failed]
    at = _by_text(outs, "at zap_pte_range t16 read m5+16K 18K")
    assert at.ran == "zap_pte_range:1"
    # m5+16K has no TLB entry: a fault maps a new zero page; m5+20K is read
    # through the stale entry: the old value.
    assert at.values[:2] == [0, 0xA23C]


_DONTNEED_FAULT_OVER_STALE = """\
machine arch=generic memory=32M cpus=1 mthp.32K=always check=true
p1 = spawn
m2 = p1 mmap 64K rw private|anonymous
p1 read m2+24K 4K
t5 = p1 thread
p1 write m2+28K 4K 0x489b
at zap_pte_range t5 write m2+16K 24K 0x9620
p1 madvise m2+4K 30K dontneed
p1 read m2+24K 4K expect=0x9620
p1 read m2+28K 4K expect=0
"""


def test_a_write_racing_with_dontneed_through_an_entry_a_fault_remapped_is_lost() -> None:
    # The zap cleared m2+28K (its flush pending); t5's fault at m2+24K maps a
    # new 32K folio over the cleared entries, m2+28K included; t5's write at
    # m2+28K then goes through the CPU's stale TLB entry into the old page,
    # which the gather holds and frees after the flush: the write is lost,
    # the program's own race, not an isolation breach (contpte fuzz seed
    # 20261214, generic, a false stale-tlb).
    outs = run(parse(_DONTNEED_FAULT_OVER_STALE, "lost.scn"))
    assert not [o for o in outs if o.failed], [o.failed for o in outs if o.failed]
    assert _by_text(outs, "at zap_pte_range t5 write m2+16K 24K 0x9620").ran == "zap_pte_range:1"


_DONTNEED_PRIVATE_FILE_REFAULT = """\
machine arch=arm64 memory=32M cpus=4 mthp.64K=always check=true
p1 = spawn
f3 = file file3 4M folio=128K
m14 = p1 mmap 64K rw private file=f3 offset=320K
p1 write m14 32K 0x829f
t19 = p1 thread
at zap_pte_range t19 read m14+24K 4K
p1 madvise m14 26K dontneed
p1 read m14+24K 4K
p1 read m14+28K 4K expect=0x829f
"""


def test_a_private_file_page_zapped_under_a_reader_reads_the_file_again() -> None:
    # MADV_DONTNEED of 26K (rounded up to 28K) on a private file mapping
    # written (CoW) in its first 32K: t19, on another CPU with no TLB entry,
    # faults on m14+24K after the zap passed it and maps the file's page
    # again, which Linux allows; the validators accept the file's value
    # there and from then on (contpte fuzz seed 20261217, a false isolation
    # violation; the zap's range was also rounded down before).
    outs = run(parse(_DONTNEED_PRIVATE_FILE_REFAULT, "file-refault.scn"))
    assert not [o for o in outs if o.failed], [o.failed for o in outs if o.failed]
    at = _by_text(outs, "at zap_pte_range t19 read m14+24K 4K")
    assert at.ran == "zap_pte_range:1"
    after = _by_text(outs, "p1 read m14+24K 4K")
    assert at.values == after.values and at.values != [0x829F]


_WP_COPY_BACKS_OFF_ON_A_GATHERED_YOUNG_BIT = """\
machine arch=arm64 memory=32M cpus=4 mthp.128K=always check=true swap=8M bbml2_noabort=true cpu=neoverse-v3
p1 = spawn
f4 = file file4 1M folio=128K
m3 = p1 mmap 128K rw private file=f4
p1 pin m3+100K 8K
c7 = p1 fork
p1 read m3+8K 4K
t10 = p1 thread
at fork.lock_break:3 reclaim
c11 = c7 fork
at wp_page_copy t10 read m3+60K 4K
p1 write m3+8K 4K 0x23c6
p1 read m3+8K 4K expect=0x23c6
"""


def test_a_cow_fault_retried_after_a_thread_touched_its_block_is_no_fault_loop() -> None:
    # Reclaim cleared the young bits of p1's folded block of file pages; p1's
    # write fault on m3+8K read the block's gathered (old) entry, and inside
    # wp_page_copy() t10's read of m3+60K set the access flag of another
    # entry of the block in hardware: the gathered entry is young now, so
    # pte_same() fails and the fault backs off with the descriptor of m3+8K
    # unchanged.  Linux retries and copies; the fault-loop check used to call
    # this a loop (contpte fuzz seed 20261221, arm64-bbml2, 6.15 to 7.2).
    outs = run(parse(_WP_COPY_BACKS_OFF_ON_A_GATHERED_YOUNG_BIT, "wp-copy-young.scn"))
    assert not [o for o in outs if o.failed], [o.failed for o in outs if o.failed]
    w = _by_text(outs, "p1 write m3+8K 4K 0x23c6")
    assert (w.counters["fault.pte_changed"], w.counters["pgfault"], w.counters["hw.af_update"]) == (1, 2, 1)
    assert w.counters["fault.wp_copy"] == 2


def test_state_pictures_skip_a_thread_step() -> None:
    # `contpte run --state` on a file with a `thread` step (no range) raised KeyError.
    sc = parse(_WP_COPY_BACKS_OFF_ON_A_GATHERED_YOUNG_BIT, "wp-copy-young.scn")
    outs = run(sc, observe_state=True)
    assert _by_text(outs, "t10 = p1 thread").ptes is None
    assert _by_text(outs, "p1 write m3+8K 4K 0x23c6").ptes is not None
