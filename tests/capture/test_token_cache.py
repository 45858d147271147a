"""Token lookups are cached briefly, and revocation or deactivation takes effect at once here."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher
from sqlalchemy.engine import Engine

from stalwart.capture.service import CaptureService
from stalwart.capture.users import UserStore
from stalwart.errors import AuthenticationError

PASSWORD = "a long test password"
CHEAP = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


def test_cached_token_then_revoked(trial: CaptureService, engine: Engine) -> None:
    users = UserStore(engine, CHEAP)
    users.add_user("dm.cache", PASSWORD, "data_manager", "setup")
    issued = users.issue_token(users.authenticate("dm.cache", PASSWORD), "api")
    assert users.cached_actor(issued.token, "api") is None  # not looked up yet
    actor, _ = users.actor_for_token(issued.token, "api")
    hit = users.cached_actor(issued.token, "api")
    assert hit is not None and hit[0] == actor
    assert users.cached_actor(issued.token, "session") is None  # the kind is part of the key
    users.revoke_token(issued.token)
    assert users.cached_actor(issued.token, "api") is None
    with pytest.raises(AuthenticationError):
        users.actor_for_token(issued.token, "api")


def test_deactivation_clears_the_cache(trial: CaptureService, engine: Engine) -> None:
    users = UserStore(engine, CHEAP)
    users.add_user("mon.cache", PASSWORD, "monitor", "setup")
    issued = users.issue_token(users.authenticate("mon.cache", PASSWORD), "api")
    users.actor_for_token(issued.token, "api")
    users.set_active("mon.cache", False, "left the study", "setup")
    with pytest.raises(AuthenticationError):
        users.actor_for_token(issued.token, "api")


def test_another_process_sees_a_revocation_when_its_entry_ages_out(
    trial: CaptureService, engine: Engine
) -> None:
    here = UserStore(engine, CHEAP)
    there = UserStore(engine, CHEAP, token_cache_seconds=0.0)  # no cache: reads every time
    here.add_user("dm.two", PASSWORD, "data_manager", "setup")
    issued = here.issue_token(here.authenticate("dm.two", PASSWORD), "api")
    there.actor_for_token(issued.token, "api")
    here.revoke_token(issued.token)
    with pytest.raises(AuthenticationError):
        there.actor_for_token(issued.token, "api")
