"""Which arm of a foreign ADaM is the control, and the other names each arm goes by.

ADSL names a subject's arm several ways: a label (TRT01P, ARM), a code (ARMCD) and a number
(TRT01PN). The analysis keys arms by the one variable chosen (``--arm-var``); the others are
*aliases*, kept where they map one-to-one onto it, so that ``--control`` accepts any of them and
results can say each arm's code.

The control, when ``--control`` does not name it, is in this order:

1. the single arm whose name says placebo or control (CDISC pilot: "Placebo");
2. the plan's control: when ADSL's STUDYID is the packaged protocol's study and ADSL has ARMCD,
   the arm whose code the protocol marks ``control = true`` (our own export of STALWART);
3. the arm with the lowest TRT01PN, with a note (ADaM numbers arms in the protocol's order);
4. the first arm in sort order, with a note.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import pandas as pd

from stalwart.errors import DatasetError, StalwartError

__all__ = ["ALIAS_VARIABLES", "arm_aliases", "choose_control"]

ALIAS_VARIABLES = ("TRT01P", "ARM", "ARMCD", "TRT01PN")
"""ADSL variables that may name a subject's planned arm, besides the arm variable chosen."""


def _text(value: object) -> str:
    if isinstance(value, float):
        return "" if pd.isna(value) else f"{value:g}"
    return str(value).strip()


def arm_aliases(frame: pd.DataFrame, arm_column: str) -> dict[str, dict[str, str]]:
    """For each ADSL alias variable that maps one-to-one onto the arms: value -> arm label.

    ``frame`` holds the subjects with an arm, the arm label in ``arm_column``. A variable
    whose values split or merge arms (ACTARM-like codings, a blank code) is left out.
    """
    aliases: dict[str, dict[str, str]] = {}
    for variable in ALIAS_VARIABLES:
        if variable not in frame.columns:
            continue
        distinct = frame[[variable, arm_column]].drop_duplicates()
        pairs = {
            (_text(v), str(a))
            for v, a in zip(distinct[variable], distinct[arm_column], strict=True)
        }
        values = [v for v, _ in pairs]
        labels = [a for _, a in pairs]
        if "" in values or len(set(values)) != len(pairs) or len(set(labels)) != len(pairs):
            continue
        aliases[variable] = dict(sorted(pairs))  # a set's order varies by process
    return aliases


def _given(
    arms: Sequence[str], control: str, aliases: Mapping[str, Mapping[str, str]]
) -> tuple[str, str | None]:
    if control in arms:
        return control, None
    matches = {v: codes[control] for v, codes in aliases.items() if control in codes}
    if len(set(matches.values())) == 1:
        variable, label = next(iter(matches.items()))
        return label, f"control arm {label!r}: --control {control!r} is its {variable}"
    others = "; ".join(f"{v}: {', '.join(sorted(codes))}" for v, codes in aliases.items())
    raise DatasetError(
        f"--control {control!r} is not an arm; the arms are: "
        + ", ".join(repr(a) for a in arms)
        + (f" (or by {others})" if others else ""),
        dataset="ADSL",
    )


def _planned(studyid: str, aliases: Mapping[str, Mapping[str, str]]) -> tuple[str, str] | None:
    """The packaged protocol's control arm, when ADSL is that study's and has ARMCD."""
    if not studyid or "ARMCD" not in aliases:
        return None
    from stalwart.protocol.load import load_protocol  # pydantic models: only when needed

    try:
        protocol = load_protocol().protocol
    except StalwartError:
        return None
    if protocol.study.id != studyid:
        return None
    code = protocol.control_arm
    label = aliases["ARMCD"].get(code)
    if label is None:
        return None
    return label, f"control arm {label!r}: ARMCD {code}, the control of the {studyid} protocol"


def _lowest_number(aliases: Mapping[str, Mapping[str, str]]) -> tuple[str, str] | None:
    numbers = aliases.get("TRT01PN")
    if not numbers:
        return None
    try:
        value = min(numbers, key=float)
    except ValueError:
        return None
    label = numbers[value]
    return label, f"control arm {label!r}: lowest TRT01PN ({value}); give --control if not"


def choose_control(
    arms: Sequence[str],
    control: str | None,
    aliases: Mapping[str, Mapping[str, str]] | None = None,
    studyid: str = "",
) -> tuple[str, str | None]:
    """The control arm and, when it was not named by its label, a note saying how it was found.

    ``control`` may be an arm's label or any of its aliases (ARMCD, TRT01P, ARM, TRT01PN).

    Raises
    ------
    DatasetError
        ``control`` names no arm, or more than one arm says placebo/control.
    """
    aliases = aliases or {}
    if not arms:
        raise DatasetError("ADSL holds no subject with an arm: nothing to analyse", "ADSL")
    if control is not None:
        return _given(arms, control.strip(), aliases)
    named = [a for a in arms if re.search("placebo|control", a, re.IGNORECASE)]
    if len(named) == 1:
        return named[0], f"control arm {named[0]!r}: its name says placebo/control"
    if len(named) > 1:
        raise DatasetError(
            "more than one arm says placebo/control (" + ", ".join(repr(a) for a in named) + "): "
            "name the control with --control",
            dataset="ADSL",
        )
    found = _planned(studyid, aliases) or _lowest_number(aliases)
    if found is not None:
        return found
    return arms[0], f"control arm {arms[0]!r}: first in sort order (no arm says placebo/control)"
