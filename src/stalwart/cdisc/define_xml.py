"""Define-XML 2.0 for the ADaM datasets an export wrote, validated against the CDISC schema.

The SDTM export writes Define-XML 2.1 (:mod:`~.define21`); this module keeps 2.0 for ADaM.

One ``ItemGroupDef`` per dataset (with its ``def:leaf`` pointing at the XPT file), one ``ItemDef``
per variable (type, length as written, label, origin), enumerated ``CodeList``s for the coded
variables that have a controlled set of values in this trial. The schema is the one the odmlib
package ships (``schemas/define/2.0/define2-0-0.xsd``, which includes ODM 1.3.2); nothing is
fetched from the network.
"""

from __future__ import annotations

import datetime as dt
from functools import cache
from pathlib import Path

import odmlib
import pandas as pd
from lxml import etree

from stalwart import __version__
from stalwart.cdisc.xpt import Dataset, Variable, char_length
from stalwart.errors import ExportError
from stalwart.protocol.schema import Protocol

__all__ = [
    "DEFINE_XSD",
    "ODM_NS",
    "build_define",
    "data_type",
    "define_schema",
    "validate_xml",
    "write_define",
]

ODM_NS = "http://www.cdisc.org/ns/odm/v1.3"
DEF_NS = "http://www.cdisc.org/ns/def/v2.0"
XLINK_NS = "http://www.w3.org/1999/xlink"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
DEFINE_XSD = Path(odmlib.__file__).parent / "schemas" / "define" / "2.0" / "define2-0-0.xsd"
"""The Define-XML 2.0 schema shipped by odmlib."""

_CODED = (
    "ARMCD",
    "SEX",
    "LBTESTCD",
    "PARAMCD",
    "DSDECOD",
    "AETOXGR",
    "EXROUTE",
    "EPOCH",
    "IECAT",
    "TSPARMCD",
    "AESER",
    "AEREL",
)
_SDTM_IG = {"SDTM": ("SDTM-IG", "3.2"), "ADaM": ("ADaM-IG", "1.0")}


@cache
def define_schema() -> etree.XMLSchema:
    """The Define-XML 2.0 schema (parsed once)."""
    return etree.XMLSchema(etree.parse(str(DEFINE_XSD)))


def validate_xml(doc: etree._ElementTree, schema: etree.XMLSchema, what: str) -> None:
    """Raise ``ExportError`` listing the first schema violations of ``doc``."""
    if not schema.validate(doc):
        problems = "; ".join(f"line {e.line}: {e.message}" for e in list(schema.error_log)[:5])
        raise ExportError(f"{what} is not valid against its schema: {problems}")


def _q(ns: str, tag: str) -> str:
    return f"{{{ns}}}{tag}"


def _el(parent: etree._Element, tag: str, ns: str = ODM_NS, **attrs: str) -> etree._Element:
    return etree.SubElement(parent, _q(ns, tag), {k: v for k, v in attrs.items() if v != ""})


def _description(parent: etree._Element, text: str) -> None:
    desc = _el(parent, "Description")
    tt = _el(desc, "TranslatedText")
    tt.set(XML_LANG, "en")
    tt.text = text


def data_type(ds: Dataset, v: Variable) -> tuple[str, str]:
    """(DataType, Length) of a variable as written."""
    col = ds.frame[v.name]
    if v.kind == "Date":
        return "integer", "8"
    if v.kind == "Num":
        values = pd.to_numeric(col).dropna()
        whole = bool(len(values) == 0 or (values == values.round()).all())
        return ("integer" if whole else "float"), "8"
    if v.name.endswith("DTC"):
        return "date", str(char_length(col))
    return "text", str(char_length(col))


def _origin(ds: Dataset, v: Variable) -> str:
    if ds.klass == "TRIAL DESIGN":
        return "Protocol"
    if ds.standard == "ADaM":
        return "Derived"
    if v.name in ("STUDYID", "DOMAIN"):
        return "Assigned"
    if v.name.endswith(("SEQ", "DY")) or v.name in ("VISITNUM", "VISIT"):
        return "Derived"
    return "CRF"


def build_define(protocol: Protocol, datasets: list[Dataset], standard: str) -> etree._ElementTree:
    """The Define-XML 2.0 document describing ``datasets`` (all of one standard)."""
    name, version = _SDTM_IG[standard]
    study = protocol.study
    root = etree.Element(
        _q(ODM_NS, "ODM"),
        nsmap={None: ODM_NS, "def": DEF_NS, "xlink": XLINK_NS},
    )
    root.set("ODMVersion", "1.3.2")
    root.set("FileType", "Snapshot")
    root.set("FileOID", f"DEFINE.{study.id}.{standard}")
    root.set("CreationDateTime", dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S"))
    root.set("Originator", "stalwart")
    root.set("SourceSystem", "stalwart")
    root.set("SourceSystemVersion", __version__)
    st = _el(root, "Study", OID=f"ST.{study.id}")
    gv = _el(st, "GlobalVariables")
    _el(gv, "StudyName").text = study.id
    _el(gv, "StudyDescription").text = study.title
    _el(gv, "ProtocolName").text = f"{study.id} {study.version}"
    mdv = _el(
        st,
        "MetaDataVersion",
        OID=f"MDV.{study.id}.{standard}",
        Name=f"{study.id} {standard} {study.version}",
        Description=f"{standard} datasets of {study.id} (protocol {study.version})",
    )
    mdv.set(_q(DEF_NS, "DefineVersion"), "2.0.0")
    mdv.set(_q(DEF_NS, "StandardName"), name)
    mdv.set(_q(DEF_NS, "StandardVersion"), version)
    codelists: dict[str, list[str]] = {}
    items: list[tuple[Dataset, Variable]] = []
    for ds in datasets:
        ig = _el(
            mdv,
            "ItemGroupDef",
            OID=f"IG.{ds.name}",
            Name=ds.name,
            Repeating="No" if ds.name in ("DM", "ADSL") else "Yes",
            IsReferenceData="Yes" if ds.klass == "TRIAL DESIGN" else "No",
            SASDatasetName=ds.name,
            Domain=ds.name if standard == "SDTM" else "",
            Purpose="Tabulation" if standard == "SDTM" else "Analysis",
        )
        ig.set(_q(DEF_NS, "Structure"), ds.structure)
        ig.set(_q(DEF_NS, "Class"), ds.klass)
        ig.set(_q(DEF_NS, "ArchiveLocationID"), f"LF.{ds.name}")
        _description(ig, ds.label)
        for order, v in enumerate(ds.variables, start=1):
            key = ds.keys.index(v.name) + 1 if v.name in ds.keys else None
            mandatory = key is not None or v.name in ("STUDYID", "DOMAIN", "USUBJID")
            _el(
                ig,
                "ItemRef",
                ItemOID=f"IT.{ds.name}.{v.name}",
                OrderNumber=str(order),
                Mandatory="Yes" if mandatory else "No",
                KeySequence="" if key is None else str(key),
            )
            items.append((ds, v))
            if v.name in _CODED:
                values = ds.frame[v.name].dropna().astype(str)
                codelists[f"CL.{ds.name}.{v.name}"] = sorted(set(values) - {""})
        leaf = _el(ig, "leaf", DEF_NS, ID=f"LF.{ds.name}")
        leaf.set(_q(XLINK_NS, "href"), f"{ds.name.lower()}.xpt")
        _el(leaf, "title", DEF_NS).text = f"{ds.name.lower()}.xpt"
    for ds, v in items:
        kind, length = data_type(ds, v)
        item = _el(
            mdv,
            "ItemDef",
            OID=f"IT.{ds.name}.{v.name}",
            Name=v.name,
            DataType=kind,
            Length=length,
            SASFieldName=v.name,
        )
        if v.kind == "Date":
            item.set(_q(DEF_NS, "DisplayFormat"), "DATE9.")
        _description(item, v.label)
        oid = f"CL.{ds.name}.{v.name}"
        if codelists.get(oid):
            _el(item, "CodeListRef", CodeListOID=oid)
        _el(item, "Origin", DEF_NS, Type=_origin(ds, v))
    for oid, values in codelists.items():
        if not values:
            continue
        _, ds_name, var = oid.split(".")
        cl = _el(mdv, "CodeList", OID=oid, Name=f"{ds_name} {var}", DataType="text")
        for i, value in enumerate(values, start=1):
            _el(cl, "EnumeratedItem", CodedValue=value, OrderNumber=str(i))
    return etree.ElementTree(root)


def write_define(protocol: Protocol, datasets: list[Dataset], standard: str, path: Path) -> Path:
    """Build, validate and write the Define-XML document of ``datasets`` to ``path``."""
    doc = build_define(protocol, datasets, standard)
    validate_xml(doc, define_schema(), f"the {standard} Define-XML")
    doc.write(str(path), xml_declaration=True, encoding="UTF-8", pretty_print=True)
    return path
