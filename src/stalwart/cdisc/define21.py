"""Define-XML 2.1 of an SDTM export: SDTMIG 3.4 and the SDTM CT it names, validated by schema.

One ``ItemGroupDef`` per dataset (``def:StandardOID`` the IG, ``def:Class`` its observation class,
``def:leaf`` its XPT file), an ``ItemRef`` per variable with the IG's ``Role`` and ``Mandatory``
when the IG requires it, one ``ItemDef`` per variable (type, length as written, label, origin),
enumerated code lists of the coded variables, and the dictionary of AEDECOD: MedDRA with its
version when the sponsor loaded a release, else the protocol's own AE term list, said so in a
comment (never named MedDRA). The reviewer's guide is a supplemental document. The schema is the
one odmlib ships (``schemas/define/2.1/define2-1-0.xsd``); nothing is fetched from the network.
"""

from __future__ import annotations

import datetime as dt
from functools import cache
from pathlib import Path

import odmlib
from lxml import etree

from stalwart import __version__
from stalwart.cdisc.define_xml import ODM_NS, data_type, validate_xml
from stalwart.cdisc.sdtmig import IG_VERSION, ig_variables
from stalwart.cdisc.xpt import Dataset, Variable
from stalwart.protocol.schema import Protocol

__all__ = ["DEFINE21_XSD", "SDRG_FILE", "build_define21", "define21_schema", "write_define21"]

DEF_NS = "http://www.cdisc.org/ns/def/v2.1"
XLINK_NS = "http://www.w3.org/1999/xlink"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
DEFINE21_XSD = Path(odmlib.__file__).parent / "schemas" / "define" / "2.1" / "define2-1-0.xsd"
"""The Define-XML 2.1 schema shipped by odmlib."""
SDRG_FILE = "csdrg.html"
"""The reviewer's guide the export writes beside the datasets."""

_CODED = (
    "ARMCD",
    "SEX",
    "RACE",
    "ETHNIC",
    "LBTESTCD",
    "LBNRIND",
    "DSDECOD",
    "AETOXGR",
    "AEOUT",
    "AEACN",
    "EXROUTE",
    "EXDOSFRM",
    "EPOCH",
    "IECAT",
    "TSPARMCD",
    "AESER",
    "AEREL",
)


@cache
def define21_schema() -> etree.XMLSchema:
    """The Define-XML 2.1 schema (parsed once)."""
    return etree.XMLSchema(etree.parse(str(DEFINE21_XSD)))


def _q(ns: str, tag: str) -> str:
    return f"{{{ns}}}{tag}"


def _el(parent: etree._Element, tag: str, ns: str = ODM_NS, **attrs: str) -> etree._Element:
    return etree.SubElement(parent, _q(ns, tag), {k: v for k, v in attrs.items() if v != ""})


def _description(parent: etree._Element, text: str) -> None:
    tt = _el(_el(parent, "Description"), "TranslatedText")
    tt.set(XML_LANG, "en")
    tt.text = text


def _origin(ds: Dataset, v: Variable) -> tuple[str, str]:
    """(Type, Source) of a variable's def:Origin."""
    if ds.klass == "TRIAL DESIGN":
        return "Protocol", "Sponsor"
    if v.name in ("STUDYID", "DOMAIN", "EPOCH") or (
        v.name.startswith("AE")
        and v.name
        in (
            "AEDECOD",
            "AELLT",
            "AELLTCD",
            "AEPTCD",
            "AEHLT",
            "AEHLTCD",
            "AEHLGT",
            "AEHLGTCD",
            "AEBODSYS",
            "AEBDSYCD",
            "AESOC",
            "AESOCCD",
        )
    ):
        return "Assigned", "Sponsor"
    if v.name.endswith(("SEQ", "DY", "NRIND", "LOBXFL")) or v.name in ("VISITNUM", "VISIT"):
        return "Derived", "Sponsor"
    return "Collected", "Investigator"


def _root(protocol: Protocol) -> tuple[etree._Element, etree._Element]:
    """The ODM root and its MetaDataVersion with the standards and the reviewer's guide."""
    study = protocol.study
    root = etree.Element(_q(ODM_NS, "ODM"), nsmap={None: ODM_NS, "def": DEF_NS, "xlink": XLINK_NS})
    for name, value in {
        "ODMVersion": "1.3.2",
        "FileType": "Snapshot",
        "FileOID": f"DEFINE.{study.id}.SDTM",
        "CreationDateTime": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S"),
        "Originator": "stalwart",
        "SourceSystem": "stalwart",
        "SourceSystemVersion": __version__,
    }.items():
        root.set(name, value)
    root.set(_q(DEF_NS, "Context"), "Submission")
    st = _el(root, "Study", OID=f"ST.{study.id}")
    gv = _el(st, "GlobalVariables")
    _el(gv, "StudyName").text = study.id
    _el(gv, "StudyDescription").text = study.title
    _el(gv, "ProtocolName").text = f"{study.id} {study.version}"
    mdv = _el(
        st,
        "MetaDataVersion",
        OID=f"MDV.{study.id}.SDTM",
        Name=f"{study.id} SDTM {study.version}",
        Description=f"SDTM datasets of {study.id} (protocol {study.version})",
    )
    mdv.set(_q(DEF_NS, "DefineVersion"), "2.1.0")
    standards = _el(mdv, "Standards", DEF_NS)
    # attributes in the order of the Define-XML 2.1 specification's examples (tools grep them)
    ig = {"OID": "STD.SDTMIG", "Name": "SDTMIG", "Type": "IG", "Version": IG_VERSION}
    _el(standards, "Standard", DEF_NS, **ig, Status="Final")
    if protocol.submission is not None:
        ct = {"OID": "STD.CT", "Name": "CDISC/NCI", "Type": "CT", "PublishingSet": "SDTM"}
        version = protocol.submission.ct_version
        _el(standards, "Standard", DEF_NS, **ct, Version=version, Status="Final")
    _el(_el(mdv, "SupplementalDoc", DEF_NS), "DocumentRef", DEF_NS, leafID="LF.CSDRG")
    return root, mdv


def _group(mdv: etree._Element, ds: Dataset, codelists: dict[str, list[str]]) -> None:
    """The ItemGroupDef of ``ds``; the values of its coded variables go into ``codelists``."""
    spec = ig_variables(ds.name)
    ig = _el(
        mdv,
        "ItemGroupDef",
        OID=f"IG.{ds.name}",
        Name=ds.name,
        Repeating="No" if ds.name == "DM" else "Yes",
        IsReferenceData="Yes" if ds.klass == "TRIAL DESIGN" else "No",
        SASDatasetName=ds.name,
        Domain=ds.name,
        Purpose="Tabulation",
    )
    ig.set(_q(DEF_NS, "Structure"), ds.structure)
    ig.set(_q(DEF_NS, "ArchiveLocationID"), f"LF.{ds.name}")
    ig.set(_q(DEF_NS, "StandardOID"), "STD.SDTMIG")
    _description(ig, ds.label)
    for order, v in enumerate(ds.variables, start=1):
        key = ds.keys.index(v.name) + 1 if v.name in ds.keys else None
        _el(
            ig,
            "ItemRef",
            ItemOID=f"IT.{ds.name}.{v.name}",
            OrderNumber=str(order),
            Mandatory="Yes" if spec[v.name].core == "Req" else "No",
            KeySequence="" if key is None else str(key),
            Role=spec[v.name].role,
        )
        if v.name in _CODED:
            values = ds.frame[v.name].dropna().astype(str)
            codelists[f"CL.{ds.name}.{v.name}"] = sorted(set(values) - {""})
    _el(ig, "Class", DEF_NS, Name=ds.klass)
    leaf = _el(ig, "leaf", DEF_NS, ID=f"LF.{ds.name}")
    leaf.set(_q(XLINK_NS, "href"), f"{ds.name.lower()}.xpt")
    _el(leaf, "title", DEF_NS).text = f"{ds.name.lower()}.xpt"


def _item(mdv: etree._Element, ds: Dataset, v: Variable, codelists: dict[str, list[str]]) -> None:
    """The ItemDef of variable ``v`` of ``ds``."""
    kind, length = data_type(ds, v)
    item = _el(
        mdv,
        "ItemDef",
        OID=f"IT.{ds.name}.{v.name}",
        Name=v.name,
        DataType=kind,
        Length="" if kind == "date" else length,
        SASFieldName=v.name,
    )
    decod = ds.name == "AE" and v.name == "AEDECOD"
    if decod:
        item.set(_q(DEF_NS, "CommentOID"), "COM.AEDECOD")
    _description(item, v.label)
    oid = f"CL.{ds.name}.{v.name}"
    if codelists.get(oid):
        _el(item, "CodeListRef", CodeListOID=oid)
    elif decod:
        _el(item, "CodeListRef", CodeListOID="CL.AEDICT")
    otype, source = _origin(ds, v)
    _el(item, "Origin", DEF_NS, Type=otype, Source=source)


def _dictionary(mdv: etree._Element, protocol: Protocol, meddra_version: str | None) -> None:
    """The AEDECOD dictionary: MedDRA and its version, or the protocol's own term list."""
    study = protocol.study
    cl = _el(mdv, "CodeList", OID="CL.AEDICT", Name="AE dictionary", DataType="text")
    if meddra_version:
        _el(cl, "ExternalCodeList", Dictionary="MedDRA", Version=meddra_version)
    else:
        name = f"{study.id} protocol AE term list"
        _el(cl, "ExternalCodeList", Dictionary=name, Version=study.version)


def _comment(mdv: etree._Element, meddra_version: str | None) -> None:
    comment = _el(mdv, "CommentDef", DEF_NS, OID="COM.AEDECOD")
    _description(
        comment,
        f"Coded with MedDRA {meddra_version} from the verbatim term (AETERM); a term matching "
        "no current lowest level term keeps the protocol's term and empty codes."
        if meddra_version
        else "MedDRA not applied: no MedDRA release was loaded. AEDECOD is the protocol's AE term "
        "the site picked (the protocol's own list, not a MedDRA preferred term); AELLT to AESOCCD "
        "are empty. No dictionary code is invented.",
    )


def build_define21(
    protocol: Protocol, datasets: list[Dataset], meddra_version: str | None
) -> etree._ElementTree:
    """The Define-XML 2.1 document of the SDTM ``datasets``."""
    root, mdv = _root(protocol)
    codelists: dict[str, list[str]] = {}
    for ds in datasets:
        _group(mdv, ds, codelists)
    for ds in datasets:
        for v in ds.variables:
            _item(mdv, ds, v, codelists)
    for oid, values in codelists.items():
        if not values:
            continue
        _, ds_name, var = oid.split(".")
        cl = _el(mdv, "CodeList", OID=oid, Name=f"{ds_name} {var}", DataType="text")
        for i, value in enumerate(values, start=1):
            _el(cl, "EnumeratedItem", CodedValue=value, OrderNumber=str(i))
    _dictionary(mdv, protocol, meddra_version)
    _comment(mdv, meddra_version)
    leaf = _el(mdv, "leaf", DEF_NS, ID="LF.CSDRG")
    leaf.set(_q(XLINK_NS, "href"), SDRG_FILE)
    _el(leaf, "title", DEF_NS).text = "Clinical Study Data Reviewer's Guide"
    return etree.ElementTree(root)


def write_define21(
    protocol: Protocol, datasets: list[Dataset], path: Path, meddra_version: str | None = None
) -> Path:
    """Build, validate against the Define-XML 2.1 schema and write the SDTM define to ``path``."""
    doc = build_define21(protocol, datasets, meddra_version)
    validate_xml(doc, define21_schema(), "the SDTM Define-XML 2.1")
    doc.write(str(path), xml_declaration=True, encoding="UTF-8", pretty_print=True)
    return path
