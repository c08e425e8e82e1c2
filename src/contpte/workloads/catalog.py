"""``contpte check --bugs``: does each catalogued bug get caught by the general validators?

For every entry of ``contpte.bugs.BUGS`` the scenario
``workloads/bugs/<name>.scn`` runs twice: on the mainline model, where it must
pass (every step as expected, no violation), and with the bug re-introduced
(``bugs=(<name>,)``), where some *general* validator must raise: a kernel
invariant (``check/validators.py``), a modelled VM_BUG_ON, or an Arm ARM rule
of the hardware checker.  No rule exists for one bug only.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Any

from ..bugs import BUGS
from .scenario import Outcome, Scenario, parse, run

__all__ = ["GENERAL_RULES", "BugResult", "bug_scenario", "check_bug", "check_bugs"]

GENERAL_RULES = frozenset(
    {
        # kernel invariants (check/validators.py)
        "mapcount",
        "refcount>=mapcount",
        "rss",
        "writable-anon-exclusive",
        "writable-shared",
        "isolation",
        "fork-copy",
        "pinned-anon-exclusive",
        "pin-mapped",
        "fault-loop",
        # modelled VM_BUG_ON / VM_WARN_ON
        "VM_BUG_ON",
        "VM_WARN_ON",
        "VM_BUG_ON_FOLIO",
        "VM_BUG_ON_VMA",
        "folio-refcount",
        # Arm ARM rules (hw/checker.py)
        "contig-consistency",
        "bbm",
        "tlbi-coverage",
        "tlb-conflict",
        "stale-tlb",
        "stale-tlb-at-return",  # workloads/scenario.py, after every step
        "unflushed-at-return",  # the same return check, from the stores and TLBIs
        "unobserved-store",
        "freed-frame-in-tlb",
    }
)
"""The rules of the general validators: catching a bug means one of these fired."""


@dataclass
class BugResult:
    name: str
    description: str
    scenario: str
    clean_ok: bool
    clean_failure: str | None
    caught: bool
    rule: str | None
    step: str | None
    message: str | None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def bug_scenario(name: str) -> Scenario:
    """The exposing scenario of catalog entry ``name``."""
    res = resources.files("contpte.workloads").joinpath("bugs", f"{name}.scn")
    return parse(res.read_text(encoding="utf-8"), f"contpte/workloads/bugs/{name}.scn")


def _first_failure(outs: list[Outcome]) -> Outcome | None:
    return next((o for o in outs if o.failed), None)


def check_bug(name: str) -> BugResult:
    """Run entry ``name`` without and with the bug."""
    bug = BUGS[name]
    sc = bug_scenario(name)
    clean = run(sc, counters=False)
    cf = _first_failure(clean)
    with_bug = run(sc, counters=False, bugs=(name,))
    hit = next((o for o in with_bug if o.violation is not None), None)
    caught = hit is not None and hit.violation is not None and hit.violation.rule in GENERAL_RULES
    return BugResult(
        name=name,
        description=bug.description,
        scenario=sc.path,
        clean_ok=cf is None,
        clean_failure=None if cf is None else f"line {cf.line}: {cf.failed}",
        caught=caught,
        rule=hit.violation.rule if hit is not None and hit.violation is not None else None,
        step=f"line {hit.line}: {hit.text}" if hit is not None else None,
        message=str(hit.violation) if hit is not None and hit.violation is not None else None,
    )


def check_bugs(names: list[str] | None = None) -> list[BugResult]:
    """Every catalog entry (or ``names``), in catalog order."""
    return [check_bug(n) for n in (names or list(BUGS))]
