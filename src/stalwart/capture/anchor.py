"""Signed checkpoints of the audit chain, kept outside the trial database.

The chain's hashes are public SHA-256 and its head lives in the database it covers, so someone
with write access to the database can rewrite history and rehash everything after it. A
checkpoint anchors the chain outside the database: the chain's sequence number, head hash and
record count at a moment, signed with an Ed25519 key that the database never holds (a file or an
environment variable named on the command line), in a small JSON file that can be copied to a
second disk or sent to a sponsor or DSMB who has no database access. The design is
Certificate Transparency's signed tree head (RFC 9162) without the Merkle tree: the chain's
records are numbered and each hash covers every record before it, so the head hash at sequence
S fixes records 1..S exactly, and a later chain that extends it must hold the same hash at S.

``audit verify --checkpoints`` then fails on any checkpoint the chain contradicts: a record at or
before it altered and everything rehashed, a forged actor or time, a tail removed together with
its data and the head. Nothing can vouch for the records appended after the newest checkpoint:
hence ``stalwart serve`` writes one every N records or M minutes (``Checkpointer``).

A checkpoint is written only for a chain that extends the previous checkpoint in the same folder
(its hash at that sequence and every link after it re-checked), so a tampered chain is never
signed.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from stalwart.capture.audit import GENESIS_HASH, record_hash
from stalwart.capture.db import snapshot_session
from stalwart.capture.tables import AuditHead, AuditRecord, TrialInfo
from stalwart.errors import AuditChainError, ConfigurationError

__all__ = [
    "CHECKPOINT_FORMAT",
    "Checkpoint",
    "Checkpointer",
    "generate_keys",
    "load_private_key",
    "load_public_key",
    "read_checkpoints",
    "write_checkpoint",
]

CHECKPOINT_FORMAT = "stalwart-audit-checkpoint/1"
"""The ``format`` of every checkpoint file; a reader refuses any other."""

_ENV_PREFIX = "env:"


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


@dataclass(frozen=True)
class Checkpoint:
    """One signed statement: "the chain of ``study`` held ``records`` records, the last with
    hash ``head_hash``, at ``signed_at``"; ``chain`` is the hash of record 1 (which chain)."""

    study: str
    chain: str
    sequence: int
    head_hash: str
    signed_at: str
    key_id: str
    signature: str
    path: Path | None = None

    def body(self) -> dict[str, Any]:
        """The signed fields, as the file holds them."""
        return {
            "format": CHECKPOINT_FORMAT,
            "study": self.study,
            "chain": self.chain,
            "sequence": self.sequence,
            "records": self.sequence,
            "head_hash": self.head_hash,
            "signed_at": self.signed_at,
            "key_id": self.key_id,
        }

    @property
    def label(self) -> str:
        """How a message names it: file name, record and signing time."""
        name = self.path.name if self.path is not None else "checkpoint"
        return f"checkpoint {name} (record {self.sequence}, signed {self.signed_at})"


# -- keys ------------------------------------------------------------------------------------------
def generate_keys(private: Path, public: Path) -> str:
    """Write a new Ed25519 key pair (PEM; the private file readable by its owner only); returns
    the key id. Refuses to replace existing files: a lost key cannot sign again, a replaced one
    orphans every checkpoint it signed."""
    for path in (private, public):
        if path.exists():
            raise ConfigurationError(f"{path} exists: choose a new file (keys are never replaced)")
        if not path.parent.is_dir():
            raise ConfigurationError(f"folder {path.parent} does not exist")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return _key_id(key.public_key())


def _key_text(spec: str, what: str) -> bytes:
    if spec.startswith(_ENV_PREFIX):
        name = spec.removeprefix(_ENV_PREFIX)
        value = os.environ.get(name)
        if not value:
            raise ConfigurationError(f"environment variable {name} (the {what}) is not set")
        return value.encode()
    path = Path(spec)
    if not path.is_file():
        raise ConfigurationError(
            f"no {what} file {path}; give a PEM file `stalwart audit keygen` wrote, or "
            f"{_ENV_PREFIX}VARIABLE for one held in an environment variable"
        )
    return path.read_bytes()


def load_private_key(spec: str) -> Ed25519PrivateKey:
    """The signing key from a PEM file, or from environment variable NAME given as ``env:NAME``."""
    try:
        key = serialization.load_pem_private_key(_key_text(spec, "signing key"), password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(f"{spec} is not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigurationError(f"{spec} is not an Ed25519 key: make one with audit keygen")
    return key


def load_public_key(spec: str) -> Ed25519PublicKey:
    """The verifying key from a PEM file (or ``env:NAME``)."""
    try:
        key = serialization.load_pem_public_key(_key_text(spec, "public key"))
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(f"{spec} is not a PEM public key: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigurationError(f"{spec} is not an Ed25519 public key")
    return key


# -- reading ---------------------------------------------------------------------------------------
def _parse(path: Path, public: Ed25519PublicKey) -> Checkpoint:
    def bad(why: str) -> AuditChainError:
        return AuditChainError(None, f"checkpoint file {path}: {why}")

    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        body, signature = doc["checkpoint"], doc["signature"]
        cp = Checkpoint(
            study=str(body["study"]),
            chain=str(body["chain"]),
            sequence=int(body["sequence"]),
            head_hash=str(body["head_hash"]),
            signed_at=str(body["signed_at"]),
            key_id=str(body["key_id"]),
            signature=str(signature),
            path=path,
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise bad(f"not a checkpoint ({exc})") from None
    if body.get("format") != CHECKPOINT_FORMAT or body != cp.body():
        raise bad(f"not a {CHECKPOINT_FORMAT} checkpoint (unknown or missing fields)")
    try:
        public.verify(base64.b64decode(signature, validate=True), _canonical(body))
    except (InvalidSignature, ValueError):
        raise bad(
            "its signature does not verify under the public key (altered, forged, or signed "
            f"with another key: this one is {_key_id(public)}, the file names {cp.key_id})"
        ) from None
    return cp


def read_checkpoints(folder: Path, public: Ed25519PublicKey) -> list[Checkpoint]:
    """Every ``*.json`` checkpoint of ``folder``, signatures checked, by sequence.

    A file that is not a checkpoint, or whose signature fails, is an ``AuditChainError``: a
    checkpoint folder holds nothing else, and a forged anchor is itself a finding."""
    if not folder.is_dir():
        raise ConfigurationError(f"no checkpoint folder {folder}")
    found = [_parse(p, public) for p in sorted(folder.glob("*.json"))]
    if not found:
        raise ConfigurationError(f"{folder} holds no checkpoint (*.json): nothing to check against")
    return sorted(found, key=lambda c: (c.sequence, c.signed_at))


def _latest(folder: Path, public: Ed25519PublicKey) -> Checkpoint | None:
    if not folder.is_dir():
        return None
    mine = []
    for path in folder.glob("checkpoint-*.json"):
        try:
            mine.append(_parse(path, public))
        except AuditChainError:
            continue  # another key's checkpoint, or not ours: not a base to extend
    return max(mine, key=lambda c: (c.sequence, c.signed_at), default=None)


# -- writing ---------------------------------------------------------------------------------------
def _extends(session: Session, base: tuple[int, str], head: tuple[int, str]) -> None:
    """Refuse unless the chain holds ``base``'s hash at its sequence and every record from there
    to ``head`` links and hashes correctly."""
    start, start_hash = base
    if start > head[0]:
        raise AuditChainError(
            head[0],
            f"the chain ends at record {head[0]} but the last checkpoint signed record {start}: "
            "records were removed; run audit verify --checkpoints",
        )
    if start > 0:
        stored = session.scalar(sa.select(AuditRecord.hash).where(AuditRecord.sequence == start))
        if stored != start_hash:
            raise AuditChainError(
                start,
                f"record {start} no longer has the hash the last checkpoint signed: the chain "
                "was rewritten; run audit verify --checkpoints",
            )
    prev, expected = start_hash, start + 1
    stmt = (
        sa.select(AuditRecord)
        .where(AuditRecord.sequence > start, AuditRecord.sequence <= head[0])
        .order_by(AuditRecord.sequence)
        .execution_options(yield_per=2000)
    )
    for rec in session.execute(stmt).scalars():
        if rec.sequence != expected or rec.prev_hash != prev or record_hash(rec) != rec.hash:
            raise AuditChainError(
                rec.sequence, f"audit record {rec.sequence} does not verify: run audit verify"
            )
        prev, expected = rec.hash, expected + 1
    if expected != head[0] + 1 or prev != head[1]:
        raise AuditChainError(head[0], "the chain head does not match the chain: run audit verify")


def _signed(key: Ed25519PrivateKey, study: str, chain: str, head: tuple[int, str]) -> Checkpoint:
    unsigned = Checkpoint(
        study=study,
        chain=chain,
        sequence=head[0],
        head_hash=head[1],
        signed_at=dt.datetime.now(dt.UTC).isoformat(timespec="microseconds"),
        key_id=_key_id(key.public_key()),
        signature="",
    )
    signature = base64.b64encode(key.sign(_canonical(unsigned.body()))).decode()
    return Checkpoint(**{**unsigned.__dict__, "signature": signature})


def _store(cp: Checkpoint, folder: Path) -> Checkpoint:
    folder.mkdir(parents=True, exist_ok=True)
    stamp = cp.signed_at.replace(":", "").replace("-", "").replace("+0000", "Z")
    path = folder / f"checkpoint-{cp.sequence:010d}-{stamp}.json"
    staging = path.with_suffix(".part")
    doc = {"checkpoint": cp.body(), "signature": cp.signature}
    staging.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    staging.replace(path)
    return Checkpoint(**{**cp.__dict__, "path": path})


def _head(session: Session) -> tuple[str, str, tuple[int, str]]:
    study = session.scalar(sa.select(TrialInfo.protocol_id)) or ""
    chain = session.scalar(sa.select(AuditRecord.hash).where(AuditRecord.sequence == 1))
    row = session.execute(sa.select(AuditHead.sequence, AuditHead.hash)).one_or_none()
    head = (0, GENESIS_HASH) if row is None else (int(row.sequence), str(row.hash))
    return study, chain or GENESIS_HASH, head


def write_checkpoint(
    engine: Engine, key: Ed25519PrivateKey, folder: Path, base: Checkpoint | None = None
) -> Checkpoint:
    """Sign the chain's current head into a new file of ``folder`` and return it.

    The chain must extend ``base`` (default: the newest checkpoint of ``folder`` signed by this
    key; none: the chain is checked from its first record), else ``AuditChainError``."""
    if base is None:
        base = _latest(folder, key.public_key())
    with snapshot_session(engine) as session:
        study, chain, head = _head(session)
        _extends(
            session, (0, GENESIS_HASH) if base is None else (base.sequence, base.head_hash), head
        )
    return _store(_signed(key, study, chain, head), folder)


class Checkpointer:
    """Writes a checkpoint whenever ``every_records`` records were appended since the last one,
    or ``every_seconds`` passed and the chain grew; ``run`` loops until ``stop`` is set.

    Errors are reported through ``report`` and retried at the next tick, so a full disk or a
    refused chain is loud but does not stop the server."""

    def __init__(
        self,
        engine: Engine,
        key: Ed25519PrivateKey,
        folder: Path,
        every_records: int = 1000,
        every_seconds: float = 300.0,
        report: Callable[[str], None] = print,
        clock: Callable[[], float] | None = None,
    ) -> None:
        import time

        if every_records < 1 or every_seconds <= 0:
            raise ConfigurationError("checkpoint intervals must be positive")
        self.engine, self.key, self.folder = engine, key, folder
        self.every_records, self.every_seconds = every_records, every_seconds
        self.report = report
        self.clock = clock or time.monotonic
        self.stop = threading.Event()
        self.last: Checkpoint | None = _latest(folder, key.public_key())
        self.last_at = self.clock()

    def due(self) -> bool:
        """Whether the chain grew enough, or long enough ago, to sign it now."""
        with self.engine.connect() as conn:
            head = conn.scalar(sa.select(AuditHead.sequence)) or 0
        done = 0 if self.last is None else self.last.sequence
        if head <= done:
            return False
        return head - done >= self.every_records or (
            self.clock() - self.last_at >= self.every_seconds
        )

    def tick(self) -> Checkpoint | None:
        """Write a checkpoint if one is due; returns it."""
        try:
            if not self.due():
                return None
            self.last = write_checkpoint(self.engine, self.key, self.folder, self.last)
            self.last_at = self.clock()
            return self.last
        except Exception as exc:  # the server keeps serving; the log says why
            self.report(f"audit checkpoint not written: {exc}")
            return None

    def run(self, poll_seconds: float = 2.0) -> None:
        """Tick every ``poll_seconds`` until ``stop`` is set, then write a last one if due."""
        while not self.stop.wait(poll_seconds):
            self.tick()
        self.tick()
