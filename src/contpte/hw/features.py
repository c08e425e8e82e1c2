"""CPU feature sets: what the MMU and TLB of a machine implement.

Field names follow the Arm ARM ID registers: ``hafdbs`` is
ID_AA64MMFR1_EL1.HAFDBS (FEAT_HAFDBS), ``bbm_level`` is ID_AA64MMFR2_EL1.BBM
(FEAT_BBM: 0 BBM required, 1 FEAT_BBML1, 2 FEAT_BBML2), ``tlbirange`` is
ID_AA64ISAR0_EL1.TLB >= 0b0010 (FEAT_TLBIRANGE).  ``bbml2_noabort`` is not an
architectural field: it is the vendor promise (MIDR allow-list in Linux)
that BBML2 never raises a TLB conflict abort.  ``tlb_entries`` and
``contig_tlb`` are micro-architecture: the unified L2 TLB capacity and whether
a Contiguous-bit block is cached as one entry (the architecture permits but
does not require it, Arm ARM D8.7.1).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..errors import ModelUsageError

__all__ = ["CpuFeatures", "PRESETS", "preset", "system_features", "BBML2_NOABORT_CPU", "DEFAULT_CPU"]


@dataclass(frozen=True)
class CpuFeatures:
    """The translation-relevant features of one CPU type.

    ``name``: preset name.  ``hafdbs``: 0 none, 1 hardware Access flag,
    2 Access flag and dirty state (TCR_EL1.HA/HD set when implemented).
    ``bbm_level``: FEAT_BBM level 0/1/2.  ``bbml2_noabort``: BBML2 without TLB
    conflict aborts.  ``tlbirange``: FEAT_TLBIRANGE (TLBI RVAE1IS and
    friends).  ``kpti``: the kernel unmaps itself at EL0 (every user TLBI is
    issued twice; the hardware only records it).  ``tlb_entries``: per-CPU
    unified L2 TLB capacity.  ``contig_tlb``: a Contiguous block is cached as
    one TLB entry.  ``fmt``: the translation-table format the CPU walks
    (``"vmsa"``: Arm VMSAv8-64; ``"flat"``: the x86-like format).
    """

    name: str
    hafdbs: int = 2
    bbm_level: int = 0
    bbml2_noabort: bool = False
    tlbirange: bool = False
    kpti: bool = False
    tlb_entries: int = 1280
    contig_tlb: bool = True
    fmt: str = "vmsa"

    def __post_init__(self) -> None:
        if self.fmt not in ("vmsa", "flat"):
            raise ModelUsageError(f"CpuFeatures.fmt must be 'vmsa' or 'flat', not {self.fmt!r}")
        if self.hafdbs not in (0, 1, 2):
            raise ModelUsageError(f"CpuFeatures.hafdbs must be 0, 1 or 2, not {self.hafdbs!r}")
        if self.bbm_level not in (0, 1, 2):
            raise ModelUsageError(f"CpuFeatures.bbm_level must be 0, 1 or 2, not {self.bbm_level!r}")
        if self.bbml2_noabort and self.bbm_level < 2:
            raise ModelUsageError("CpuFeatures.bbml2_noabort needs bbm_level=2 (FEAT_BBML2)")
        if self.tlb_entries < 1:
            raise ModelUsageError(f"CpuFeatures.tlb_entries must be >= 1, not {self.tlb_entries!r}")

    @property
    def ha(self) -> bool:
        """TCR_EL1.HA in effect: hardware Access flag management."""
        return self.hafdbs >= 1

    @property
    def hd(self) -> bool:
        """TCR_EL1.HD in effect: hardware dirty state management (DBM)."""
        return self.hafdbs >= 2


PRESETS: dict[str, CpuFeatures] = {
    # Arm Neoverse N1 TRM (100616): Armv8.2-A; ID_AA64MMFR1_EL1.HAFDBS = 0b0010;
    # ID_AA64MMFR2_EL1.BBM = 0 (field added in v8.4); no FEAT_TLBIRANGE (v8.4);
    # L2 TLB 1280 entries, 5-way.  Not affected by Meltdown, so no KPTI.
    # This is the core of the Ampere Altra.
    "neoverse-n1": CpuFeatures(
        name="neoverse-n1",
        hafdbs=2,
        bbm_level=0,
        tlbirange=False,
        kpti=False,
        tlb_entries=1280,
    ),
    # Arm Neoverse V2 TRM (102375): Armv9.0-A, FEAT_TLBIRANGE, HAFDBS = 0b0010.
    # BBM level 2 as reported by ID_AA64MMFR2_EL1 (approximate: from the TRM
    # register summary), but not on Linux's BBML2_NOABORT allow-list.
    # L2 TLB 2048 entries, 8-way (approximate).
    "neoverse-v2": CpuFeatures(
        name="neoverse-v2",
        hafdbs=2,
        bbm_level=2,
        bbml2_noabort=False,
        tlbirange=True,
        kpti=False,
        tlb_entries=2048,
    ),
    # Arm Neoverse V3 TRM (107734): Armv9.2-A, FEAT_TLBIRANGE, HAFDBS =
    # 0b0010, BBM level 2; on Linux's BBML2_NOABORT allow-list (r0p0..r2p15,
    # arch/arm64/kernel/cpufeature.c has_bbml2_noabort(), from v6.17: "arm64:
    # Add BBM Level 2 cpu feature"; the list is a MIDR allow-list and the
    # kernel ignores ID_AA64MMFR2_EL1.BBM), so the kernel skips the
    # intermediate TLBI of a contpte conversion.  L2 TLB 2048 entries
    # (approximate).  Neoverse-V3AE is on the list too (same core for the
    # model).
    "neoverse-v3": CpuFeatures(
        name="neoverse-v3",
        hafdbs=2,
        bbm_level=2,
        bbml2_noabort=True,
        tlbirange=True,
        kpti=False,
        tlb_entries=2048,
    ),
    # Arm Cortex-X4 TRM (102484): Armv9.2-A, FEAT_TLBIRANGE, HAFDBS =
    # 0b0010, BBM level 2; on the BBML2_NOABORT allow-list from the start
    # (r0p0..r3p15).  L2 TLB 2048 entries (approximate).
    "cortex-x4": CpuFeatures(
        name="cortex-x4",
        hafdbs=2,
        bbm_level=2,
        bbml2_noabort=True,
        tlbirange=True,
        kpti=False,
        tlb_entries=2048,
    ),
    # Ampere AmpereOne (MIDR_AMPERE1) and AmpereOne A (MIDR_AMPERE1A):
    # Armv8.6+ server cores.  On the BBML2_NOABORT allow-list (all
    # revisions) only from a later release: 6.17.8 lacks them, 6.18.15 and
    # 6.19.6 list them (mainline 6.18 or a stable backport: not checked), so
    # the model's 6.17 treats them as listed too.  BBM level 2 as the vendor
    # attests; FEAT_TLBIRANGE and HAFDBS = 0b0010 assumed (approximate: no
    # public TRM); L2 TLB 2048 entries (approximate).
    "ampereone": CpuFeatures(
        name="ampereone",
        hafdbs=2,
        bbm_level=2,
        bbml2_noabort=True,
        tlbirange=True,
        kpti=False,
        tlb_entries=2048,
    ),
    # Apple M2 (Avalanche/Blizzard): no Arm TRM; figures approximate, from
    # public ID register dumps and micro-benchmarks: FEAT_TLBIRANGE present,
    # no hardware Access flag or dirty management, BBM level 0 assumed,
    # L2 TLB about 3072 entries.  (Apple runs 16K pages; the granule is the
    # Hardware's page_shift, not a CPU feature.)  Not on Linux's
    # BBML2_NOABORT allow-list (v6.17 to v7.2).
    "apple-m2": CpuFeatures(
        name="apple-m2",
        hafdbs=0,
        bbm_level=0,
        tlbirange=True,
        kpti=False,
        tlb_entries=3072,
    ),
    # Arm Cortex-A76 TRM (100798): Armv8.2-A, HAFDBS = 0b0010, no
    # FEAT_TLBIRANGE, L2 TLB 1280 entries, 5-way.  Not affected by Meltdown.
    "cortex-a76": CpuFeatures(
        name="cortex-a76",
        hafdbs=2,
        bbm_level=0,
        tlbirange=False,
        kpti=False,
        tlb_entries=1280,
    ),
    # Arm Cortex-A55 TRM (100442): Armv8.2-A, implements HAFDBS = 0b0010,
    # but Linux never enables hardware dirty management on it: erratum
    # 1024718 (arch/arm64/kernel/cpufeature.c cpu_has_broken_dbm(), all
    # revisions) leaves TCR_EL1.HD clear while TCR_EL1.HA stays set, so the
    # hafdbs in effect is 1.  DBM is a per-CPU feature in Linux: a big.LITTLE
    # machine of Cortex-A76 and Cortex-A55 cores (``cpu=["cortex-a76",
    # "cortex-a55"]``) has walkers with and without hardware dirty updates.
    # No FEAT_TLBIRANGE, BBM level 0, L2 TLB 1024 entries.  Not affected by
    # Meltdown.
    "cortex-a55": CpuFeatures(
        name="cortex-a55",
        hafdbs=1,
        bbm_level=0,
        tlbirange=False,
        kpti=False,
        tlb_entries=1024,
    ),
    # An x86-64 core for the Flat format: hardware always sets Accessed and
    # Dirty; no contiguous hint; no broadcast invalidation (INVLPG is local).
    # STLB about 1536 entries (Intel Skylake / AMD Zen 2 class; approximate).
    "x86": CpuFeatures(
        name="x86",
        hafdbs=2,
        bbm_level=0,
        tlbirange=False,
        kpti=False,
        tlb_entries=1536,
        contig_tlb=False,
        fmt="flat",
    ),
}


def preset(name: str) -> CpuFeatures:
    """Return the preset ``name``; raise ``ModelUsageError`` naming the choices."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ModelUsageError(
            f"unknown CPU preset {name!r}; expected one of {', '.join(sorted(PRESETS))}"
        ) from None


BBML2_NOABORT_CPU = "neoverse-v3"
"""The preset a machine gets when it runs with BBML2_NOABORT and names no CPU."""

DEFAULT_CPU: dict[str, str] = {"vmsa": "neoverse-n1", "flat": "x86"}
"""The preset a machine gets when it names no CPU, per translation-table format."""


#: The fields every CPU of one machine must share (the model's hardware-wide
#: features); hafdbs and tlb_entries may differ per CPU.
SHARED_FIELDS = ("fmt", "bbm_level", "bbml2_noabort", "tlbirange", "kpti", "contig_tlb")


def system_features(cpus: list[CpuFeatures]) -> CpuFeatures:
    """The system-wide features of a heterogeneous machine (one ``CpuFeatures`` per CPU).

    Like Linux, which enables hardware Access flag and dirty management per
    CPU (DBM is a "weak local" CPU feature), the CPUs may differ in
    ``hafdbs`` (and TLB size); everything else must agree.  The result
    carries the highest ``hafdbs``: a DBM descriptor counts as writable if
    any walker may set its dirty state.
    """
    first = cpus[0]
    for f in cpus[1:]:
        for field in SHARED_FIELDS:
            if getattr(f, field) != getattr(first, field):
                raise ModelUsageError(
                    f"CPUs {first.name} and {f.name} differ in {field} "
                    f"({getattr(first, field)!r} vs {getattr(f, field)!r}); the CPUs of one machine "
                    "may differ only in hafdbs and tlb_entries"
                )
    names = "+".join(dict.fromkeys(f.name for f in cpus))
    return replace(first, name=names, hafdbs=max(f.hafdbs for f in cpus))
