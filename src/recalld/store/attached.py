"""Rows attached to agents through a link table: blocks through agent_blocks, tools through agent_tools. The
reads are the same for both; only the tables differ."""

from __future__ import annotations

from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from recalld.store.paging import page


@dataclass(frozen=True)
class Attached:
    table: sa.Table  # blocks, tools
    link: sa.Table  # agent_blocks, agent_tools
    link_id: sa.Column  # the link's column holding table.id
    _of_agent: sa.Select = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # Built once: the agent's rows are read on every agent view.
        of_agent = self.joined(self.table).where(
            self.link.c.organization_id == sa.bindparam("org_id"), self.link.c.agent_id == sa.bindparam("agent_id")
        )
        object.__setattr__(self, "_of_agent", of_agent.order_by(self.table.c.created_at, self.table.c.id))

    def joined(self, *columns: sa.ColumnElement | sa.Table) -> sa.Select:
        return sa.select(*columns).join(
            self.link,
            sa.and_(self.link.c.organization_id == self.table.c.organization_id, self.link_id == self.table.c.id),
        )

    async def for_agent(self, conn: AsyncConnection, org_id: str, agent_id: str) -> list[dict]:
        """The agent's rows in (created_at, id) order."""
        rows = (await conn.execute(self._of_agent, {"org_id": org_id, "agent_id": agent_id})).mappings()
        return [dict(r) for r in rows]

    async def for_agents(self, conn: AsyncConnection, org_id: str, agent_ids: list[str]) -> dict[str, list[dict]]:
        """Each agent's rows in (created_at, id) order, in one query."""
        out: dict[str, list[dict]] = {a: [] for a in agent_ids}
        if not agent_ids:
            return out
        query = (
            self.joined(self.link.c.agent_id, self.table)
            .where(self.link.c.organization_id == org_id, self.link.c.agent_id.in_(agent_ids))
            .order_by(self.table.c.created_at, self.table.c.id)
        )
        for r in (await conn.execute(query)).mappings():
            d = dict(r)
            out[d.pop("agent_id")].append(d)
        return out

    async def agent_page(
        self, conn: AsyncConnection, org_id: str, agent_id: str, *, before, after, limit: int, ascending: bool
    ) -> list[dict]:
        query = self.joined(self.table).where(self.link.c.organization_id == org_id, self.link.c.agent_id == agent_id)
        return await page(conn, query, self.table, org_id=org_id, before=before, after=after, limit=limit,
                          ascending=ascending)
