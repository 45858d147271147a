"""``stalwart export sdtm|adam|odm|define``: a trial database in a CDISC format, all or nothing.

* ``sdtm``: DM, SV, EX, CM, LB, AE, CE, DS, DV (when deviations are logged) and the trial design
  TA, TE, TV, TI, TS (SDTMIG 3.4), as XPT v5 (and CSV in ``csv/``), with ``define.xml``
  (Define-XML 2.1) and the reviewer's guide ``csdrg.html``; ``--meddra`` codes the AE terms with
  a MedDRA release the sponsor holds;
* ``adam``: ADSL, ADLB, ADTTE, ADAE (the tables the analysis plan analyses), XPT, ``csv/`` and
  ``define.xml``; ``stalwart analyze --adam`` reads the folder as it is;
* ``odm``: ``<study>.odm.xml``, ODM 1.3.2 with the protocol's metadata and the audit trail (the
  backup that ``stalwart import odm`` restores);
* ``define``: only ``sdtm-define.xml`` (2.1) and ``adam-define.xml`` (2.0).

Everything is written into a temporary folder beside ``out`` and moved into place only once every
file has been written and validated, so a failed export leaves ``out`` as it was. Refused with a
typed error: an unknown format, a database without a trial or without participants, and (when a
protocol file is given) a database run under another protocol version.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import Connection, Engine

from stalwart.analysis.datasets.bundle import derive_datasets
from stalwart.analysis.datasets.source import StoreExtract, read_store
from stalwart.capture.db import snapshot_connection
from stalwart.capture.service import CaptureService
from stalwart.cdisc.adam_export import adam_datasets
from stalwart.cdisc.csdrg import write_sdrg
from stalwart.cdisc.define21 import SDRG_FILE, write_define21
from stalwart.cdisc.define_xml import write_define
from stalwart.cdisc.meddra import MedDRA, load_meddra
from stalwart.cdisc.odm import export_odm
from stalwart.cdisc.sdtm import sdtm_domains
from stalwart.cdisc.trial_design import trial_design
from stalwart.cdisc.xpt import Dataset, write_dataset
from stalwart.errors import ConfigurationError, ExportError
from stalwart.protocol.load import LoadedProtocol, load_protocol

__all__ = ["FORMATS", "ExportSummary", "export_cdisc"]

FORMATS = ("sdtm", "adam", "odm", "define")
"""The export formats, in the order ``stalwart export`` lists them."""


@dataclass(frozen=True)
class ExportSummary:
    """What an export wrote: the files (in ``out``) and the rows per dataset."""

    kind: str
    out: Path
    files: tuple[Path, ...]
    rows: dict[str, int]


def _check_protocol(service: CaptureService, protocol: Path | None) -> LoadedProtocol:
    stored = service.loaded
    if protocol is None:
        return stored
    given = load_protocol(protocol)
    if given.sha256 != stored.sha256:
        g, s = given.protocol.study, stored.protocol.study
        raise ExportError(
            f"the database was run under protocol {s.id} {s.version} (sha256 "
            f"{stored.sha256[:12]}...) but {protocol} is {g.id} {g.version} (sha256 "
            f"{given.sha256[:12]}...): export with the protocol the database holds (omit "
            "--protocol) or point --database at this protocol's database"
        )
    return stored


def _sdtm(loaded: LoadedProtocol, extract: StoreExtract, meddra: MedDRA | None) -> list[Dataset]:
    subjects = len(extract.participants)
    return sdtm_domains(loaded.protocol, extract, meddra) + trial_design(loaded.protocol, subjects)


def _adam(loaded: LoadedProtocol, extract: StoreExtract) -> list[Dataset]:
    return adam_datasets(loaded.protocol, derive_datasets(loaded.protocol, extract), extract)


def _write(
    kind: str, engine: Connection, loaded: LoadedProtocol, folder: Path, meddra: MedDRA | None
) -> dict[str, int]:
    if kind == "odm":
        export_odm(engine, loaded, folder / f"{loaded.protocol.study.id.lower()}.odm.xml")
        return {}
    extract = read_store(engine)
    if extract.participants.empty:
        raise ExportError(
            "the database holds no randomized participants, so there is nothing to tabulate; "
            "randomize participants first (or export odm, which needs none)"
        )
    rows: dict[str, int] = {}
    version = meddra.version if meddra else None
    if kind == "define":
        write_define21(
            loaded.protocol, _sdtm(loaded, extract, meddra), folder / "sdtm-define.xml", version
        )
        write_define(loaded.protocol, _adam(loaded, extract), "ADaM", folder / "adam-define.xml")
        return rows
    datasets = _sdtm(loaded, extract, meddra) if kind == "sdtm" else _adam(loaded, extract)
    for ds in datasets:
        write_dataset(ds, folder)
        rows[ds.name] = len(ds.frame)
    if kind == "adam":
        write_define(loaded.protocol, datasets, "ADaM", folder / "define.xml")
        return rows
    write_define21(loaded.protocol, datasets, folder / "define.xml", version)
    write_sdrg(loaded.protocol, datasets, extract, meddra, folder / SDRG_FILE)
    return rows


def _move_into(staging: Path, out: Path) -> list[Path]:
    """Move every file of ``staging`` to the same place under ``out`` (replacing older ones)."""
    out.mkdir(exist_ok=True)
    moved = []
    for item in sorted(staging.iterdir()):
        target = out / item.name
        if item.is_dir():
            moved += _move_into(item, target)
        else:
            item.replace(target)
            moved.append(target)
    return moved


def export_cdisc(
    kind: str,
    engine: Engine,
    out: Path,
    protocol: Path | None = None,
    meddra: Path | None = None,
) -> ExportSummary:
    """Export the database in format ``kind`` (one of ``FORMATS``) into the folder ``out``;
    ``meddra``: the MedAscii folder of a MedDRA release to code the AE terms with."""
    if kind not in FORMATS:
        raise ExportError(f"unknown export format {kind!r}; use one of {', '.join(FORMATS)}")
    if out.exists() and not out.is_dir():
        raise ConfigurationError(f"--out {out} is a file, not a folder")
    service = CaptureService.open(engine)
    loaded = _check_protocol(service, protocol)
    dictionary = load_meddra(meddra) if meddra is not None else None
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        # one snapshot for every file: writes going on meanwhile are in none or in all of them
        with snapshot_connection(engine) as conn:
            rows = _write(kind, conn, loaded, staging, dictionary)
        files = _move_into(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ExportSummary(kind, out, tuple(files), rows)
