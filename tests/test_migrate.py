"""The schema on both backends: one Alembic history, run once however many processes start together,
and organization_id leading every key that identifies a row."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from recalld.settings import to_asyncpg_url
from recalld.store.migrate import head_revision
from tests.servers import create_pg_database, drop_pg_database, server_env


@pytest.fixture(params=["sqlite", "postgres"])
def database(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'recalld.db'}", None
    else:
        uri = create_pg_database()
        yield to_asyncpg_url(uri), uri
        drop_pg_database(uri)


def _migrate_env(tmp_path, pg_uri):
    return server_env(tmp_path, pg_uri=pg_uri, openai_base_url=None)


def _inspect(url: str):
    async def run():
        engine = create_async_engine(url)
        try:
            async with engine.connect() as conn:

                def collect(sync_conn):
                    insp = sa.inspect(sync_conn)
                    out = {}
                    for table in insp.get_table_names():
                        if table == "alembic_version":
                            continue
                        out[table] = {
                            "columns": [c["name"] for c in insp.get_columns(table)],
                            "pk": insp.get_pk_constraint(table)["constrained_columns"],
                            "uniques": [u["column_names"] for u in insp.get_unique_constraints(table)],
                            "indexes": [i["column_names"] for i in insp.get_indexes(table)],
                        }
                    version = sync_conn.execute(
                        sa.text("SELECT version_num FROM alembic_version")
                    ).scalar_one()
                    return out, version

                return await conn.run_sync(collect)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def test_concurrent_migrations_run_once_and_reach_head(database, tmp_path):
    url, pg_uri = database
    env = _migrate_env(tmp_path, pg_uri)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "recalld", "migrate"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(3)
    ]
    results = [p.wait(timeout=120) for p in procs]
    assert results == [0, 0, 0], [p.stderr.read().decode()[-2000:] for p in procs]
    _, version = _inspect(url)
    assert version == head_revision()


def test_every_key_starts_with_organization_id(database, tmp_path):
    url, pg_uri = database
    subprocess.run(
        [sys.executable, "-m", "recalld", "migrate"],
        env=_migrate_env(tmp_path, pg_uri),
        check=True,
        capture_output=True,
    )
    tables, _ = _inspect(url)
    assert {"agents", "blocks", "tools", "messages", "users", "api_keys"} <= set(tables)
    for name, table in tables.items():
        assert "organization_id" in table["columns"], name
        assert table["pk"][0] == "organization_id", name
        for columns in table["uniques"] + table["indexes"]:
            # organizations is a small reference table: its name is unique deployment-wide.
            if name != "organizations":
                assert columns[0] == "organization_id", (name, columns)
