"""Define-XML (2.1 for SDTM, 2.0 for ADaM): valid against the CDISC schemas shipped by odmlib,
true to the files, and (SDTM) with the SDTMIG role of every variable on its ItemRef."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from cdisc_export import CdiscTrial
from stalwart.cdisc.define21 import DEFINE21_XSD, define21_schema
from stalwart.cdisc.define_xml import DEFINE_XSD, define_schema, validate_xml
from stalwart.cdisc.sdtmig import ig_variables
from stalwart.cdisc.xpt import read_xpt
from stalwart.errors import ExportError

ODM = "{http://www.cdisc.org/ns/odm/v1.3}"
DEFS = {
    "sdtm": ("{http://www.cdisc.org/ns/def/v2.1}", "2.1.0"),
    "adam": ("{http://www.cdisc.org/ns/def/v2.0}", "2.0.0"),
}


def test_the_schemas_ship_with_odmlib() -> None:
    assert DEFINE_XSD.is_file(), "odmlib no longer ships the Define-XML 2.0 schema"
    assert DEFINE21_XSD.is_file(), "odmlib no longer ships the Define-XML 2.1 schema"


@pytest.mark.parametrize("standard", ["sdtm", "adam"])
def test_define_validates_and_describes_every_file(cdisc_trial: CdiscTrial, standard: str) -> None:
    folder: Path = getattr(cdisc_trial, standard)
    doc = etree.parse(str(folder / "define.xml"))
    schema = define21_schema() if standard == "sdtm" else define_schema()
    assert schema.validate(doc), schema.error_log
    def_ns, version = DEFS[standard]
    mdv = doc.getroot().find(f"{ODM}Study/{ODM}MetaDataVersion")
    assert mdv is not None and mdv.get(f"{def_ns}DefineVersion") == version
    groups = {g.get("Name"): g for g in mdv.iter(f"{ODM}ItemGroupDef")}
    assert set(groups) == {p.stem.upper() for p in folder.glob("*.xpt")}
    items = {i.get("OID"): i for i in mdv.iter(f"{ODM}ItemDef")}
    for name, group in groups.items():
        frame, meta = read_xpt(folder / f"{name.lower()}.xpt")
        refs = [r.get("ItemOID") for r in group.iter(f"{ODM}ItemRef")]
        assert [items[r].get("Name") for r in refs] == list(frame.columns)
        leaf = group.find(f"{def_ns}leaf")
        assert leaf is not None
        assert leaf.get("{http://www.w3.org/1999/xlink}href") == f"{name.lower()}.xpt"
        for ref in refs:
            item = items[ref]
            var = item.get("Name")
            label = item.findtext(f"{ODM}Description/{ODM}TranslatedText")
            assert label == meta["labels"][var]  # type: ignore[index]
            if item.get("DataType") == "text" or (standard == "adam" and var.endswith("DTC")):
                assert int(item.get("Length", "0")) == meta["lengths"][var]  # type: ignore[index]
        keys = sorted(
            (int(r.get("KeySequence")), items[r.get("ItemOID")].get("Name"))
            for r in group.iter(f"{ODM}ItemRef")
            if r.get("KeySequence")
        )
        assert keys[0][1] == "STUDYID"


def test_an_invalid_document_is_refused(cdisc_trial: CdiscTrial) -> None:
    doc = etree.parse(str(cdisc_trial.sdtm / "define.xml"))
    item = next(doc.getroot().iter(f"{ODM}ItemDef"))
    del item.attrib["DataType"]
    with pytest.raises(ExportError, match="DataType"):
        validate_xml(doc, define21_schema(), "the test document")


def test_every_sdtm_itemref_has_the_ig_role(cdisc_trial: CdiscTrial) -> None:
    doc = etree.parse(str(cdisc_trial.sdtm / "define.xml"))
    for group in doc.getroot().iter(f"{ODM}ItemGroupDef"):
        spec = ig_variables(group.get("Name"))
        for ref in group.iter(f"{ODM}ItemRef"):
            var = ref.get("ItemOID").split(".")[-1]
            assert ref.get("Role") == spec[var].role, (group.get("Name"), var)
            assert ref.get("Mandatory") == ("Yes" if spec[var].core == "Req" else "No")


def test_without_meddra_the_define_says_so(cdisc_trial: CdiscTrial) -> None:
    text = (cdisc_trial.sdtm / "define.xml").read_text(encoding="utf-8")
    assert "MedDRA not applied" in text
    assert 'Dictionary="MedDRA"' not in text
    assert 'Dictionary="STALWART protocol AE term list"' in text
    assert 'Name="SDTMIG" Type="IG" Version="3.4"' in text
