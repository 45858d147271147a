"""CDISC ODM 1.3.2 export of a trial database: metadata from the protocol, data as the audit trail.

The file is a *transactional* ODM document. Its ``ClinicalData`` replays the store's audit chain
in order: each audit record becomes one ``ItemGroupData`` (one table row, ``TransactionType``
Insert or Update, ``ItemGroupRepeatKey`` the row id) holding the row's full content as
``ItemData`` and an ``AuditRecord`` with who (``UserRef``), where (``LocationRef``: the site),
when (``DateTimeStamp``), why (``ReasonForChange``) and the record's chain hash (``SourceID``).
Since a verified chain holds every row's every state, the file is a complete backup:
``odm_import.import_odm`` rebuilds the rows and the chain exactly, so the restored database has
the same ``data_sha256`` and passes ``stalwart audit verify``.

Subjects are keyed by screening number (a person is screened before being randomized);
study-level rows (trial, sites, allocation lists, users) sit under the subject key
``STUDY-LEVEL``. Metadata: one form and item group per table, one item per column, code lists
from the protocol (arms, sites, visits, lab tests, AE terms, clinical events, dispositions).
Password hashes and login tokens are not audited data and are not exported.

Values: integers and floats as Python writes them (``repr``, exact), booleans ``true``/``false``,
dates ISO 8601, JSON columns as canonical JSON; a NULL is an absent ``ItemData``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import odmlib
import sqlalchemy as sa
from lxml import etree
from sqlalchemy.engine import Engine

from stalwart import __version__
from stalwart.capture.audit import VerifyReport, data_sha256, verify_audit
from stalwart.capture.db import snapshot_connection, snapshot_session
from stalwart.capture.service import CaptureService
from stalwart.capture.tables import CHAINED_TABLES, AuditRecord, Base
from stalwart.capture.text import first_uncarriable
from stalwart.cdisc.define_xml import ODM_NS, validate_xml
from stalwart.cdisc.trial_design import visit_schedule
from stalwart.errors import AuditChainError, ConfigurationError
from stalwart.protocol.load import LoadedProtocol

__all__ = [
    "BACKUP_STATEMENT",
    "ESCAPED",
    "ODM_XSD",
    "STUDY_LEVEL",
    "Backup",
    "backup_statement",
    "build_odm",
    "carriable",
    "column_kind",
    "encode_value",
    "export_odm",
    "odm_schema",
    "study_event_of",
    "table_of",
    "uncarried",
    "write_backup",
]

ODM_XSD = Path(odmlib.__file__).parent / "schemas" / "odm" / "1.3.2" / "ODM1-3-2.xsd"
"""The ODM 1.3.2 schema shipped by odmlib."""

STUDY_LEVEL = "STUDY-LEVEL"
"""Subject key of rows that belong to no screened person."""

_SETUP = {
    "trial",
    "site",
    "allocation_slot",
    "minimization_draw",
    "app_user",
    "user_credential",
    "auth_token",
}
_ENROLMENT = {"screening", "consent", "participant"}
_ODM_TYPES = {
    "int": "integer",
    "float": "float",
    "bool": "boolean",
    "date": "date",
    "json": "text",
    "str": "text",
}
_CODELISTS = {
    ("allocation_slot", "arm"): "CL.ARM",
    ("site", "code"): "CL.SITE",
    ("visit", "visit_code"): "CL.VISIT",
    ("lab_result", "test_code"): "CL.LABTEST",
    ("dose", "treatment"): "CL.TREATMENT",
    ("adverse_event", "term"): "CL.AETERM",
    ("adverse_event", "related"): "CL.AEREL",
    ("clinical_event", "event_code"): "CL.CEEVENT",
    ("disposition", "status"): "CL.DSSTATUS",
}


def table_of(name: str) -> sa.Table:
    """The SQLAlchemy table of an audited table name."""
    return Base.metadata.tables[name]


@cache
def odm_schema() -> etree.XMLSchema:
    """The ODM 1.3.2 schema (parsed once)."""
    return etree.XMLSchema(etree.parse(str(ODM_XSD)))


def column_kind(column: sa.Column[Any]) -> str:
    """How a column's values are written: int, float, bool, date, json or str."""
    t = column.type
    if isinstance(t, sa.Boolean):
        return "bool"
    if isinstance(t, sa.Integer):
        return "int"
    if isinstance(t, sa.Float):
        return "float"
    if isinstance(t, sa.Date):
        return "date"
    if isinstance(t, sa.JSON):
        return "json"
    return "str"


def backup_statement(head_hash: str, records: int) -> str:
    """What a file says of its own end (in ``ODM/@Description``): the chain head and the record
    count; a restore refuses a file whose records do not end there (a truncated file)."""
    return f"; chain head {head_hash}, {records} records"


BACKUP_STATEMENT = re.compile(r"; chain head ([0-9a-f]{64}), ([0-9]+) records$")
"""Reads ``backup_statement`` back."""

ESCAPED = "\ue000"
"""Marks a text the file holds as a JSON string: text XML cannot carry as it is."""


def carriable(text: str) -> str:
    """``text`` as an XML document can hold it, reversibly (``uncarried``): unchanged, or, when
    it holds a character XML 1.0 cannot carry (a control character or NUL stored by a version
    that accepted them, see ``capture.text``) or starts with ``ESCAPED``, ``ESCAPED`` and its
    ASCII JSON string. A backup thus never fails on what is stored, and restores it exactly."""
    if first_uncarriable(text) is None and not text.startswith(ESCAPED):
        return text
    return ESCAPED + json.dumps(text, ensure_ascii=True)


def uncarried(text: str) -> str:
    """The text ``carriable`` was given."""
    if not text.startswith(ESCAPED):
        return text
    value = json.loads(text[1:])
    if not isinstance(value, str):
        raise ValueError(f"not an escaped text: {text!r}")
    return value


def encode_value(kind: str, value: Any) -> str:
    """The ``ItemData/@Value`` of a JSON-able row value (as the audit record holds it)."""
    if kind == "bool":
        return "true" if value else "false"
    if kind == "float":
        return repr(float(value))
    if kind == "json":
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return carriable(str(value))


def study_event_of(table: str) -> str:
    """The study event OID a table's rows belong to."""
    if table in _SETUP:
        return "SE.SETUP"
    if table in _ENROLMENT:
        return "SE.ENROLMENT"
    return "SE.FOLLOWUP"


def _q(tag: str) -> str:
    return f"{{{ODM_NS}}}{tag}"


def _el(parent: etree._Element, tag: str, **attrs: str) -> etree._Element:
    return etree.SubElement(parent, _q(tag), attrs)


def _text(parent: etree._Element, tag: str, text: str) -> etree._Element:
    el = _el(parent, tag)
    el.text = carriable(text)
    return el


def _codelists(loaded: LoadedProtocol) -> dict[str, list[str]]:
    p = loaded.protocol
    return {
        "CL.ARM": [a.code for a in p.arms],
        "CL.SITE": [s.code for s in p.sites],
        "CL.VISIT": [v.code for v in visit_schedule(p)],
        "CL.LABTEST": [i.name for i in p.forms.LAB.items],
        "CL.TREATMENT": list(p.treatments),
        "CL.AETERM": list(p.forms.AE.terms),
        "CL.AEREL": list(p.forms.AE.relatedness),
        "CL.CEEVENT": [e.code for e in p.forms.CE.events],
        "CL.DSSTATUS": ["COMPLETED", "LOST TO FOLLOW-UP", "WITHDREW", "DEATH"],
    }


def _metadata(root: etree._Element, loaded: LoadedProtocol, mdv_oid: str) -> None:
    p = loaded.protocol
    study = _el(root, "Study", OID=f"ST.{p.study.id}")
    gv = _el(study, "GlobalVariables")
    _text(gv, "StudyName", p.study.id)
    _text(gv, "StudyDescription", p.study.title)
    _text(gv, "ProtocolName", f"{p.study.id} {p.study.version} (sha256 {loaded.sha256})")
    mdv = _el(
        study,
        "MetaDataVersion",
        OID=mdv_oid,
        Name=f"{p.study.id} {p.study.version}",
        Description="Trial database tables of stalwart, one item group per table",
    )
    proto = _el(mdv, "Protocol")
    events = {
        "SE.SETUP": ("Trial set-up", "Common"),
        "SE.ENROLMENT": ("Enrolment", "Scheduled"),
        "SE.FOLLOWUP": ("Follow-up", "Scheduled"),
    }
    for i, oid in enumerate(events, start=1):
        _el(proto, "StudyEventRef", StudyEventOID=oid, OrderNumber=str(i), Mandatory="Yes")
    tables = [t.__tablename__ for t in CHAINED_TABLES]
    for oid, (name, kind) in events.items():
        se = _el(mdv, "StudyEventDef", OID=oid, Name=name, Repeating="Yes", Type=kind)
        for k, table in enumerate([t for t in tables if study_event_of(t) == oid], start=1):
            _el(se, "FormRef", FormOID=f"F.{table}", OrderNumber=str(k), Mandatory="No")
    for table in tables:
        form = _el(mdv, "FormDef", OID=f"F.{table}", Name=table, Repeating="Yes")
        _el(form, "ItemGroupRef", ItemGroupOID=f"IG.{table}", Mandatory="Yes")
    for model in CHAINED_TABLES:
        table = model.__tablename__
        ig = _el(mdv, "ItemGroupDef", OID=f"IG.{table}", Name=table, Repeating="Yes")
        for k, col in enumerate(table_of(table).columns, start=1):
            _el(
                ig,
                "ItemRef",
                ItemOID=f"IT.{table}.{col.key}",
                OrderNumber=str(k),
                Mandatory="Yes" if not col.nullable else "No",
            )
    for model in CHAINED_TABLES:
        table = model.__tablename__
        for col in table_of(table).columns:
            item = _el(
                mdv,
                "ItemDef",
                OID=f"IT.{table}.{col.key}",
                Name=f"{table}.{col.key}",
                DataType=_ODM_TYPES[column_kind(col)],
            )
            if (table, col.key) in _CODELISTS:
                _el(item, "CodeListRef", CodeListOID=_CODELISTS[(table, col.key)])
    for oid, values in _codelists(loaded).items():
        cl = _el(mdv, "CodeList", OID=oid, Name=oid.removeprefix("CL."), DataType="text")
        for value in values:
            _el(cl, "EnumeratedItem", CodedValue=value)


class _Walker:
    """Assigns subject keys and sites to audit records as the chain is read in order."""

    def __init__(self) -> None:
        self.sites: dict[int, str] = {}
        self.screening: dict[int, tuple[str, int]] = {}
        self.participant: dict[int, int] = {}
        self.clinical_event: dict[int, int] = {}
        self.visit: dict[int, int] = {}

    def locate(self, table: str, rid: int, data: dict[str, Any]) -> tuple[str, str]:
        """(subject key, location OID) of a row."""
        if table == "site":
            self.sites[rid] = str(data["code"])
        if table == "screening":
            self.screening[rid] = (str(data["screening_number"]), int(data["site_id"]))
        if table == "participant":
            self.participant[rid] = int(data["screening_id"])
        if table == "clinical_event":
            self.clinical_event[rid] = int(data["participant_id"])
        screening_id: int | None = None
        if table in ("screening",):
            screening_id = rid
        elif "screening_id" in data:
            screening_id = int(data["screening_id"])
        elif data.get("participant_id") is not None:
            screening_id = self.participant.get(int(data["participant_id"]))
        elif table == "endpoint_review":
            pid = self.clinical_event.get(int(data["clinical_event_id"]))
            screening_id = None if pid is None else self.participant.get(pid)
        if screening_id is None or screening_id not in self.screening:
            return STUDY_LEVEL, "LOC.CENTRAL"
        number, site_id = self.screening[screening_id]
        return number, f"LOC.{self.sites.get(site_id, 'CENTRAL')}"


@dataclass(frozen=True)
class Backup:
    """A backup file written by ``write_backup``: the chain it holds and the data sha256 of the
    snapshot it was read from (what a restore of it reproduces)."""

    path: Path
    records: int
    head_hash: str
    data_sha256: str


def build_odm(engine: Engine | sa.Connection, loaded: LoadedProtocol) -> etree._ElementTree:
    """The ODM document of the database (its audit chain must verify), read in one snapshot."""
    with snapshot_connection(engine) as conn:
        return _document(conn, loaded, verify_audit(conn))


def _document(
    conn: sa.Connection, loaded: LoadedProtocol, report: VerifyReport
) -> etree._ElementTree:
    """The ODM document of the snapshot ``conn`` reads, whose chain ``report`` checked."""
    if not report.ok:
        assert report.finding is not None
        raise AuditChainError(
            report.finding.sequence,
            f"the audit chain does not verify, so the export would not be a faithful copy: "
            f"{report.finding.message}; run `stalwart audit verify` and investigate",
        )
    p = loaded.protocol
    mdv_oid = f"MDV.{p.study.id}.{p.study.version}"
    root = etree.Element(_q("ODM"), nsmap={None: ODM_NS})
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    for key, value in {
        "Description": f"{p.study.id} trial database: protocol metadata and the audit trail"
        + backup_statement(report.head_hash, report.records),
        "FileType": "Transactional",
        "Granularity": "All",
        "FileOID": f"ODM.{p.study.id}.{report.head_hash[:16]}",
        "CreationDateTime": now,
        "ODMVersion": "1.3.2",
        "Originator": "stalwart",
        "SourceSystem": "stalwart",
        "SourceSystemVersion": __version__,
    }.items():
        root.set(key, value)
    _metadata(root, loaded, mdv_oid)
    admin = _el(root, "AdminData", StudyOID=f"ST.{p.study.id}")
    clinical = etree.Element(
        _q("ClinicalData"), StudyOID=f"ST.{p.study.id}", MetaDataVersionOID=mdv_oid
    )
    users: dict[str, str] = {}
    locations: set[str] = {"LOC.CENTRAL"}
    kinds = {
        m.__tablename__: {c.key: column_kind(c) for c in table_of(m.__tablename__).columns}
        for m in CHAINED_TABLES
    }
    walker = _Walker()
    with snapshot_session(conn) as session:
        # the records the verification saw: writes going on meanwhile are not in this file
        stmt = (
            sa.select(AuditRecord)
            .where(AuditRecord.sequence <= report.records)
            .order_by(AuditRecord.sequence)
        )
        for rec in session.execute(stmt.execution_options(yield_per=2000)).scalars():
            data = json.loads(rec.data)
            subject, location = walker.locate(rec.table_name, rec.record_id, data)
            locations.add(location)
            user = users.setdefault(rec.actor, f"USR.{len(users) + 1}")
            sd = _el(clinical, "SubjectData", SubjectKey=subject, TransactionType="Upsert")
            se = _el(
                sd,
                "StudyEventData",
                StudyEventOID=study_event_of(rec.table_name),
                TransactionType="Upsert",
            )
            fd = _el(se, "FormData", FormOID=f"F.{rec.table_name}", TransactionType="Upsert")
            ig = _el(
                fd,
                "ItemGroupData",
                ItemGroupOID=f"IG.{rec.table_name}",
                ItemGroupRepeatKey=str(rec.record_id),
                TransactionType="Insert" if rec.action == "INSERT" else "Update",
            )
            ar = _el(ig, "AuditRecord", ID=f"AR.{rec.sequence}")
            _el(ar, "UserRef", UserOID=user)
            _el(ar, "LocationRef", LocationOID=location)
            _text(ar, "DateTimeStamp", rec.recorded_at)
            if rec.reason is not None:
                _text(ar, "ReasonForChange", rec.reason)
            _text(ar, "SourceID", rec.hash)
            for col, kind in kinds[rec.table_name].items():
                value = data.get(col)
                if value is not None:
                    _el(
                        ig,
                        "ItemData",
                        ItemOID=f"IT.{rec.table_name}.{col}",
                        Value=encode_value(kind, value),
                    )
    for actor, oid in users.items():
        _text(_el(admin, "User", OID=oid), "LoginName", actor)
    names = {s.code: s.name for s in p.sites}
    for loc in sorted(locations):
        code = loc.removeprefix("LOC.")
        el = _el(
            admin,
            "Location",
            OID=loc,
            Name=names.get(code, "Coordinating centre"),
            LocationType="Site" if code in names else "Other",
        )
        _el(
            el,
            "MetaDataVersionRef",
            StudyOID=f"ST.{p.study.id}",
            MetaDataVersionOID=mdv_oid,
            EffectiveDate=p.study.accrual_start.isoformat(),
        )
    if len(admin) == 0:
        root.remove(admin)
    root.append(clinical)
    return etree.ElementTree(root)


def export_odm(engine: Engine | sa.Connection, loaded: LoadedProtocol, path: Path) -> Path:
    """Write the database as a validated ODM 1.3.2 file at ``path``."""
    doc = build_odm(engine, loaded)
    validate_xml(doc, odm_schema(), "the ODM export")
    doc.write(str(path), xml_declaration=True, encoding="UTF-8")
    return path


def write_backup(engine: Engine, out: Path) -> Backup:
    """Back the database up to the ODM file ``out``, written whole or not at all (an older file
    there is replaced only by a complete one).

    The chain is verified, the records walked and the data sha256 computed in one snapshot, so
    the sha256 returned is the one a restore of this very file gives, however many writes go on
    meanwhile."""
    if out.is_dir():
        raise ConfigurationError(f"--out {out} is a folder: give the backup file's name")
    loaded = CaptureService.open(engine).loaded  # a database without a trial is refused here
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent)
    os.close(fd)
    staging = Path(name)
    try:
        with snapshot_connection(engine) as conn:
            report = verify_audit(conn)
            doc = _document(conn, loaded, report)
            digest = data_sha256(conn)
        validate_xml(doc, odm_schema(), "the backup")
        doc.write(str(staging), xml_declaration=True, encoding="UTF-8")
        staging.replace(out)
    finally:
        staging.unlink(missing_ok=True)
    return Backup(out, report.records, report.head_hash, digest)
