"""secrets_box.py: keys from settings, sealing and opening, rotation, and the key file of the embedded default."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from recalld.errors import Unavailable
from recalld.secrets_box import SecretsBox, SecretsKeyError, generate_key, keys_from_settings, parse_keys
from recalld.settings import Settings


def test_a_sealed_mapping_opens_and_holds_no_plain_text():
    box = SecretsBox([generate_key()])
    stored = box.seal_mapping({"API_TOKEN": "s3cret-value"})
    assert isinstance(stored, str) and "s3cret-value" not in stored and "API_TOKEN" not in stored
    assert box.open_mapping(stored) == {"API_TOKEN": "s3cret-value"}
    assert box.seal_mapping({}) is None and box.open_mapping(None) == {}


def test_plain_rows_of_earlier_versions_are_read_and_sealed_on_reseal():
    box = SecretsBox([generate_key()])
    assert box.open_mapping({"OLD": "plain"}) == {"OLD": "plain"}
    resealed = box.reseal_mapping({"OLD": "plain"})
    assert isinstance(resealed, str) and box.open_mapping(resealed) == {"OLD": "plain"}


def test_the_first_key_encrypts_and_every_key_decrypts():
    old, new = generate_key(), generate_key()
    written_with_old = SecretsBox([old]).seal_mapping({"K": "v"})
    rotating = SecretsBox([new, old])
    assert rotating.open_mapping(written_with_old) == {"K": "v"}
    resealed = rotating.reseal_mapping(written_with_old)
    assert SecretsBox([new]).open_mapping(resealed) == {"K": "v"}
    with pytest.raises(Unavailable):
        SecretsBox([old]).open_mapping(resealed)
    with pytest.raises(SecretsKeyError):
        SecretsBox([generate_key()]).reseal_mapping(written_with_old)


def test_the_key_check_opens_only_with_a_key_that_made_it():
    old, new = generate_key(), generate_key()
    check = SecretsBox([old]).new_check()
    assert SecretsBox([new, old]).opens_check(check) and not SecretsBox([new, old]).check_is_current(check)
    assert SecretsBox([old]).check_is_current(check)
    assert not SecretsBox([new]).opens_check(check)


@pytest.mark.parametrize("value", ["", " , ", "not-a-key", f"{Fernet.generate_key().decode()},short"])
def test_malformed_keys_are_refused_without_echoing_them(value):
    with pytest.raises(SecretsKeyError) as refused:
        parse_keys(value)
    assert "short" not in str(refused.value) and "not-a-key" not in str(refused.value)


def test_the_embedded_default_makes_one_private_key_file_and_keeps_it(tmp_path):
    settings = Settings(RECALLD_DIR=str(tmp_path / "home"))
    first = keys_from_settings(settings)
    key_file = tmp_path / "home" / "secrets.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert keys_from_settings(settings) == first and len(first) == 1


def test_postgres_without_a_key_is_refused_and_with_one_uses_it(tmp_path):
    pg = {"RECALLD_DIR": str(tmp_path), "RECALLD_PG_URI": "postgresql://u@127.0.0.1/db"}
    with pytest.raises(SecretsKeyError, match="every instance must be given the same key"):
        keys_from_settings(Settings(**pg))
    assert not (tmp_path / "secrets.key").exists()
    key = generate_key()
    assert keys_from_settings(Settings(**pg, RECALLD_SECRETS_KEY=f" {key} ")) == [key]
