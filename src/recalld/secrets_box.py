"""Secrets at rest: the one module that holds the key. Encrypt with `SecretsBox.seal_*`, read with `open_*`.

Values are sealed into Fernet tokens (AES-128-CBC + HMAC-SHA256, from `cryptography`). The key comes from
RECALLD_SECRETS_KEY: comma-separated Fernet keys, the first encrypts and every one decrypts (MultiFernet), so a
key is rotated by putting the new one first and running `recalld secrets rotate`. Unset on the embedded default
(SQLite), a key is generated into RECALLD_DIR/secrets.key (mode 0600). Unset on PostgreSQL, `recalld serve`
refuses to start: instances sharing a database must share the key, and a key generated per instance would make
each one's secrets unreadable to the others.

The database keeps a *key check* (a token sealed with the key that last sealed everything, `recalld secrets
rotate` renews it): an instance whose keys cannot open it refuses to start, so two instances never silently
write secrets with keys the other cannot read.

    box = SecretsBox.from_settings(settings)
    stored = box.seal_mapping({"API_TOKEN": "s3cret"})   # a str for a JSON column, None for no secrets
    box.open_mapping(stored)                              # {"API_TOKEN": "s3cret"}; a plain dict passes through
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import orjson
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from recalld.errors import Unavailable
from recalld.obs.logs import remember_secret_values
from recalld.settings import Settings

log = logging.getLogger(__name__)

KEY_FILE = "secrets.key"
# What the key check seals: any constant works, opening it is the test.
_CHECK_PLAINTEXT = b"recalld secrets key check v1"
# Marks a single sealed value in a text column, so rows written in plain text by earlier versions still read.
SEALED_PREFIX = "recalld-sealed:"


class SecretsKeyError(Exception):
    """The configured key is missing, malformed or not the database's; the message says what to do."""


def generate_key() -> str:
    """A new random Fernet key (what `recalld secrets generate-key` prints)."""
    return Fernet.generate_key().decode()


def parse_keys(value: str) -> list[str]:
    keys = [k.strip() for k in value.split(",") if k.strip()]
    if not keys:
        raise SecretsKeyError(
            "RECALLD_SECRETS_KEY is set but empty; generate a key with `recalld secrets generate-key`"
        )
    for position, key in enumerate(keys, 1):
        try:
            Fernet(key)
        except ValueError:
            raise SecretsKeyError(
                f"RECALLD_SECRETS_KEY: key {position} is not a Fernet key (32 url-safe base64-encoded bytes); "
                "generate one with `recalld secrets generate-key`"
            ) from None
    return keys


def key_file_path(data_dir: Path) -> Path:
    return data_dir / KEY_FILE


def load_or_create_key_file(data_dir: Path) -> str:
    """The key in RECALLD_DIR/secrets.key, generated (readable by this user only) the first time."""
    path = key_file_path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as out:
        out.write(generate_key() + "\n")
    log.info("generated a secrets key in %s (keep it with the database; without it stored secrets are lost)", path)
    return path.read_text().strip()


def keys_from_settings(settings: Settings) -> list[str]:
    """The configured keys, first the one that encrypts; raises SecretsKeyError when there are none to use."""
    if settings.secrets_key is not None:
        return parse_keys(settings.secrets_key)
    if settings.is_postgres:
        raise SecretsKeyError(
            "RECALLD_SECRETS_KEY is not set: on PostgreSQL every instance must be given the same key to encrypt "
            "agent secrets at rest. Generate one with `recalld secrets generate-key` and give it to every "
            "instance (a Kubernetes Secret, Compose's environment)."
        )
    return parse_keys(load_or_create_key_file(settings.data_dir))


class SecretsBox:
    """Seal and open secrets with the configured keys."""

    def __init__(self, keys: list[str]):
        self._fernets = [Fernet(k) for k in keys]
        self._multi = MultiFernet(self._fernets)

    @classmethod
    def from_settings(cls, settings: Settings) -> SecretsBox:
        return cls(keys_from_settings(settings))

    # --- text -------------------------------------------------------------------------------------------

    def seal_text(self, plaintext: str) -> str:
        return self._multi.encrypt(plaintext.encode()).decode()

    def open_text(self, token: str) -> str:
        try:
            return self._multi.decrypt(token.encode()).decode()
        except InvalidToken:
            # Not the caller's fault and not fixable by retrying with other input: a key was removed too early.
            raise Unavailable(
                "a stored secret cannot be decrypted with this instance's RECALLD_SECRETS_KEY; the operator must "
                "restore the key it was written with"
            ) from None

    # --- one value in a text column (sandbox environment variables) ----------------------------------------

    def seal_value(self, plaintext: str) -> str:
        remember_secret_values([plaintext])
        return SEALED_PREFIX + self.seal_text(plaintext)

    def open_value(self, stored: str) -> str:
        """A value sealed by `seal_value`, or a plain value written by an earlier version."""
        value = self.open_text(stored[len(SEALED_PREFIX) :]) if stored.startswith(SEALED_PREFIX) else stored
        remember_secret_values([value])
        return value

    def reseal_value(self, stored: str) -> str:
        """The value sealed with the first key (what `recalld secrets rotate` writes back)."""
        if not stored.startswith(SEALED_PREFIX):
            return self.seal_value(stored)
        try:
            return SEALED_PREFIX + self._multi.rotate(stored[len(SEALED_PREFIX) :].encode()).decode()
        except InvalidToken:
            raise SecretsKeyError(
                "a stored secret cannot be decrypted with any key of RECALLD_SECRETS_KEY; put the key it was "
                "written with after the new one"
            ) from None

    # --- a mapping of names to values (agent secrets, environment variables) ------------------------------

    def seal_mapping(self, mapping: dict[str, str] | None) -> str | None:
        """One token for the whole mapping (None for no entries), stored as a JSON string."""
        if not mapping:
            return None
        remember_secret_values(mapping.values())
        return self.seal_text(orjson.dumps(mapping).decode())

    def open_mapping(self, stored: str | dict | None) -> dict[str, str]:
        """A stored mapping: a token sealed by `seal_mapping`, or a plain dict written by an earlier version."""
        if not stored:
            return {}
        mapping = dict(stored) if isinstance(stored, dict) else orjson.loads(self.open_text(stored))
        remember_secret_values(mapping.values())
        return mapping

    def reseal_mapping(self, stored: str | dict | None) -> str | None:
        """The stored value sealed with the first key (what `recalld secrets rotate` writes back)."""
        if not stored:
            return None
        if isinstance(stored, dict):
            return self.seal_mapping(stored)
        try:
            return self._multi.rotate(stored.encode()).decode()
        except InvalidToken:
            raise SecretsKeyError(
                "a stored secret cannot be decrypted with any key of RECALLD_SECRETS_KEY; put the key it was "
                "written with after the new one"
            ) from None

    # --- the key check ----------------------------------------------------------------------------------

    def new_check(self) -> str:
        return self.seal_text(_CHECK_PLAINTEXT.decode())

    def opens_check(self, token: str) -> bool:
        try:
            return self._multi.decrypt(token.encode()) == _CHECK_PLAINTEXT
        except InvalidToken:
            return False

    def check_is_current(self, token: str) -> bool:
        """Whether the first (encrypting) key made the check: else this instance writes with a newer or other key."""
        try:
            return self._fernets[0].decrypt(token.encode()) == _CHECK_PLAINTEXT
        except InvalidToken:
            return False
