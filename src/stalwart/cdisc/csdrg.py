"""The clinical Study Data Reviewer's Guide (cSDRG) an SDTM export writes, as one HTML page.

It follows the PHUSE cSDRG outline in brief: the trial design (arms, epochs, visits), the data
standards (SDTMIG, Define-XML, CT, dictionaries), each dataset (class, structure, keys, rows), the
trial's deviations from standard practice (what a reviewer would otherwise have to discover: no
MedDRA without a release, the untreated arm without EX records, how EPOCH and the normal ranges are
derived, serious events reported late, what DV holds) and the conformance findings CDISC's rules
engine (CORE) is known to report on these data, each with its cause. The guide is generated from the
same protocol and data as the datasets, so it cannot drift from them.
"""

from __future__ import annotations

import datetime as dt
import html
from pathlib import Path

import pandas as pd

from stalwart import __version__
from stalwart.analysis.datasets.source import StoreExtract, unrandomized_deviations
from stalwart.capture.ae_form import sae_reported_late
from stalwart.cdisc.meddra import MedDRA
from stalwart.cdisc.sdtmig import IG_VERSION
from stalwart.cdisc.trial_design import treatment_epoch_end
from stalwart.cdisc.xpt import Dataset
from stalwart.protocol.schema import Protocol

__all__ = [
    "ENGINE_FINDINGS",
    "RESERVED_ARMCD",
    "build_sdrg",
    "near_reserved_armcd",
    "write_sdrg",
]

ENGINE_FINDINGS: dict[str, str] = {
    "CORE-000767": "Engine noise: the rule compares FA.FAOBJ with --DECOD through a parent record "
    "and fires on every coded record even when there is no FA domain (it does so on CDISC's own "
    "pilot data). There is no FA dataset in this submission.",
    "CORE-000761": "Terminology version: TSVCDVER names the SDTM CT version the define.xml "
    "declares; a validator whose CT library is older than that version reports the value as "
    "unknown. Not a data defect.",
    "CORE-000929": "Terminology version: a domain code newer than the CT library of the validator "
    "is reported as unknown. Not a data defect.",
    "CORE-000741": "Rule text: the rule (FDA business rule FB1111) looks for TSPARMCD 'PCLASS' "
    "beside INTMODEL and INTTYPE, but CDISC CT's TSPARMCD codelist (C66738) names the "
    "pharmacological class PCLAS (C98768) and has no PCLASS. TS has INTMODEL, INTTYPE and PCLAS, "
    "each with TSVAL. A TS record under the undefined code PCLASS silences the rule (checked) but "
    "would duplicate PCLAS under a code CDISC does not define, so none is added. CDISC's own "
    "SDTM-MSG v2.0 sample gets this finding too.",
    "CORE-000885": "By design: the no-therapy arm receives no study treatment, so its subjects "
    "have no EX records (EX holds the study treatment given; a 'no treatment' record would "
    "record an exposure that did not happen). They were treated as planned (with nothing), so "
    "ACTARMCD is their arm and ARMNRS is empty. The rule's exception for subjects who did not "
    "receive study treatment is expressed only through ARMNRS; ARMNRS = 'ASSIGNED, NOT TREATED' "
    "beside a populated ARMCD and ACTARMCD would misstate them and trade this finding for "
    "CORE-000121, CORE-000192 and CORE-000758 (checked).",
    "CORE-000886": "By design, as CORE-000885: subjects of the no-therapy arm have no EX records "
    "and no ARMNRS (they are not 'assigned, not treated': no treatment is their assignment).",
}
"""CORE rules that may still fire on this export, and why (the note every finding left gets)."""


def _table(headers: list[str], rows: list[list[object]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _deviations(
    protocol: Protocol, datasets: dict[str, Dataset], extract: StoreExtract, meddra: MedDRA | None
) -> list[str]:
    """The trial's departures from standard practice, each a sentence for the reviewer."""
    out = []
    ae = datasets.get("AE")
    if meddra is None:
        out.append(
            "MedDRA was not applied: no MedDRA release was loaded for this export. AETERM is "
            "the verbatim term; AEDECOD is the protocol's AE term the site picked (the protocol's "
            "own list, not MedDRA preferred terms); AELLT to AESOCCD are present and empty. No "
            "dictionary code has been invented."
        )
    elif ae is not None:
        uncoded = sorted(set(ae.frame.loc[ae.frame["AEPTCD"].isna(), "AETERM"]))
        out.append(
            f"AE terms coded with MedDRA {meddra.version} from the verbatim term; "
            + (
                f"{len(uncoded)} verbatim terms matched no current LLT and keep the protocol "
                f"term: {', '.join(uncoded)}."
                if uncoded
                else "every verbatim term was coded."
            )
        )
    out += _arm_sentences(protocol, datasets.get("DM"), extract)
    ends = treatment_epoch_end(protocol)
    out.append(
        "EPOCH is derived from the protocol's planned calendar: SCREENING before randomization, "
        "TREATMENT from randomization to the arm's last planned dose (protocol day "
        + ", ".join(f"{k} {v}" for k, v in ends.items())
        + "; the untreated arm takes the latest), FOLLOW-UP after. No SE dataset is submitted."
    )
    out.append(
        "RFSTDTC is the randomization date and study days count from it as day 1; SUBJID is the "
        "site code and the site's subject number, unique in the study."
    )
    sub = protocol.submission
    if sub is not None and sub.normal_ranges:
        out.append(
            "LB normal ranges are the protocol's reference ranges ("
            + "; ".join(
                f"{k}: {r.low if r.low is not None else '-'} to "
                f"{r.high if r.high is not None else '-'}"
                for k, r in sub.normal_ranges.items()
            )
            + "), not laboratory-specific; an HIV RNA below the assay limit is the text result "
            "'<limit' with LBSTRESN empty and LBLLOQ set."
        )
    out.append(
        "Opportunistic events (the efficacy events) are in CE; deaths are DS DSDECOD = DEATH "
        "with DM DTHFL/DTHDTC."
    )
    out.append(_dv_sentence(datasets.get("DV"), extract))
    aes = extract.adverse_events
    form = protocol.forms.AE
    late = [
        r.usubjid
        for r in aes.itertuples()
        if sae_reported_late(form, bool(r.serious), r.start_date, _date(r.reported_on))
    ]
    out.append(
        f"Serious adverse events must be reported within {form.sae_report_days} day(s) of onset: "
        f"{int(aes['serious'].astype(bool).sum())} serious events, {len(late)} entered later"
        + (f" ({', '.join(sorted(set(late)))})." if late else ".")
    )
    return out


RESERVED_ARMCD = ("NOTTRT", "NOTASSGN", "SCRNFAIL", "UNPLAN")
"""ARMCD values SDTMIG 3.2 reserved for subjects outside the planned arms (3.3 on: ARMNRS)."""


def _arm_sentences(protocol: Protocol, dm: Dataset | None, extract: StoreExtract) -> list[str]:
    """How the arms without study treatment and the never-dosed subjects are represented."""
    out = []
    treated = {a.code for a in protocol.arms if a.treatments}
    for arm in (a for a in protocol.arms if not a.treatments):
        n = int((extract.participants["arm"] == arm.code).sum())
        near = near_reserved_armcd(arm.code)
        out.append(
            f"Arm {arm.code} ({arm.name}) is a planned arm without study treatment: its {n} "
            f"subjects have ARMCD = ACTARMCD = {arm.code}, ARMNRS empty and, by design, no EX "
            "records (there was no exposure to record); RFXSTDTC/RFXENDTC are empty for them and "
            "RFSTDTC is their randomization date. CORE-000885/000886 report them (section 5). "
            f"{arm.code} is the protocol's own code, not CDISC's reserved NOTTRT ('not treated', "
            "SDTMIG 3.2; from 3.3 on ARMNRS = 'ASSIGNED, NOT TREATED')"
            + (
                f": read it with care, it is at most one letter from {', '.join(near)}."
                if near
                else "."
            )
        )
    if dm is not None:
        never = int((dm.frame["ARMNRS"] == "ASSIGNED, NOT TREATED").sum())
        armed = int(extract.participants["arm"].isin(treated).sum())
        out.append(
            f"Of the {armed} subjects randomized to an arm with study treatment, {never} never "
            "received a dose: they have ACTARMCD/ACTARM empty and ARMNRS = 'ASSIGNED, NOT "
            "TREATED', as SDTMIG 3.4 asks (not the SDTMIG 3.2 code NOTTRT)."
            if never
            else f"All {armed} subjects randomized to an arm with study treatment received at "
            "least one dose (ACTARMCD = ARMCD; no ARMNRS)."
        )
    return out


def near_reserved_armcd(code: str) -> list[str]:
    """CDISC's reserved ARMCD values that ``code`` equals or is one letter from (one character
    inserted, deleted or replaced): a reviewer could read the one as the other."""

    def near(a: str, b: str) -> bool:
        if abs(len(a) - len(b)) > 1:
            return False
        if len(a) == len(b):
            return sum(x != y for x, y in zip(a, b, strict=True)) <= 1
        short, long_ = sorted((a, b), key=len)
        return any(long_[:i] + long_[i + 1 :] == short for i in range(len(long_)))

    return [r for r in RESERVED_ARMCD if near(code.upper(), r)]


def _expected_rows(datasets: dict[str, Dataset]) -> dict[str, int]:
    """Rows CORE-000885/000886 report: DM subjects without EX records and without ARMNRS."""
    dm, ex = datasets.get("DM"), datasets.get("EX")
    if dm is None:
        return {}
    exposed = set(ex.frame["USUBJID"]) if ex is not None else set()
    d = dm.frame
    n = int(((d["ARMNRS"].fillna("") == "") & ~d["USUBJID"].isin(exposed)).sum())
    return {"CORE-000885": n, "CORE-000886": n}


def _dv_sentence(dv: Dataset | None, extract: StoreExtract) -> str:
    """How DV comes from the deviations log, and what it leaves out."""
    before = unrandomized_deviations(extract)
    if dv is None:
        text = "No DV dataset is submitted: no randomized subject has a logged protocol deviation."
    else:
        counts = dv.frame["DVCAT"].value_counts().sort_index()
        text = (
            f"DV holds the {len(dv.frame)} protocol deviations of randomized subjects from the "
            "trial's deviations log ("
            + "; ".join(f"{k}: {v}" for k, v in counts.items())
            + "). DVCAT is the log's category; DVSCAT says whether the data capture system "
            "DETECTED it when the data revealing it were saved (visit out of window, missed visit "
            "recorded, consent after the screening procedures) or a site or monitor REPORTED it. "
            "DVDECOD is not submitted: CDISC has no controlled terminology for it and the protocol "
            "defines no coded list. DVTERM is the log's description in ASCII, cut to 200 "
            "characters where longer. Scheduled visits not done that the site has not yet "
            "recorded as missed are not in DV (SV shows every visit held)."
        )
    return text + (
        f" {before} deviation(s) logged before randomization for people never randomized are "
        "not in DV (they have no USUBJID)."
        if before
        else " No deviation was logged for a person who was never randomized."
    )


def _date(value: object) -> dt.date | None:
    if value is None or (isinstance(value, float) and pd.isna(value)) or value is pd.NaT:
        return None
    stamp: dt.date = pd.Timestamp(str(value)).date()
    return stamp


def build_sdrg(
    protocol: Protocol, datasets: list[Dataset], extract: StoreExtract, meddra: MedDRA | None
) -> str:
    """The cSDRG of the export as an HTML page."""
    s = protocol.study
    by_name = {d.name: d for d in datasets}
    ct = protocol.submission.ct_version if protocol.submission else "not stated"
    ta = by_name.get("TA")
    rows = _expected_rows(by_name)
    parts = [
        f"<h1>Clinical Study Data Reviewer's Guide: {html.escape(s.id)}</h1>",
        f"<p>{html.escape(s.title)}. Protocol version {html.escape(s.version)}; registry "
        f"{html.escape(', '.join(s.registry_ids))}. Written by stalwart {__version__} with the "
        "SDTM export it describes.</p>",
        "<h2>1. Standards</h2>",
        _table(
            ["Standard", "Version"],
            [
                ["SDTMIG", IG_VERSION],
                ["Define-XML", "2.1"],
                ["SDTM controlled terminology", ct],
                ["AE dictionary", f"MedDRA {meddra.version}" if meddra else "none (see 3)"],
                ["AE grading", protocol.forms.AE.grading],
            ],
        ),
        "<h2>2. Trial design</h2>",
        f"<p>{html.escape(s.design)}, {html.escape(s.blinding)}; {s.sample_size} subjects "
        f"planned, {len(extract.participants)} randomized.</p>",
        _table(
            ["Arm code", "Arm", "Treatments"],
            [[a.code, a.name, ", ".join(a.treatments) or "none"] for a in protocol.arms],
        ),
    ]
    if ta is not None:
        parts.append(
            _table(
                ["ARMCD", "TAETORD", "ETCD", "EPOCH"],
                ta.frame[["ARMCD", "TAETORD", "ETCD", "EPOCH"]].values.tolist(),
            )
        )
    parts += [
        "<h2>3. Deviations from standard practice</h2>",
        "<ul>"
        + "".join(
            f"<li>{html.escape(d)}</li>" for d in _deviations(protocol, by_name, extract, meddra)
        )
        + "</ul>",
        "<h2>4. Datasets</h2>",
        _table(
            ["Dataset", "Label", "Class", "Structure", "Keys", "Rows"],
            [
                [d.name, d.label, d.klass, d.structure, ", ".join(d.keys), len(d.frame)]
                for d in datasets
            ],
        ),
        "<h2>5. Conformance findings</h2>",
        "<p>The datasets were built to pass CDISC's Open Rules Engine (CORE) for SDTMIG "
        f"{IG_VERSION}. The rules below may still report findings; each is explained, with the "
        "rows it reports on these datasets where the data determine them. Any other finding is "
        "a defect to report.</p>",
        _table(
            ["Rule", "Rows", "Explanation"],
            [[k, rows.get(k, "-"), v] for k, v in ENGINE_FINDINGS.items()],
        ),
    ]
    style = "body{font-family:sans-serif;max-width:60em}table{border-collapse:collapse}"
    style += "td,th{border:1px solid #999;padding:2px 6px;text-align:left}"
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>cSDRG {s.id}'
        f"</title><style>{style}</style></head><body>{''.join(parts)}</body></html>\n"
    )


def write_sdrg(
    protocol: Protocol,
    datasets: list[Dataset],
    extract: StoreExtract,
    meddra: MedDRA | None,
    path: Path,
) -> Path:
    """Write the cSDRG of the export to ``path``."""
    path.write_text(build_sdrg(protocol, datasets, extract, meddra), encoding="utf-8")
    return path
