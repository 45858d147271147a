"""Load and validate a protocol file (TOML), mapping parse and validation failures to ProtocolError.

A protocol is identified by its study id, its version and the SHA-256 of the file's bytes, so a
database and a results file can say exactly which protocol produced them.
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import pydantic

from stalwart.errors import ProtocolError
from stalwart.protocol.schema import Protocol

__all__ = ["LoadedProtocol", "default_protocol_path", "load_protocol", "parse_protocol"]


@dataclass(frozen=True)
class LoadedProtocol:
    """A validated protocol with the text it came from and that text's hash."""

    protocol: Protocol
    text: str
    sha256: str
    source: str


def default_protocol_path() -> Path:
    """The packaged STALWART protocol file."""
    return Path(str(resources.files("stalwart.protocol") / "studies" / "stalwart.toml"))


def load_protocol(path: str | Path | None = None) -> LoadedProtocol:
    """Read and validate a protocol file; the packaged STALWART protocol when ``path`` is None."""
    file = Path(path) if path is not None else default_protocol_path()
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProtocolError(
            str(file), ["file not found: give the path of a protocol .toml"]
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ProtocolError(str(file), [f"cannot read the file: {exc}"]) from None
    return parse_protocol(text, source=str(file))


def parse_protocol(text: str, source: str = "<text>") -> LoadedProtocol:
    """Validate protocol TOML text; every problem found is listed in the ProtocolError."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProtocolError(source, [f"not valid TOML: {exc}"]) from None
    try:
        protocol = Protocol.model_validate(data)
    except pydantic.ValidationError as exc:
        raise ProtocolError(source, [_describe(err) for err in exc.errors()]) from None
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return LoadedProtocol(protocol=protocol, text=text, sha256=digest, source=source)


def _describe(err: object) -> str:
    """One pydantic error as ``location: message (got value)``."""
    assert isinstance(err, dict)
    loc = ".".join(str(p) for p in err.get("loc", ())) or "(file)"
    msg = str(err.get("msg", "invalid"))
    msg = msg.removeprefix("Value error, ")
    if err.get("type") == "extra_forbidden":
        msg = "unknown field: remove it or check its spelling"
    elif err.get("type") == "missing":
        msg = "required field is missing"
    value = err.get("input")
    shown = (
        ""
        if isinstance(value, dict | list) or err.get("type") == "missing"
        else f" (got {value!r})"
    )
    return f"{loc}: {msg}{shown}"
