"""Organizations, users and API keys."""

from __future__ import annotations

import hashlib

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from recalld.store.schema import api_keys, organizations, users
from recalld.store.types import utcnow


def hash_key(secret: str) -> str:
    # Keys are long random strings, so a plain SHA-256 is enough (no password stretching needed).
    return hashlib.sha256(secret.encode()).hexdigest()


async def get_org_by_name(conn: AsyncConnection, name: str) -> dict | None:
    row = (await conn.execute(sa.select(organizations).where(organizations.c.name == name))).mappings().first()
    return dict(row) if row else None


async def get_org(conn: AsyncConnection, org_id: str) -> dict | None:
    row = (
        (await conn.execute(sa.select(organizations).where(organizations.c.organization_id == org_id)))
        .mappings()
        .first()
    )
    return dict(row) if row else None


async def list_org_ids(conn: AsyncConnection) -> list[str]:
    return list((await conn.execute(sa.select(organizations.c.organization_id))).scalars())


async def insert_org(conn: AsyncConnection, org_id: str, name: str) -> None:
    now = utcnow()
    await conn.execute(organizations.insert().values(organization_id=org_id, name=name, created_at=now, updated_at=now))


async def get_user(conn: AsyncConnection, org_id: str, user_id: str) -> dict | None:
    row = (
        (await conn.execute(sa.select(users).where(users.c.organization_id == org_id, users.c.id == user_id)))
        .mappings()
        .first()
    )
    return dict(row) if row else None


async def get_user_by_name(conn: AsyncConnection, org_id: str, name: str) -> dict | None:
    row = (
        (await conn.execute(sa.select(users).where(users.c.organization_id == org_id, users.c.name == name)))
        .mappings()
        .first()
    )
    return dict(row) if row else None


async def insert_user(conn: AsyncConnection, org_id: str, user_id: str, name: str) -> None:
    now = utcnow()
    await conn.execute(
        users.insert().values(organization_id=org_id, id=user_id, name=name, created_at=now, updated_at=now)
    )


async def insert_api_key(conn: AsyncConnection, org_id: str, key_id: str, user_id: str, secret: str, name: str | None):
    now = utcnow()
    await conn.execute(
        api_keys.insert().values(
            organization_id=org_id,
            id=key_id,
            user_id=user_id,
            key_hash=hash_key(secret),
            name=name,
            created_at=now,
            updated_at=now,
        )
    )


async def find_api_key(conn: AsyncConnection, org_id: str, secret: str) -> dict | None:
    row = (
        (
            await conn.execute(
                sa.select(api_keys).where(
                    api_keys.c.organization_id == org_id,
                    api_keys.c.key_hash == hash_key(secret),
                    api_keys.c.revoked_at.is_(None),
                )
            )
        )
        .mappings()
        .first()
    )
    return dict(row) if row else None


async def revoke_api_key(conn: AsyncConnection, org_id: str, key_id: str) -> bool:
    result = await conn.execute(
        api_keys.update()
        .where(api_keys.c.organization_id == org_id, api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    return result.rowcount > 0
