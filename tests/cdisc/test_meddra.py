"""MedDRA coding from a release folder: exact LLT match, primary SOC path, bad folders refused.

The folder here is a made-up miniature in MedDRA's ASCII layout ($-separated; the codes are
invented for the test and are not MedDRA's): MedDRA itself is licensed and is not shipped.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from stalwart.cdisc.meddra import MEDDRA_CODES, code_terms, load_meddra
from stalwart.errors import ConfigurationError


def _release(folder: Path) -> Path:
    folder.mkdir()
    (folder / "meddra_release.asc").write_text("99.0$English$\n", encoding="utf-8")
    # llt_code$llt_name$pt_code$whoart$harts$costart$icd9$icd9cm$icd10$currency$jart$
    (folder / "llt.asc").write_text(
        "1001$Fever$2001$$$$$$$Y$$\n"
        "1002$Pyrexia$2001$$$$$$$Y$$\n"
        "1003$Feverish (old)$2001$$$$$$$N$$\n"
        "1004$Headache$2002$$$$$$$Y$$\n",
        encoding="utf-8",
    )
    # pt$hlt$hlgt$soc$pt_name$hlt_name$hlgt_name$soc_name$soc_abbrev$null$pt_soc$primary$
    (folder / "mdhier.asc").write_text(
        "2001$3001$4001$5001$Pyrexia$Febrile disorders$Body temperature conditions$"
        "General disorders$Genrl$$5001$Y$\n"
        "2001$3009$4009$5009$Pyrexia$Other HLT$Other HLGT$Infections$Infec$$5001$N$\n"
        "2002$3002$4002$5002$Headache$Headaches NEC$Headaches$Nervous system disorders$"
        "Nerv$$5002$Y$\n",
        encoding="utf-8",
    )
    return folder


def test_verbatim_terms_are_coded_on_the_primary_path(tmp_path: Path) -> None:
    meddra = load_meddra(_release(tmp_path / "MedAscii"))
    assert meddra.version == "99.0"
    verbatim = pd.Series([" fever ", "HEADACHE", "Feverish (old)", "sneezing"])
    protocol_term = pd.Series(["Fever", "Headache", "Fever", "Other"])
    coded = code_terms(verbatim, protocol_term, meddra)
    assert list(coded["AEDECOD"]) == ["Pyrexia", "Headache", "FEVER", "OTHER"]
    assert list(coded["AESOC"][:2]) == ["General disorders", "Nervous system disorders"]
    assert coded["AEPTCD"][0] == 2001 and coded["AEHLTCD"][0] == 3001  # the primary SOC path
    assert coded["AELLTCD"][2:].isna().all()  # a non-current LLT and an unknown term: no code
    for name in MEDDRA_CODES:
        assert pd.api.types.is_numeric_dtype(coded[name])


def test_without_a_release_nothing_is_coded() -> None:
    coded = code_terms(pd.Series(["fever"]), pd.Series(["Fever"]), None)
    assert coded["AEDECOD"][0] == "FEVER" and coded["AESOC"][0] == ""
    assert coded["AEPTCD"].isna().all()


def test_a_folder_that_is_no_release_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="MedAscii"):
        load_meddra(tmp_path)
    folder = _release(tmp_path / "bad")
    (folder / "llt.asc").write_text("not a meddra file\n", encoding="utf-8")
    with pytest.raises(ConfigurationError, match="llt"):
        load_meddra(folder)
