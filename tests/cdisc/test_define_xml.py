"""Define-XML 2.0: valid against the CDISC schema shipped by odmlib, and true to the files."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from cdisc_export import CdiscTrial
from stalwart.cdisc.define_xml import DEFINE_XSD, define_schema, validate_xml
from stalwart.cdisc.xpt import read_xpt
from stalwart.errors import ExportError

ODM = "{http://www.cdisc.org/ns/odm/v1.3}"
DEF = "{http://www.cdisc.org/ns/def/v2.0}"


def test_the_schema_ships_with_odmlib() -> None:
    assert DEFINE_XSD.is_file(), "odmlib no longer ships the Define-XML 2.0 schema"


@pytest.mark.parametrize("standard", ["sdtm", "adam"])
def test_define_validates_and_describes_every_file(cdisc_trial: CdiscTrial, standard: str) -> None:
    folder: Path = getattr(cdisc_trial, standard)
    doc = etree.parse(str(folder / "define.xml"))
    assert define_schema().validate(doc), define_schema().error_log
    mdv = doc.getroot().find(f"{ODM}Study/{ODM}MetaDataVersion")
    assert mdv is not None and mdv.get(f"{DEF}DefineVersion") == "2.0.0"
    groups = {g.get("Name"): g for g in mdv.iter(f"{ODM}ItemGroupDef")}
    assert set(groups) == {p.stem.upper() for p in folder.glob("*.xpt")}
    items = {i.get("OID"): i for i in mdv.iter(f"{ODM}ItemDef")}
    for name, group in groups.items():
        frame, meta = read_xpt(folder / f"{name.lower()}.xpt")
        refs = [r.get("ItemOID") for r in group.iter(f"{ODM}ItemRef")]
        assert [items[r].get("Name") for r in refs] == list(frame.columns)
        leaf = group.find(f"{DEF}leaf")
        assert leaf is not None
        assert leaf.get("{http://www.w3.org/1999/xlink}href") == f"{name.lower()}.xpt"
        for ref in refs:
            item = items[ref]
            var = item.get("Name")
            label = item.findtext(f"{ODM}Description/{ODM}TranslatedText")
            assert label == meta["labels"][var]  # type: ignore[index]
            if item.get("DataType") in ("text", "date"):
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
        validate_xml(doc, define_schema(), "the test document")
