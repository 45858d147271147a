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
from typing import Annotated, Any

import pydantic

from stalwart.errors import ProtocolError
from stalwart.protocol.schema import Protocol, ProtocolProblems

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
        problems = [line for err in exc.errors() for line in _described(err)]
        problems += [p for p in _cross_problems_of_valid_parts(data) if p not in problems]
        raise ProtocolError(source, problems) from None
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return LoadedProtocol(protocol=protocol, text=text, sha256=digest, source=source)


def _described(err: object) -> list[str]:
    """One pydantic error as lines: the protocol's cross-reference problems one a line."""
    assert isinstance(err, dict)
    found = (err.get("ctx") or {}).get("error")
    if isinstance(found, ProtocolProblems):
        return list(found.problems)
    return [_describe(err)]


def _cross_problems_of_valid_parts(data: object) -> list[str]:
    """The cross-reference problems among the file's sections that are valid on their own.

    A file with a wrong field still has its duplicate codes and unknown references reported in
    the same run (not on the next): the protocol is built from its valid sections only (a
    section with any error is left out, so nothing is reported that its fix could change), and
    the checks needing a left-out section are skipped.
    """
    if not isinstance(data, dict):
        return []
    parts: dict[str, Any] = {}
    wrong: list[str] = []
    for name, info in Protocol.model_fields.items():
        if name not in data:
            continue
        annotation: Any = info.annotation
        if info.metadata:
            annotation = Annotated[(annotation, *info.metadata)]
        try:
            parts[name] = pydantic.TypeAdapter(annotation).validate_python(data[name])
        except pydantic.ValidationError:
            wrong.append(name)
    if set(data) - set(Protocol.model_fields):
        return []  # an unknown section: reported already, and it may be a misspelt one
    partial = Protocol.model_construct(**parts)
    for name in wrong:  # left out, not its default: a check needing it is skipped
        partial.__dict__.pop(name, None)
    return partial.cross_reference_problems(partial=True)


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
