"""SDTM trial design datasets (TA, TE, TV, TI, TS), generated from the protocol file alone.

Epochs and elements: every arm passes SCREENING (element SCRN), then TREATMENT (one element per
arm: no therapy, or the arm's IL-2 cycles with or without peri-cycle ART, from randomization to the
end of the last cycle) and FOLLOW-UP (element FU). ``visit_schedule`` numbers every visit the
protocol plans (scheduled, cycle and extended follow-up visits) by planned study day; SV, LB and
the findings of other domains use the same VISITNUM, so TV and the data agree.

Study days follow SDTM: the day of randomization (protocol day 0) is study day 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from stalwart.cdisc.sdtmig import IG_VERSION, SDTM_VERSION, order_by_ig
from stalwart.cdisc.xpt import Dataset, Variable
from stalwart.protocol.calendar import participant_calendar
from stalwart.protocol.schema import Protocol
from stalwart.protocol.submission import TS_PARAMETERS

__all__ = [
    "ROUTES",
    "PlannedVisit",
    "derive_ta",
    "derive_te",
    "derive_ti",
    "derive_ts",
    "derive_tv",
    "epoch_of",
    "sdtm_day",
    "treatment_epoch_end",
    "trial_design",
    "visit_schedule",
]

ROUTES = {"SC": "SUBCUTANEOUS", "PO": "ORAL", "IV": "INTRAVENOUS", "IM": "INTRAMUSCULAR"}
"""Protocol route codes -> CDISC ROUTE terms (EX, CM and TS)."""

_COMMON = (
    Variable("STUDYID", "Study Identifier"),
    Variable("DOMAIN", "Domain Abbreviation"),
)


@dataclass(frozen=True)
class PlannedVisit:
    """A visit of the protocol with its SDTM number, planned study day and the arms that have it."""

    visitnum: int
    code: str
    name: str
    study_day: int
    arms: tuple[str, ...]

    @property
    def visitdy(self) -> int:
        """Planned study day in SDTM counting (randomization is day 1)."""
        return sdtm_day(self.study_day)


def sdtm_day(protocol_day: int) -> int:
    """SDTM study day of a protocol day (day 0 = randomization = study day 1; no day 0)."""
    return protocol_day + 1 if protocol_day >= 0 else protocol_day


def visit_schedule(protocol: Protocol) -> list[PlannedVisit]:
    """Every visit any arm may have, numbered 1..N by planned study day (then code)."""
    start = protocol.study.accrual_start
    seen: dict[str, tuple[str, int, list[str]]] = {}
    for arm in protocol.arms:
        for v in participant_calendar(protocol, arm.code, start).visits:
            entry = seen.setdefault(v.code, (v.name, v.study_day, []))
            entry[2].append(arm.code)
    ordered = sorted(seen.items(), key=lambda kv: (kv[1][1], kv[0]))
    return [
        PlannedVisit(i, code, name, day, tuple(arms))
        for i, (code, (name, day, arms)) in enumerate(ordered, start=1)
    ]


def _frame(rows: list[dict[str, Any]], variables: tuple[Variable, ...]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=[v.name for v in variables])


def _design(
    name: str,
    label: str,
    variables: tuple[Variable, ...],
    frame: pd.DataFrame,
    keys: tuple[str, ...],
    structure: str,
    klass: str,
) -> Dataset:
    """A trial design dataset sorted by its SDTMIG keys."""
    frame = frame.sort_values(list(keys), kind="mergesort").reset_index(drop=True)
    names = order_by_ig(name, [v.name for v in variables])
    by_name = {v.name: v for v in variables}
    return Dataset(
        name, label, tuple(by_name[n] for n in names), frame[names], keys, structure, klass
    )


def _treatment_end_day(protocol: Protocol, arm: str) -> int:
    """Last protocol day of the arm's treatment (0 when the arm receives none)."""
    cal = participant_calendar(protocol, arm, protocol.study.accrual_start)
    return max((d.study_day for d in cal.doses), default=0)


def _element_code(arm_code: str) -> str:
    return arm_code[:8]


def derive_te(protocol: Protocol) -> Dataset:
    """TE: screening, one treatment element per arm, follow-up."""
    variables = (
        *_COMMON,
        Variable("ETCD", "Element Code"),
        Variable("ELEMENT", "Description of Element"),
        Variable("TESTRL", "Rule for Start of Element"),
        Variable("TEENRL", "Rule for End of Element"),
        Variable("TEDUR", "Planned Duration of Element"),
    )
    sid = protocol.study.id
    rows: list[dict[str, object]] = [
        {
            "ETCD": "SCRN",
            "ELEMENT": "Screening",
            "TESTRL": "Informed consent",
            "TEENRL": "Randomization",
            "TEDUR": "",
        }
    ]
    for arm in protocol.arms:
        end = _treatment_end_day(protocol, arm.code)
        names = [protocol.treatments[t].name for t in arm.treatments]
        rows.append(
            {
                "ETCD": _element_code(arm.code),
                "ELEMENT": arm.name,
                "TESTRL": "Randomization to " + arm.code,
                "TEENRL": f"Study day {sdtm_day(end)}: end of the last cycle of "
                + " and ".join(names)
                if arm.treatments
                else "End of the last IL-2 cycle of the treated arms",
                "TEDUR": f"P{end + 1}D" if arm.treatments else "",
            }
        )
    last = protocol.visits[-1]
    rows.append(
        {
            "ETCD": "FU",
            "ELEMENT": "Follow-up",
            "TESTRL": "End of the treatment element",
            "TEENRL": f"Visit {last.code} (study day {sdtm_day(last.day)}) or end of follow-up",
            "TEDUR": "",
        }
    )
    frame = _frame([{"STUDYID": sid, "DOMAIN": "TE", **r} for r in rows], variables)
    return _design(
        "TE",
        "Trial Elements",
        variables,
        frame,
        ("STUDYID", "ETCD"),
        "One record per planned Element",
        "TRIAL DESIGN",
    )


def derive_ta(protocol: Protocol) -> Dataset:
    """TA: each arm as screening, its treatment element and follow-up, by epoch."""
    variables = (
        *_COMMON,
        Variable("ARMCD", "Planned Arm Code"),
        Variable("ARM", "Description of Planned Arm"),
        Variable("TAETORD", "Planned Order of Element within Arm", "Num"),
        Variable("ETCD", "Element Code"),
        Variable("ELEMENT", "Description of Element"),
        Variable("TABRANCH", "Branch"),
        Variable("TATRANS", "Transition Rule"),
        Variable("EPOCH", "Epoch"),
    )
    rows = []
    for arm in protocol.arms:
        steps = [
            ("SCRN", "Screening", f"Randomized to {arm.name}", "", "SCREENING"),
            (_element_code(arm.code), arm.name, "", "", "TREATMENT"),
            ("FU", "Follow-up", "", "", "FOLLOW-UP"),
        ]
        for order, (etcd, element, branch, trans, epoch) in enumerate(steps, start=1):
            rows.append(
                {
                    "STUDYID": protocol.study.id,
                    "DOMAIN": "TA",
                    "ARMCD": arm.code,
                    "ARM": arm.name,
                    "TAETORD": float(order),
                    "ETCD": etcd,
                    "ELEMENT": element,
                    "TABRANCH": branch,
                    "TATRANS": trans,
                    "EPOCH": epoch,
                }
            )
    return _design(
        "TA",
        "Trial Arms",
        variables,
        _frame(rows, variables),
        ("STUDYID", "ARMCD", "TAETORD"),
        "One record per planned Element per Arm",
        "TRIAL DESIGN",
    )


def derive_tv(protocol: Protocol) -> Dataset:
    """TV: planned visits; a visit only some arms have (cycle visits) gets one row per arm."""
    variables = (
        *_COMMON,
        Variable("VISITNUM", "Visit Number", "Num"),
        Variable("VISIT", "Visit Name"),
        Variable("VISITDY", "Planned Study Day of Visit", "Num"),
        Variable("ARMCD", "Planned Arm Code"),
        Variable("ARM", "Description of Planned Arm"),
        Variable("TVSTRL", "Visit Start Rule"),
        Variable("TVENRL", "Visit End Rule"),
    )
    names = {a.code: a.name for a in protocol.arms}
    every = tuple(a.code for a in protocol.arms)
    rows = []
    for v in visit_schedule(protocol):
        arms: tuple[str | None, ...] = (None,) if v.arms == every else v.arms
        for arm in arms:
            rows.append(
                {
                    "STUDYID": protocol.study.id,
                    "DOMAIN": "TV",
                    "VISITNUM": float(v.visitnum),
                    "VISIT": v.name,
                    "VISITDY": float(v.visitdy),
                    "ARMCD": arm or "",
                    "ARM": names[arm] if arm else "",
                    "TVSTRL": f"Study day {v.visitdy} ({v.code})",
                    "TVENRL": "",
                }
            )
    return _design(
        "TV",
        "Trial Visits",
        variables,
        _frame(rows, variables),
        ("STUDYID", "VISITNUM", "ARMCD"),
        "One record per planned Visit per Arm",
        "TRIAL DESIGN",
    )


def derive_ti(protocol: Protocol) -> Dataset:
    """TI: the eligibility criteria, with their rule as the protocol states it."""
    variables = (
        *_COMMON,
        Variable("IETESTCD", "Incl/Excl Criterion Short Name"),
        Variable("IETEST", "Inclusion/Exclusion Criterion"),
        Variable("IECAT", "Inclusion/Exclusion Category"),
        Variable("TIRL", "Inclusion/Exclusion Criterion Rule"),
    )
    rows = [
        {
            "STUDYID": protocol.study.id,
            "DOMAIN": "TI",
            "IETESTCD": c.id,
            "IETEST": c.text,
            "IECAT": c.kind.upper(),
            "TIRL": f"{c.rule.item} {c.rule.op} {c.rule.value}",
        }
        for c in protocol.eligibility
    ]
    return _design(
        "TI",
        "Trial Inclusion/Exclusion Criteria",
        variables,
        _frame(rows, variables),
        ("STUDYID", "IETESTCD"),
        "One record per I/E criterion",
        "TRIAL DESIGN",
    )


_PHASE = {
    "I": "PHASE I TRIAL",
    "II": "PHASE II TRIAL",
    "III": "PHASE III TRIAL",
    "IV": "PHASE IV TRIAL",
}
_BLIND = {
    "open-label": "OPEN LABEL",
    "single-blind": "SINGLE BLIND",
    "double-blind": "DOUBLE BLIND",
}


_DATES = ("SSTDTC", "SENDTC", "DCUTDTC", "LENGTH", "AGEMIN", "AGEMAX")
"""TS parameters whose value is an ISO 8601 date or duration (TSVCDREF ``ISO 8601``)."""
_NULL_FLAVOURS = ("PINF", "NINF", "NA", "UNK", "NI", "NASK")
"""ISO 21090 null flavours: a protocol value that is one goes to TSVALNF, TSVAL left empty."""


def _ts_parameters(protocol: Protocol, subjects: int | None) -> list[tuple[str, str, str]]:
    s = protocol.study
    rows = [
        ("TITLE", "Trial Title", s.title),
        ("TPHASE", "Trial Phase Classification", _PHASE.get(s.phase, s.phase)),
        ("STYPE", "Study Type", "INTERVENTIONAL"),
        ("TBLIND", "Trial Blinding Schema", _BLIND[s.blinding]),
        ("RANDOM", "Trial is Randomized", "Y"),
        ("TCNTRL", "Control Type", "NO TREATMENT"),
        ("NARMS", "Planned Number of Arms", str(len(protocol.arms))),
        ("PLANSUB", "Planned Number of Subjects", str(s.sample_size)),
        ("SSTDTC", "Study Start Date", s.accrual_start.isoformat()),
        ("SENDTC", "Study End Date", s.follow_up_end.isoformat()),
        ("LENGTH", "Trial Length", f"P{protocol.visits[-1].day // 7}W"),
        ("INDIC", "Trial Disease/Condition Indication", "HIV Infection"),
        ("INTTYPE", "Intervention Type", "DRUG"),
        ("ADDON", "Added on to Existing Treatments", "N"),
        ("SEXPOP", "Sex of Participants", "BOTH"),
        ("RANDQT", "Randomization Quotient", _quotient(protocol)),
        ("STRATFCT", "Stratification Factor", ", ".join(protocol.randomization.strata)),
        ("PROTVER", "Protocol Version", s.version),
        ("SDTIGVER", "SDTM IG Version", IG_VERSION),
        ("SDTMVER", "SDTM Version", SDTM_VERSION),
    ]
    rows += [("REGID", "Registry Identifier", r) for r in s.registry_ids]
    rows += [
        ("TRT", "Investigational Therapy or Treatment", t.name)
        for t in protocol.treatments.values()
    ]
    for t in protocol.treatments.values():
        rows.append(("ROUTE", "Route of Administration", ROUTES.get(t.route, t.route)))
    for c in protocol.eligibility:
        if c.rule.item == "age" and c.rule.op in (">=", ">"):
            rows.append(("AGEMIN", "Planned Minimum Age of Subjects", f"P{c.rule.value}Y"))
    countries = dict.fromkeys(site.country for site in protocol.sites)
    rows += [("FCNTRY", TS_PARAMETERS["FCNTRY"], c) for c in countries]
    sub = protocol.submission
    if sub is not None:
        rows += [
            ("SPONSOR", TS_PARAMETERS["SPONSOR"], sub.sponsor),
            ("INTMODEL", TS_PARAMETERS["INTMODEL"], sub.intervention_model),
            ("DCUTDTC", TS_PARAMETERS["DCUTDTC"], sub.data_cutoff.isoformat()),
            ("DCUTDESC", TS_PARAMETERS["DCUTDESC"], sub.data_cutoff_description),
        ]
        rows += [("DOSFRM", "Dose Form", f) for f in dict.fromkeys(sub.dose_forms.values())]
        rows += [(v.parameter, TS_PARAMETERS[v.parameter], v.value) for v in sub.trial_summary]
    if subjects is not None:
        rows.append(("ACTSUB", TS_PARAMETERS["ACTSUB"], str(subjects)))
    return rows


def _quotient(protocol: Protocol) -> str:
    treated = sum(a.ratio for a in protocol.arms if not a.control)
    return f"{treated / sum(a.ratio for a in protocol.arms):.2f}"


def _coded(protocol: Protocol, code: str, value: str) -> dict[str, str]:
    """TSVAL, TSVALNF and the code columns of one value (a code only where the protocol has one)."""
    sub = protocol.submission
    if value in _NULL_FLAVOURS:
        return {"TSVAL": "", "TSVALNF": value, "TSVALCD": "", "TSVCDREF": "", "TSVCDVER": ""}
    out = {"TSVAL": value[:200], "TSVALNF": "", "TSVALCD": "", "TSVCDREF": "", "TSVCDVER": ""}
    if code in _DATES:
        out["TSVCDREF"] = "ISO 8601"
    elif code == "FCNTRY":
        out |= {"TSVALCD": value, "TSVCDREF": "ISO 3166-1 alpha-3"}
    elif code == "REGID" and value.startswith("NCT"):
        out |= {"TSVALCD": value, "TSVCDREF": "ClinicalTrials.gov"}
    elif sub is not None and value in sub.ct_codes:
        out |= {"TSVALCD": sub.ct_codes[value], "TSVCDREF": "CDISC CT"}
        out["TSVCDVER"] = sub.ct_version
    return out


def derive_ts(protocol: Protocol, subjects: int | None = None) -> Dataset:
    """TS: trial summary parameters (CDISC TSPARMCD terms) from the protocol file; ACTSUB is
    ``subjects``, the number randomized, when the data are at hand."""
    variables = (
        *_COMMON,
        Variable("TSSEQ", "Sequence Number", "Num"),
        Variable("TSPARMCD", "Trial Summary Parameter Short Name"),
        Variable("TSPARM", "Trial Summary Parameter"),
        Variable("TSVAL", "Parameter Value"),
        Variable("TSVALNF", "Parameter Null Flavor"),
        Variable("TSVALCD", "Parameter Value Code"),
        Variable("TSVCDREF", "Name of the Reference Terminology"),
        Variable("TSVCDVER", "Version of the Reference Terminology"),
    )
    counts: dict[str, int] = {}
    rows = []
    for code, name, value in _ts_parameters(protocol, subjects):
        counts[code] = counts.get(code, 0) + 1
        rows.append(
            {
                "STUDYID": protocol.study.id,
                "DOMAIN": "TS",
                "TSSEQ": float(counts[code]),
                "TSPARMCD": code,
                "TSPARM": name,
                **_coded(protocol, code, value),
            }
        )
    frame = _frame(rows, variables).sort_values(["TSPARMCD", "TSSEQ"]).reset_index(drop=True)
    return _design(
        "TS",
        "Trial Summary",
        variables,
        frame,
        ("STUDYID", "TSPARMCD", "TSSEQ"),
        "One record per trial summary parameter value",
        "TRIAL DESIGN",
    )


def trial_design(protocol: Protocol, subjects: int | None = None) -> list[Dataset]:
    """TA, TE, TV, TI and TS of the protocol (``subjects``: TS ACTSUB)."""
    return [
        derive_ta(protocol),
        derive_te(protocol),
        derive_tv(protocol),
        derive_ti(protocol),
        derive_ts(protocol, subjects),
    ]


def treatment_epoch_end(protocol: Protocol) -> dict[str, int]:
    """Each arm's last protocol day of the TREATMENT epoch: its last planned dose (an arm
    without treatment: the last planned dose of any arm, so the epochs of all arms line up)."""
    ends = {a.code: _treatment_end_day(protocol, a.code) for a in protocol.arms}
    latest = max(ends.values())
    return {a.code: ends[a.code] if a.treatments else latest for a in protocol.arms}


def epoch_of(protocol_day: int, treatment_end: int) -> str:
    """The TA epoch of a protocol day: before randomization SCREENING, then TREATMENT to the
    arm's last planned dose, then FOLLOW-UP (the epochs ``derive_ta`` writes)."""
    if protocol_day < 0:
        return "SCREENING"
    return "TREATMENT" if protocol_day <= treatment_end else "FOLLOW-UP"
