"""The password policy (NIST SP 800-63B): length, the shipped common list, no control
characters, no composition rules; every refusal says why."""

from __future__ import annotations

import gzip
from importlib.resources import files

import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher
from sqlalchemy.engine import Engine

from stalwart.capture.passwords import MIN_PASSWORD_LENGTH, check_password, common_passwords
from stalwart.capture.service import CaptureService
from stalwart.capture.tables import AppUser
from stalwart.capture.users import UserStore
from stalwart.errors import ValidationError

TOP_20 = [
    "123456", "123456789", "qwerty", "password", "111111", "12345678", "abc123", "1234567",
    "password1", "12345", "1234567890", "123123", "000000", "iloveyou", "1234", "1q2w3e4r5t",
    "qwertyuiop", "123", "monkey", "dragon",
]  # fmt: skip


def _refusal(password: str, username: str | None = None) -> str:
    with pytest.raises(ValidationError) as info:
        check_password(password, username)
    assert info.value.field == "password"
    return str(info.value)


def test_the_list_ships_with_the_package_and_its_license() -> None:
    package = files("stalwart.capture")
    lines = gzip.decompress(package.joinpath("common-passwords.txt.gz").read_bytes()).splitlines()
    assert len(lines) > 19_000 and [x.decode() for x in lines[:20]] == TOP_20
    notice = package.joinpath("common-passwords.LICENSE").read_text()
    assert "Django Software Foundation" in notice and "Redistribution" in notice
    assert len(common_passwords()) > 19_000


@pytest.mark.parametrize("password", TOP_20)
def test_the_20_most_common_passwords_are_refused_saying_why(password: str) -> None:
    assert f"use at least {MIN_PASSWORD_LENGTH} characters" in _refusal(password)


@pytest.mark.parametrize(
    "password", ["qwertyuiop123", "password1234", "1q2w3e4r5t6y", "PASSWORD1234", " 123456qwerty "]
)
def test_long_common_passwords_are_refused_case_insensitively(password: str) -> None:
    assert "list of 19,640 common passwords" in _refusal(password)


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("aaaaaaaaaa", "10 characters: use at least 12 characters"),
        ("password12", "use at least 12"),
        ("a" * 12, "one character repeated"),
        (" " * 12, "all whitespace"),
        ("\t\n \u3000" * 3, "control character"),
        ("\x00" * 12, "control character (U+0000) at position 1"),
        ("correct horse\x00battery", "control character (U+0000) at position 14"),
        ("correct horse\x85battery", "control character (U+0085)"),  # C1
        ("correct horse\x7fbattery", "control character (U+007F)"),  # DEL
        ("correct horse\ud800battery", "lone surrogate (U+D800)"),
        ("x" * 201, "at most 200"),
    ],
)
def test_weak_or_untypable_passwords_are_refused_saying_why(password: str, reason: str) -> None:
    assert reason in _refusal(password)


def test_a_password_holding_the_username_is_refused() -> None:
    assert "contains the username" in _refusal("jsmith.us01 is me", "JSmith.US01")
    check_password("jsmith.us01 is me", "dm")  # too short a name to matter


@pytest.mark.parametrize(
    "password",
    [
        "correct horse battery",  # no digit or symbol needed: no composition rules
        "twelve chars",
        "ünïcödé pässwörd ✓",
        "   spaces around count   ",
        "一个很长的句子也是好密码",  # twelve characters
    ],
)
def test_long_uncommon_passwords_are_accepted(password: str) -> None:
    check_password(password)


@pytest.mark.parametrize("password", ["password1234", "short", "\x00" * 12])
def test_user_creation_and_change_apply_the_policy_and_change_nothing(
    trial: CaptureService, engine: Engine, password: str
) -> None:
    users = UserStore(engine, PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    with pytest.raises(ValidationError) as info:
        users.add_user("mon.weak", password, "monitor", "test-setup")
    assert info.value.field == "password"
    with engine.connect() as conn:
        assert conn.scalar(sa.select(AppUser.id).where(AppUser.username == "mon.weak")) is None
    users.add_user("mon.weak", "correct horse battery", "monitor", "test-setup")
    with pytest.raises(ValidationError, match="password"):
        users.change_password("mon.weak", "correct horse battery", password)
    assert users.authenticate("mon.weak", "correct horse battery").username == "mon.weak"
