"""Key records: secrets, hashes, allow-lists, expiry and budget periods."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from hearth.access.keys import ApiKey, KeySpec, amend, hash_secret, mint, parse_duration, parse_expiry
from hearth.core.errors import BadRequest


def test_a_minted_key_stores_only_the_hash_of_its_secret() -> None:
    key, secret = mint(KeySpec(name="app"), now=1000.0)
    assert secret.startswith("hk-") and len(secret) > 40
    assert key.hash == hash_secret(secret) and secret not in repr(key.to_record())
    assert key.prefix == secret[:7]
    assert "hash" not in key.public() and key.public()["created"].startswith("1970-01-01")
    other, secret2 = mint(KeySpec(name="app"))
    assert secret2 != secret and other.id != key.id


def test_allow_list_takes_names_and_patterns() -> None:
    key, _ = mint(KeySpec(name="a", models=["gpt-*", "local", "rag:docs"]))
    assert key.allows(("gpt-4o-mini",)) and key.allows(("qwen", "local")) and key.allows(("rag:docs",))
    assert not key.allows(("qwen2.5-coder-0.5b",)) and not key.allows(("rag:hr",))


def test_refusal_says_why() -> None:
    key, _ = mint(KeySpec(name="a", expires="1h"), now=0.0)
    assert key.refusal(100.0) is None
    assert key.refusal(3600.0) == "this API key has expired"
    gone = ApiKey.from_record({**key.to_record(), "revoked": 50.0})
    assert gone.refusal(10.0) == "this API key has been revoked"


def test_durations_and_expiry() -> None:
    assert parse_duration("30d", "p") == 30 * 86400 and parse_duration("90m", "p") == 5400
    with pytest.raises(BadRequest, match="not a duration"):
        parse_duration("monthly", "budget_period")
    assert parse_expiry("2027-01-01", 0.0) == 1798761600.0
    assert parse_expiry("2d", 10.0) == 10.0 + 2 * 86400
    with pytest.raises(BadRequest, match="expires"):
        parse_expiry("soon", 0.0)


def test_budget_periods_count_from_creation() -> None:
    key, _ = mint(KeySpec(name="a", budget=5, budget_period="1d"), now=1000.0)
    assert key.period_index(1000.0) == 0 and key.period_index(1000.0 + 86400) == 1
    assert key.period_bounds(1000.0 + 86400 + 5) == (1000.0 + 86400, 1000.0 + 2 * 86400)
    forever, _ = mint(KeySpec(name="b", budget=5), now=1000.0)
    assert forever.period_index(1e12) == 0 and forever.period_bounds(5e9) == (1000.0, None)


def test_spec_validation_names_the_field() -> None:
    with pytest.raises(ValidationError, match="scopes"):
        KeySpec.model_validate({"name": "a", "scopes": ["everything"]})
    with pytest.raises(ValidationError, match="rpm"):
        KeySpec.model_validate({"name": "a", "rpm": 0})
    with pytest.raises(ValidationError, match="budget_period"):
        KeySpec.model_validate({"name": "a", "budget_period": "fortnightly"})
    with pytest.raises(ValidationError, match="extra"):
        KeySpec.model_validate({"name": "a", "colour": "red"})


def test_amend_changes_only_what_is_sent_and_keeps_the_secret() -> None:
    key, secret = mint(KeySpec(name="a", rpm=5, budget=2.0, expires="1d"), now=0.0)
    new = amend(key, {"rpm": 10, "models": ["local"]}, now=50.0)
    assert (new.rpm, new.models, new.budget, new.expires, new.hash) == (10, ("local",), 2.0, key.expires, key.hash)
    assert amend(key, {"budget": None}).budget is None
    with pytest.raises(BadRequest, match="unknown key field"):
        amend(key, {"colour": "red"})
    assert hash_secret(secret) == new.hash


def test_records_keep_fields_a_newer_version_wrote() -> None:
    key, _ = mint(KeySpec(name="a"))
    again = ApiKey.from_record({**key.to_record(), "team": "voice"})
    assert again.to_record()["team"] == "voice" and again == ApiKey.from_record(again.to_record())
