"""archival memory

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24

Archives, their attachment to agents, passages (text, tags, the embedding as float32 bytes) and passage
tags. Where PostgreSQL has the pgvector extension (or can create it), passages also get one vector
column per embedding size in use, each with an HNSW index for cosine distance; elsewhere the same rows
are searched exactly. A database that gains pgvector later gets the columns at the next start-up
(recalld.store.vectors), which uses the same names.
"""

import logging

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

JSON_TYPE = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
STAMP = sa.DateTime(timezone=True)

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")

# (dimensions, pgvector type): vector's HNSW index takes at most 2,000 dimensions, halfvec 4,000.
VECTOR_COLUMNS = ((384, "vector"), (1536, "vector"), (3072, "halfvec"))


def upgrade() -> None:
    op.create_table(
        "archives",
        sa.Column("organization_id", sa.String(length=64), nullable=False),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=512), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("metadata", JSON_TYPE, nullable=True),
        sa.Column("embedding_config", JSON_TYPE, nullable=True),
        sa.Column("vector_db_provider", sa.String(length=32), nullable=False),
        sa.Column("owner_agent_id", sa.String(length=64), nullable=True),
        sa.Column("created_by_id", sa.String(length=64), nullable=True),
        sa.Column("last_updated_by_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", STAMP, nullable=False),
        sa.Column("updated_at", STAMP, nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id", "owner_agent_id"],
            ["agents.organization_id", "agents.id"],
            name=op.f("fk_archives_organization_id_agents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("organization_id", "id", name=op.f("pk_archives")),
        sa.UniqueConstraint(
            "organization_id", "owner_agent_id", name=op.f("uq_archives_organization_id_owner_agent_id")
        ),
    )
    with op.batch_alter_table("archives", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_archives_organization_id_created_at_id"), ["organization_id", "created_at", "id"]
        )
        batch_op.create_index(batch_op.f("ix_archives_organization_id_name"), ["organization_id", "name"])

    op.create_table(
        "archive_agents",
        sa.Column("organization_id", sa.String(length=64), nullable=False),
        sa.Column("archive_id", sa.String(length=64), nullable=False),
        sa.Column("agent_id", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id", "agent_id"],
            ["agents.organization_id", "agents.id"],
            name=op.f("fk_archive_agents_organization_id_agents"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["organization_id", "archive_id"],
            ["archives.organization_id", "archives.id"],
            name=op.f("fk_archive_agents_organization_id_archives"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("organization_id", "archive_id", "agent_id", name=op.f("pk_archive_agents")),
    )
    with op.batch_alter_table("archive_agents", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_archive_agents_organization_id_agent_id"), ["organization_id", "agent_id"]
        )

    op.create_table(
        "passages",
        sa.Column("organization_id", sa.String(length=64), nullable=False),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("archive_id", sa.String(length=64), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("tags", JSON_TYPE, nullable=True),
        sa.Column("metadata", JSON_TYPE, nullable=True),
        sa.Column("embedding_handle", sa.String(length=255), nullable=False),
        sa.Column("embedding_dim", sa.Integer(), nullable=False),
        sa.Column("embedding", sa.LargeBinary(), nullable=False),
        sa.Column("embedding_config", JSON_TYPE, nullable=True),
        sa.Column("created_by_id", sa.String(length=64), nullable=True),
        sa.Column("last_updated_by_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", STAMP, nullable=False),
        sa.Column("updated_at", STAMP, nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id", "archive_id"],
            ["archives.organization_id", "archives.id"],
            name=op.f("fk_passages_organization_id_archives"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("organization_id", "id", name=op.f("pk_passages")),
    )
    with op.batch_alter_table("passages", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_passages_organization_id_archive_id_created_at_id"),
            ["organization_id", "archive_id", "created_at", "id"],
        )

    op.create_table(
        "passage_tags",
        sa.Column("organization_id", sa.String(length=64), nullable=False),
        sa.Column("passage_id", sa.String(length=64), nullable=False),
        sa.Column("tag", sa.String(length=512), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id", "passage_id"],
            ["passages.organization_id", "passages.id"],
            name=op.f("fk_passage_tags_organization_id_passages"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("organization_id", "passage_id", "tag", name=op.f("pk_passage_tags")),
    )
    with op.batch_alter_table("passage_tags", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_passage_tags_organization_id_tag_passage_id"), ["organization_id", "tag", "passage_id"]
        )

    _add_vector_columns()


def _add_vector_columns() -> None:
    """pgvector columns and HNSW indexes, only where the extension is there or can be created."""
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    available = bind.execute(sa.text("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")).first()
    if available is None:
        log.info("pgvector is not available: archival search will be exact")
        return
    try:
        with bind.begin_nested():
            bind.execute(sa.text("CREATE EXTENSION IF NOT EXISTS vector"))
    except sa.exc.DBAPIError as e:
        log.warning("pgvector is available but could not be created (%s): archival search will be exact", e)
        return
    found = bind.execute(sa.text("SELECT typname FROM pg_type WHERE typname IN ('vector', 'halfvec')"))
    types = {row[0] for row in found}
    for dim, kind in VECTOR_COLUMNS:
        if kind not in types:
            continue
        column = f"embedding_{dim}"
        bind.execute(sa.text(f"ALTER TABLE passages ADD COLUMN IF NOT EXISTS {column} {kind}({dim})"))
        bind.execute(
            sa.text(
                f"CREATE INDEX IF NOT EXISTS ix_passages_{column}_hnsw ON passages "
                f"USING hnsw ({column} {kind}_cosine_ops)"
            )
        )
        # Rows whose vector column is still empty (normally none): found at start-up without a table scan.
        bind.execute(
            sa.text(
                f"CREATE INDEX IF NOT EXISTS ix_passages_organization_id_id_no_{column} ON passages "
                f"(organization_id, id) WHERE embedding_dim = {dim} AND {column} IS NULL"
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("passage_tags", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_passage_tags_organization_id_tag_passage_id"))
    op.drop_table("passage_tags")
    with op.batch_alter_table("passages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_passages_organization_id_archive_id_created_at_id"))
    op.drop_table("passages")
    with op.batch_alter_table("archive_agents", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_archive_agents_organization_id_agent_id"))
    op.drop_table("archive_agents")
    with op.batch_alter_table("archives", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_archives_organization_id_name"))
        batch_op.drop_index(batch_op.f("ix_archives_organization_id_created_at_id"))
    op.drop_table("archives")
