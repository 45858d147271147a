"""Allocation lists for every stratum of a protocol, generated from one seed at trial set-up.

The protocol's ``randomization.method`` picks the list:

* ``permuted_blocks``: a stratum is named by its factor values, e.g. ``site=US01`` or
  ``site=US01|sex=F``. Each stratum draws from its own stream,
  ``numpy.random.default_rng([seed, stratum index])``, so adding a site at the end of the
  protocol leaves the lists of existing strata unchanged.
* ``minimization``: no list (``allocation_lists`` is empty); set-up stores the trial's stream of
  uniform draws instead (``concealed_draws``), and each arm is chosen when a participant is
  randomized, from the allocation counts at that time.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
from collections.abc import Mapping
from numbers import Integral

import numpy as np

from stalwart.errors import ConfigurationError, ValidationError
from stalwart.protocol.schema import Protocol
from stalwart.randomization.blocks import Slot, permuted_blocks
from stalwart.randomization.minimization import minimization_draws

__all__ = [
    "SEED_SALT_BYTES",
    "allocation_lists",
    "concealed_draws",
    "seed_fingerprint",
    "seed_matches",
    "stratum_key",
    "stratum_keys",
    "stratum_levels",
]


def stratum_levels(protocol: Protocol) -> list[tuple[str, list[str]]]:
    """Each stratification factor with its levels, in protocol order."""
    items = {i.name: i for i in protocol.screening_items}
    factors: list[tuple[str, list[str]]] = []
    for name in protocol.randomization.strata:
        if name == "site":
            factors.append(("site", [s.code for s in protocol.sites]))
            continue
        item = items[name]
        if item.type == "choice" and item.choices:
            factors.append((name, list(item.choices)))
        elif item.type == "boolean":
            factors.append((name, ["true", "false"]))
        else:
            raise ConfigurationError(
                f"randomization.strata: {name!r} is a {item.type} item; stratify on a choice "
                "or boolean item (or add a categorised item to the screening form)"
            )
    return factors


def stratum_key(protocol: Protocol, site: str, answers: Mapping[str, object]) -> str:
    """The stratum of a participant at ``site`` with these screening answers."""
    parts = []
    for name, levels in stratum_levels(protocol):
        value = site if name == "site" else answers.get(name)
        text = str(value).lower() if isinstance(value, bool) else str(value)
        if text not in levels:
            raise ValidationError(name, f"stratification value {value!r} is not one of {levels}")
        parts.append(f"{name}={text}")
    return "|".join(parts)


def allocation_lists(protocol: Protocol, seed: int) -> dict[str, list[Slot]]:
    """The allocation list of every stratum, reproducible from ``seed`` (none for minimization)."""
    if isinstance(seed, bool) or not isinstance(seed, Integral) or seed < 0:
        raise ConfigurationError(
            f"the randomization seed must be a non-negative integer, got {seed!r}"
        )
    if protocol.randomization.method != "permuted_blocks":
        return {}
    block_sizes, length = protocol.randomization.permuted_blocks
    arms = [(a.code, a.ratio) for a in protocol.arms]
    lists: dict[str, list[Slot]] = {}
    for index, key in enumerate(stratum_keys(protocol)):
        rng = np.random.default_rng([seed, index])
        lists[key] = permuted_blocks(arms, block_sizes, length, rng)
    return lists


def concealed_draws(protocol: Protocol, seed: int) -> list[float]:
    """A minimization trial's stream of uniform draws, reproducible from ``seed``; else empty."""
    minimization = protocol.randomization.minimization
    if minimization is None:
        return []
    return [float(u) for u in minimization_draws(seed, minimization.list_length)]


def stratum_keys(protocol: Protocol) -> list[str]:
    """Every stratum of a permuted-blocks design, in list order (the stream index order)."""
    factors = stratum_levels(protocol)
    combos = itertools.product(*[[f"{name}={lvl}" for lvl in levels] for name, levels in factors])
    return ["|".join(combo) for combo in combos]


SEED_SALT_BYTES = 16
"""Length of the random salt of a seed fingerprint."""

_SCRYPT = {"n": 2**15, "r": 8, "p": 1, "maxmem": 64 * 2**20, "dklen": 16}
"""scrypt's cost (RFC 7914's interactive setting: 32 MiB and tens of ms per guess)."""


def seed_fingerprint(seed: int, salt: bytes) -> str:
    """The seed's stored fingerprint: the salt and the seed's salted scrypt digest, in hex (64
    characters). Stored instead of the seed so that whoever can read the database cannot
    regenerate the lists; salted and slow so that a small seed cannot be found by computing
    the fingerprints of every candidate (the unsalted SHA-256 of earlier versions could: seed 0
    in microseconds). Whoever holds the seed checks it with ``seed_matches``."""
    if len(salt) != SEED_SALT_BYTES:
        raise ValueError(f"the fingerprint's salt must be {SEED_SALT_BYTES} bytes")
    digest = hashlib.scrypt(f"stalwart-randomization-seed:{seed}".encode(), salt=salt, **_SCRYPT)
    return salt.hex() + digest.hex()


def seed_matches(seed: int, fingerprint: str) -> bool:
    """Whether ``seed`` is the seed whose fingerprint (``seed_fingerprint``) is stored."""
    try:
        salt = bytes.fromhex(fingerprint[: 2 * SEED_SALT_BYTES])
    except ValueError:
        return False
    if len(salt) != SEED_SALT_BYTES:
        return False
    return hmac.compare_digest(seed_fingerprint(seed, salt), fingerprint)
