"""ADaM exports: ADSL, ADLB (BDS), ADTTE and ADAE, the very tables the analysis plan analyses.

The frames come from ``analysis.datasets.derive_datasets``; this module adds what ADaMIG and the
pharmaverse (admiral) conventions expect of them and the metadata (labels, types, sort keys):

* ADSL: AGEU, RACE and ETHNIC (the screening form's answers, as in DM), ACTARMCD/ACTARM,
  TRT01P/TRT01PN and TRT01A/TRT01AN, TRTSDT/TRTEDT (first and last dose), and the population
  flags as Y/N: ITTFL and RANDFL (every randomized subject), SAFFL (received study treatment, or
  randomized to an arm that has none). A subject of a treated arm never dosed has TRT01A, ACTARM
  and TRTSDT empty and SAFFL = "N", as DM has ARMNRS = "ASSIGNED, NOT TREATED".
* BDS and OCCDS: STUDYID, SITEID, TRTP/TRTPN (TRTA/TRTAN in ADAE), PARAMN; relative days (ADY,
  ASTDY and the analysis windows AWTARGET/AWLO/AWHI) count from randomization as day 1 with no
  day 0, as SDTM's --DY and ADaMIG's ADY do (the analysis keeps protocol days from day 0; the
  windows keep their meaning, as the shift is monotone).
* ADAE: AETERM is the verbatim term (as SDTM AETERM), AETOXGR is character as in SDTM and the
  grade the analysis counts is ATOXGRN.

No analysed value is recomputed, so reading the export back gives the plan the same numbers:
``stalwart analyze --adam`` on this export agrees with the analysis from the store to
floating-point equality (SAS numerics hold an IEEE double exactly).
"""

from __future__ import annotations

import pandas as pd

from stalwart.analysis.datasets.bundle import TrialDatasets
from stalwart.analysis.datasets.source import StoreExtract
from stalwart.cdisc.xpt import Dataset, Variable
from stalwart.protocol.schema import Protocol

__all__ = ["LABELS", "adam_datasets"]

LABELS: dict[str, tuple[str, str]] = {
    "STUDYID": ("Study Identifier", "Char"),
    "USUBJID": ("Unique Subject Identifier", "Char"),
    "SUBJID": ("Subject Identifier for the Study", "Char"),
    "SITEID": ("Study Site Identifier", "Char"),
    "COUNTRY": ("Country", "Char"),
    "SCRNUM": ("Screening Number", "Char"),
    "AGE": ("Age", "Num"),
    "AGEU": ("Age Units", "Char"),
    "SEX": ("Sex", "Char"),
    "RACE": ("Race", "Char"),
    "ETHNIC": ("Ethnicity", "Char"),
    "ARMCD": ("Planned Arm Code", "Char"),
    "ARM": ("Description of Planned Arm", "Char"),
    "ACTARMCD": ("Actual Arm Code", "Char"),
    "ACTARM": ("Description of Actual Arm", "Char"),
    "TRT01P": ("Planned Treatment for Period 01", "Char"),
    "TRT01PN": ("Planned Treatment for Period 01 (N)", "Num"),
    "TRT01A": ("Actual Treatment for Period 01", "Char"),
    "TRT01AN": ("Actual Treatment for Period 01 (N)", "Num"),
    "TRTSDT": ("Date of First Exposure to Treatment", "Date"),
    "TRTEDT": ("Date of Last Exposure to Treatment", "Date"),
    "RANDDT": ("Date of Randomization", "Date"),
    "ITTFL": ("Intent-To-Treat Population Flag", "Char"),
    "SAFFL": ("Safety Population Flag", "Char"),
    "RANDFL": ("Randomized Population Flag", "Char"),
    "BASECD4": ("Baseline CD4+ Count (cells/mm3)", "Num"),
    "BASEVL": ("Baseline log10 HIV RNA (copies/mL)", "Num"),
    "EOSSTT": ("End of Study Status", "Char"),
    "DCSREAS": ("Reason for Discontinuation from Study", "Char"),
    "EOSDT": ("End of Study Date", "Date"),
    "DTHFL": ("Subject Death Flag", "Char"),
    "DTHDT": ("Date of Death", "Date"),
    "LSTCNDT": ("Date of Last Contact", "Date"),
    "TRTP": ("Planned Treatment", "Char"),
    "TRTPN": ("Planned Treatment (N)", "Num"),
    "TRTA": ("Actual Treatment", "Char"),
    "TRTAN": ("Actual Treatment (N)", "Num"),
    "PARAMCD": ("Parameter Code", "Char"),
    "PARAM": ("Parameter", "Char"),
    "PARAMN": ("Parameter (N)", "Num"),
    "AVISIT": ("Analysis Visit", "Char"),
    "AVISITN": ("Analysis Visit (N)", "Num"),
    "AWTARGET": ("Analysis Window Target", "Num"),
    "AWLO": ("Analysis Window Beginning Timepoint", "Num"),
    "AWHI": ("Analysis Window Ending Timepoint", "Num"),
    "ADT": ("Analysis Date", "Date"),
    "ADY": ("Analysis Relative Day", "Num"),
    "AVAL": ("Analysis Value", "Num"),
    "BASE": ("Baseline Value", "Num"),
    "CHG": ("Change from Baseline", "Num"),
    "ABLFL": ("Baseline Record Flag", "Char"),
    "BLQFL": ("Below Limit of Quantitation Flag", "Char"),
    "ANL01FL": ("Analysis Record Flag 01", "Char"),
    "STARTDT": ("Time to Event Origin Date for Subject", "Date"),
    "CNSR": ("Censor", "Num"),
    "EVNTDESC": ("Event or Censoring Description", "Char"),
    "SRCDOM": ("Source Domain", "Char"),
    "AETERM": ("Reported Term for the Adverse Event", "Char"),
    "AEDECOD": ("Dictionary-Derived Term", "Char"),
    "AETOXGR": ("Standard Toxicity Grade", "Char"),
    "ATOXGRN": ("Analysis Toxicity Grade (N)", "Num"),
    "ASTDT": ("Analysis Start Date", "Date"),
    "AENDT": ("Analysis End Date", "Date"),
    "ASTDY": ("Analysis Start Relative Day", "Num"),
    "AEREL": ("Causality", "Char"),
    "AESER": ("Serious Event", "Char"),
    "TRTEMFL": ("Treatment Emergent Analysis Flag", "Char"),
}
"""ADaM variable -> (label, kind) for every exported variable."""


def _dataset(
    name: str, label: str, frame: pd.DataFrame, keys: tuple[str, ...], structure: str, klass: str
) -> Dataset:
    variables = tuple(Variable(c, *LABELS[c]) for c in frame.columns)
    frame = frame.sort_values(list(keys), kind="mergesort").reset_index(drop=True)
    return Dataset(name, label, variables, frame, keys, structure, klass, standard="ADaM")


def _arm_numbers(protocol: Protocol) -> dict[str, float]:
    return {a.code: float(i) for i, a in enumerate(protocol.arms, start=1)}


def _with_treatment(
    frame: pd.DataFrame, adsl: pd.DataFrame, protocol: Protocol, prefix: str
) -> pd.DataFrame:
    """STUDYID and SITEID first, the planned (or actual) treatment after the arm code."""
    subj = adsl.set_index("USUBJID")
    names = {a.code: a.name for a in protocol.arms}
    out = frame.copy()
    out.insert(0, "STUDYID", protocol.study.id)
    out.insert(1, "SITEID", out["USUBJID"].map(subj["SITEID"]))
    at = list(out.columns).index("ARMCD") + 1
    out.insert(at, prefix, out["ARMCD"].map(names))
    out.insert(at + 1, f"{prefix}N", out["ARMCD"].map(_arm_numbers(protocol)))
    return out


def _study_day(days: pd.Series) -> pd.Series:
    """Protocol days (randomization = day 0) as SDTM/ADaM relative days (day 1, no day 0)."""
    return days.where(days < 0, days + 1)


def _adsl(protocol: Protocol, adsl: pd.DataFrame, extract: StoreExtract) -> pd.DataFrame:
    """ADSL with the ADaMIG subject-level variables the analysis does not need itself."""
    out = adsl.copy()
    numbers = _arm_numbers(protocol)
    names = {a.code: a.name for a in protocol.arms}
    answers = out["USUBJID"].map(extract.participants.set_index("usubjid")["answers"])
    doses = extract.doses[extract.doses["administrations"] > 0].groupby("usubjid")["dose_date"]
    first, last = out["USUBJID"].map(doses.min()), out["USUBJID"].map(doses.max())
    untreated_arm = out["ARMCD"].isin([a.code for a in protocol.arms if not a.treatments])
    treated = first.notna() | untreated_arm
    actual = out["ARMCD"].where(treated, "")

    def put(after: str, column: str, values: object) -> None:
        out.insert(list(out.columns).index(after) + 1, column, values)

    put("AGE", "AGEU", "YEARS")
    put("SEX", "RACE", answers.map(lambda a: str(a.get("race", ""))))
    put("RACE", "ETHNIC", answers.map(lambda a: str(a.get("ethnicity", ""))))
    put("ARM", "ACTARMCD", actual)
    put("ACTARMCD", "ACTARM", actual.map(names).fillna(""))
    put("TRT01P", "TRT01PN", out["ARMCD"].map(numbers))
    put("TRT01PN", "TRT01A", out["ACTARM"])
    put("TRT01A", "TRT01AN", actual.map(numbers))
    put("TRT01AN", "TRTSDT", pd.to_datetime(first))
    put("TRTSDT", "TRTEDT", pd.to_datetime(last))
    out["ITTFL"] = out["ITTFL"].where(out["ITTFL"] == "Y", "N")
    put("ITTFL", "SAFFL", treated.map({True: "Y", False: "N"}))
    put("SAFFL", "RANDFL", "Y")
    return out


def adam_datasets(
    protocol: Protocol, datasets: TrialDatasets, extract: StoreExtract
) -> list[Dataset]:
    """ADSL, ADLB, ADTTE, ADAE as exportable datasets (analysed values untouched)."""
    adsl = _adsl(protocol, datasets.adsl, extract)
    adlb = _with_treatment(datasets.adlb, datasets.adsl, protocol, "TRTP")
    order = {code: float(i) for i, code in enumerate(adlb["PARAMCD"].drop_duplicates(), 1)}
    adlb.insert(list(adlb.columns).index("PARAM") + 1, "PARAMN", adlb["PARAMCD"].map(order))
    for day in ("AWTARGET", "AWLO", "AWHI", "ADY"):
        adlb[day] = _study_day(adlb[day])
    adtte = _with_treatment(datasets.adtte, datasets.adsl, protocol, "TRTP")
    adtte["SRCDOM"] = adtte["CNSR"].map(lambda c: "CE" if c == 0 else "ADSL")
    adae = _with_treatment(datasets.adae, datasets.adsl, protocol, "TRTA")
    verbatim = extract.adverse_events["verbatim"].reset_index(drop=True)
    adae.insert(list(adae.columns).index("AEDECOD"), "AETERM", verbatim.fillna(adae["AEDECOD"]))
    grade = adae["AETOXGR"]
    adae["AETOXGR"] = grade.map(lambda g: str(int(g)))
    adae.insert(list(adae.columns).index("AETOXGR") + 1, "ATOXGRN", grade.astype(float))
    randdt = adae["USUBJID"].map(datasets.adsl.set_index("USUBJID")["RANDDT"])
    days = (pd.to_datetime(adae["ASTDT"]) - pd.to_datetime(randdt)).dt.days
    adae.insert(list(adae.columns).index("AENDT") + 1, "ASTDY", _study_day(days))
    return [
        _dataset(
            "ADSL",
            "Subject-Level Analysis Dataset",
            adsl,
            ("STUDYID", "USUBJID"),
            "One record per subject",
            "SUBJECT LEVEL ANALYSIS DATASET",
        ),
        _dataset(
            "ADLB",
            "Laboratory Analysis Dataset",
            adlb,
            ("STUDYID", "USUBJID", "PARAMCD", "AVISITN"),
            "One record per subject per parameter per analysis visit",
            "BASIC DATA STRUCTURE",
        ),
        _dataset(
            "ADTTE",
            "Time-to-Event Analysis Dataset",
            adtte,
            ("STUDYID", "PARAMCD", "USUBJID"),
            "One record per subject per parameter",
            "BASIC DATA STRUCTURE",
        ),
        _dataset(
            "ADAE",
            "Adverse Event Analysis Dataset",
            adae,
            ("STUDYID", "USUBJID", "ASTDT"),
            "One record per subject per adverse event",
            "OCCURRENCE DATA STRUCTURE",
        ),
    ]
