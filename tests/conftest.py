"""Fixtures shared by every test: the scripted LLM servers, a PostgreSQL store."""

from __future__ import annotations

import pytest

from tests.fakes.llm_openai import ScriptedOpenAI


@pytest.fixture(scope="session")
def fake_openai():
    with ScriptedOpenAI(models=("gpt-4o-mini", "gpt-4o", "text-embedding-3-small")) as server:
        yield server


@pytest.fixture(scope="module")
async def pg_router():
    """A StoreRouter on a new, migrated PostgreSQL database of its own, dropped afterwards."""
    from recalld.services.orgs import OrgService
    from recalld.settings import Settings
    from recalld.store.migrate import upgrade_to_head
    from recalld.store.router import StoreRouter
    from tests.servers import create_pg_database, drop_pg_database

    uri = create_pg_database()
    router = StoreRouter(Settings(RECALLD_PG_URI=uri, RECALLD_PG_POOL_SIZE=5))
    await upgrade_to_head(router.primary)
    await OrgService(router).bootstrap()
    yield router
    await router.dispose()
    drop_pg_database(uri)


@pytest.fixture(params=["postgres", "sqlite"])
async def store_router(request, pg_router, tmp_path):
    """A StoreRouter on each backend: the module's PostgreSQL database, or a new SQLite file."""
    if request.param == "postgres":
        yield pg_router
        return
    from recalld.services.orgs import OrgService
    from recalld.settings import Settings
    from recalld.store.migrate import upgrade_to_head
    from recalld.store.router import StoreRouter

    router = StoreRouter(Settings(RECALLD_DIR=str(tmp_path)))
    await upgrade_to_head(router.primary)
    await OrgService(router).bootstrap()
    yield router
    await router.dispose()
