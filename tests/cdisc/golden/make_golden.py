"""Regenerate the golden files of the CDISC format tests (run by hand, then review the diff).

``tiny.odm.xml``: a one-participant trial (screening, randomization, one visit whose HIV RNA is
below the assay limit, one adverse event) under the packaged protocol with allocation lists of 6
slots per site. ``tiny.xpt``: a three-row dataset with a character, a numeric and a date column.

    python tests/cdisc/golden/make_golden.py
"""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path

import pandas as pd

from stalwart.capture.ae_form import AeDetails
from stalwart.capture.db import create_schema, open_engine
from stalwart.capture.service import CaptureService, initialize_trial
from stalwart.cdisc.odm import export_odm
from stalwart.cdisc.xpt import Dataset, Variable, write_dataset
from stalwart.protocol.load import default_protocol_path, parse_protocol

HERE = Path(__file__).parent


def tiny_dataset() -> Dataset:
    """Three rows: text of several lengths, exact binary fractions and one missing, dates."""
    variables = (
        Variable("STUDYID", "Study Identifier"),
        Variable("USUBJID", "Unique Subject Identifier"),
        Variable("AVAL", "Analysis Value", "Num"),
        Variable("ADT", "Analysis Date", "Date"),
    )
    frame = pd.DataFrame(
        {
            "STUDYID": ["TINY", "TINY", "TINY"],
            "USUBJID": ["TINY-01", "TINY-002", "TINY-0003"],
            "AVAL": [0.1, 2.5, float("nan")],
            "ADT": pd.to_datetime(["2006-01-05", "1960-01-01", "2008-12-31"]),
        }
    )
    return Dataset(
        "TINY",
        "A tiny dataset",
        variables,
        frame,
        ("STUDYID", "USUBJID"),
        "One record per subject",
        "SUBJECT LEVEL ANALYSIS DATASET",
        "ADaM",
    )


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_dataset(tiny_dataset(), folder)
        (HERE / "tiny.xpt").write_bytes((folder / "tiny.xpt").read_bytes())
        text = default_protocol_path().read_text(encoding="utf-8")
        loaded = parse_protocol(
            text.replace("list_length_per_stratum = 300", "list_length_per_stratum = 6")
        )
        engine = open_engine(f"sqlite:///{folder / 'tiny.db'}")
        create_schema(engine)
        initialize_trial(engine, loaded, seed=7, actor="golden")
        service = CaptureService.open(engine, today=lambda: dt.date(2009, 3, 1))
        answers = {
            "age": 35,
            "sex": "F",
            "hiv_positive": True,
            "cd4": 520.0,
            "hiv_rna": 20000.0,
            "on_continuous_art": False,
            "arv_within_12_months": False,
            "prior_il2": False,
            "haart_access": True,
            "prior_aids": False,
            "immunomodulator_8_weeks": False,
        }
        service.screen("US01", "US01-0001", dt.date(2006, 1, 2), answers, "golden")
        allocation = service.randomize(
            "US01-0001", dt.date(2006, 1, 2), dt.date(2006, 1, 5), "golden"
        )
        service.record_visit(
            allocation.usubjid,
            "ENTRY",
            dt.date(2006, 1, 5),
            {"CD4": 512.0, "CD4PCT": 27.5, "HIVRNA": "<50"},
            "golden",
        )
        service.report_adverse_event(
            allocation.usubjid,
            "Fever",
            2,
            dt.date(2006, 1, 20),
            None,
            "POSSIBLE",
            False,
            "golden",
            AeDetails("fever", "RECOVERED/RESOLVED", "DOSE NOT CHANGED"),
        )
        export_odm(engine, loaded, HERE / "tiny.odm.xml")
        engine.dispose()


if __name__ == "__main__":
    main()
