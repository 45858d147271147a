"""Sealed allocation lists: the arms of unassigned slots encrypted under a key kept outside the
database (AES-256-GCM, ``cryptography``).

With a key at ``stalwart init``, every block-list slot is stored with the arm ``SEALED`` and its
real arm only as ciphertext (``SealedArm``), bound to its stratum and position (the GCM
associated data), so a dump of the database, a DBA's read or a backup shows no future
allocation, and a ciphertext moved to another slot does not decrypt. Randomization opens one
slot inside the assigning transaction (``open_arm``); from then on the slot, and its audit
record, hold the arm like any other. Without the key nobody can randomize into a sealed trial,
and a lost key means the remaining list is lost (the statistician regenerates it from the
sealed seed, see the README).

The key file holds 32 random bytes in base64 (``generate_allocation_key``), or give
``env:NAME`` for an environment variable holding the same text.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from stalwart.errors import AllocationKeyError, ConfigurationError

__all__ = [
    "ALLOCATION_KEY_ENV",
    "SEALED",
    "AllocationKey",
    "generate_allocation_key",
    "load_allocation_key",
]

SEALED = "SEALED"
"""The arm an unassigned slot of a sealed list shows."""

_ENV = "env:"

ALLOCATION_KEY_ENV = "STALWART_ALLOCATION_KEY"
"""The environment variable through which ``stalwart serve --allocation-key`` hands the key's
file (or ``env:NAME``) to its worker processes; setting it has the same effect."""

HOW_TO_GIVE = (
    "restart the server with `stalwart serve --allocation-key FILE` (or set "
    f"{ALLOCATION_KEY_ENV}=FILE), FILE being the key file `stalwart init --allocation-key` "
    "wrote (or env:NAME, a variable holding its text)"
)
"""How an operator gives the server the allocation key (said by every refusal for want of it)."""


class AllocationKey:
    """An AES-256-GCM key that seals and opens the arms of one trial's allocation slots."""

    def __init__(self, raw: bytes) -> None:
        if len(raw) != 32:
            raise ConfigurationError("an allocation key is 32 bytes (256 bits)")
        self._aead = AESGCM(raw)
        self.key_id = hashlib.sha256(b"stalwart-allocation-key:" + raw).hexdigest()[:16]

    @staticmethod
    def _aad(stratum: str, sequence: int) -> bytes:
        return f"stalwart-slot:{stratum}:{sequence}".encode()

    def seal(self, stratum: str, sequence: int, arm: str) -> str:
        """The arm of slot ``sequence`` of ``stratum``, encrypted: nonce and ciphertext, base64."""
        nonce = secrets.token_bytes(12)
        sealed = self._aead.encrypt(nonce, arm.encode(), self._aad(stratum, sequence))
        return base64.b64encode(nonce + sealed).decode()

    def open_arm(self, stratum: str, sequence: int, sealed: str) -> str:
        """The arm ``seal`` sealed for this slot; ``ConfigurationError`` when it does not open."""
        try:
            blob = base64.b64decode(sealed, validate=True)
            plain = self._aead.decrypt(blob[:12], blob[12:], self._aad(stratum, sequence))
        except (InvalidTag, ValueError):
            raise AllocationKeyError(
                f"randomization is unavailable: the allocation key does not open slot {sequence} "
                f"of {stratum}, so the server holds another key (this one is {self.key_id}) than "
                f"the one the list was sealed with, or the sealed arm was altered; {HOW_TO_GIVE}; "
                "nothing was randomized"
            ) from None
        return plain.decode()


def generate_allocation_key(path: Path) -> AllocationKey:
    """Write a new random key to ``path`` (a new file, owner-only) and return it."""
    if path.exists() or not path.parent.is_dir():
        raise ConfigurationError(f"{path}: give a new file in an existing folder")
    raw = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(base64.b64encode(raw).decode() + "\n")
    return AllocationKey(raw)


def load_allocation_key(spec: str) -> AllocationKey:
    """The key of a file ``generate_allocation_key`` wrote, or of ``env:NAME``."""
    if spec.startswith(_ENV):
        text = os.environ.get(spec.removeprefix(_ENV), "")
        if not text:
            raise ConfigurationError(f"environment variable {spec.removeprefix(_ENV)} is not set")
    else:
        path = Path(spec)
        if not path.is_file():
            raise ConfigurationError(f"no allocation key file {path}")
        text = path.read_text(encoding="ascii", errors="replace")
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except ValueError:
        raise ConfigurationError(f"{spec} is not an allocation key (base64 of 32 bytes)") from None
    return AllocationKey(raw)
