"""All of recalld's configuration in one typed object, read once at start-up and passed in."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def _env(name: str, *letta_names: str) -> AliasChoices:
    """Accept RECALLD_<NAME> and, where Letta had one, its variable name too."""
    return AliasChoices(f"RECALLD_{name}", f"recalld_{name.lower()}", *letta_names)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RECALLD_", extra="ignore", populate_by_name=True)

    # Where the embedded SQLite file lives (and anything else local).
    dir: Path = Field(default=Path("~/.recalld"), validation_alias=_env("DIR"))

    # PostgreSQL: primary URI, optional replicas (read/write splitting) and pool settings.
    pg_uri: str | None = Field(default=None, validation_alias=_env("PG_URI", "LETTA_PG_URI"))
    pg_replica_uris: list[str] = Field(default_factory=list, validation_alias=_env("PG_REPLICA_URIS"))
    pg_pool_size: int = Field(default=25, ge=1, validation_alias=_env("PG_POOL_SIZE", "LETTA_PG_POOL_SIZE"))
    pg_max_overflow: int = Field(
        default=10, ge=0, validation_alias=_env("PG_MAX_OVERFLOW", "LETTA_PG_MAX_OVERFLOW")
    )
    pg_pool_timeout: float = Field(
        default=30.0, gt=0, validation_alias=_env("PG_POOL_TIMEOUT", "LETTA_PG_POOL_TIMEOUT")
    )
    pg_pool_recycle: int = Field(
        default=1800, validation_alias=_env("PG_POOL_RECYCLE", "LETTA_PG_POOL_RECYCLE")
    )
    pg_pool_pre_ping: bool = Field(
        default=True, validation_alias=_env("PG_POOL_PRE_PING", "LETTA_POOL_PRE_PING")
    )
    # Pre-ping only connections idle longer than this (0: every checkout). A connection used moments ago is
    # alive; pinging it costs three round trips per transaction for nothing.
    pg_pool_ping_idle_s: float = Field(default=10.0, ge=0, validation_alias=_env("PG_POOL_PING_IDLE"))
    # Off means NullPool and no prepared-statement caches: what PgBouncer's transaction mode needs.
    disable_pooling: bool = Field(
        default=False, validation_alias=_env("DISABLE_POOLING", "LETTA_DISABLE_SQLALCHEMY_POOLING")
    )

    redis_url: str | None = Field(default=None, validation_alias=_env("REDIS_URL"))
    lease_ttl_s: float = Field(default=30.0, gt=0, validation_alias=_env("LEASE_TTL"))
    lease_wait_s: float = Field(default=30.0, ge=0, validation_alias=_env("LEASE_WAIT"))
    # SIGTERM: readiness answers 503 for drain_grace_s while requests are still served, then the instance stops
    # accepting connections and lets in-flight turns finish for up to drain_timeout_s.
    drain_grace_s: float = Field(default=5.0, ge=0, validation_alias=_env("DRAIN_GRACE"))
    drain_timeout_s: float = Field(default=30.0, ge=0, validation_alias=_env("DRAIN_TIMEOUT"))
    # `recalld serve`'s socket and the proxies whose X-Forwarded-* headers it trusts (its flags take precedence),
    # so a container is configured by environment alone. Not RECALLD_HOST/RECALLD_PORT: Kubernetes sets
    # RECALLD_PORT=tcp://… in pods that share a namespace with a Service named recalld.
    listen_host: str = Field(default="127.0.0.1", validation_alias=_env("LISTEN_HOST"))
    listen_port: int = Field(default=8283, ge=1, le=65535, validation_alias=_env("LISTEN_PORT"))
    forwarded_allow_ips: str = Field(default="127.0.0.1", validation_alias=_env("FORWARDED_ALLOW_IPS"))

    # Memory limits.
    core_memory_block_char_limit: int = Field(
        default=20_000, ge=1, validation_alias=_env("CORE_MEMORY_BLOCK_CHAR_LIMIT")
    )
    archival_memory_token_limit: int = Field(
        default=8192,
        ge=1,
        validation_alias=_env("ARCHIVAL_MEMORY_TOKEN_LIMIT", "LETTA_ARCHIVAL_MEMORY_TOKEN_LIMIT"),
    )
    # Archival search reads every candidate exactly up to this many passages; beyond it, pgvector's HNSW
    # index answers (where the database has pgvector).
    archival_exact_search_max: int = Field(default=5000, ge=0, validation_alias=_env("ARCHIVAL_EXACT_SEARCH_MAX"))
    # Texts the local embedding model takes in one pass (concurrent requests are gathered up to this).
    embedding_local_batch: int = Field(default=64, ge=1, le=1024, validation_alias=_env("EMBEDDING_LOCAL_BATCH"))
    # How remote /embeddings replies are asked for; both forms are read whatever the server sends.
    embedding_encoding_format: Literal["float", "base64"] = Field(
        default="float", validation_alias=_env("EMBEDDING_ENCODING_FORMAT")
    )

    # Models.
    default_llm_handle: str | None = Field(
        default=None, validation_alias=_env("DEFAULT_LLM_HANDLE", "LETTA_DEFAULT_LLM_HANDLE")
    )
    default_embedding: str = Field(
        default="local/all-minilm-l6-v2",
        validation_alias=_env("DEFAULT_EMBEDDING", "LETTA_DEFAULT_EMBEDDING_HANDLE"),
    )
    compaction_model: str | None = Field(default=None, validation_alias=_env("COMPACTION_MODEL"))
    llm_timeout_s: float = Field(
        default=60.0, gt=0, validation_alias=_env("LLM_TIMEOUT", "LETTA_LLM_REQUEST_TIMEOUT_SECONDS")
    )
    llm_max_retries: int = Field(default=2, ge=0, le=10, validation_alias=_env("LLM_MAX_RETRIES"))
    # Steps of one request when the request does not say (contract 4.1).
    default_max_steps: int = Field(default=50, ge=1, validation_alias=_env("DEFAULT_MAX_STEPS"))
    # In-context message rows kept in memory between turns (all agents together; 0: none), so a turn reads
    # only the messages committed since the last one (store/history_cache.py).
    history_cache_rows: int = Field(default=10_000, ge=0, validation_alias=_env("HISTORY_CACHE_ROWS"))

    # Tool sandbox (R23). `auto` uses bubblewrap when it works here (probed once at start) and otherwise refuses
    # custom tools; `bwrap` refuses to start without it; `unsafe-subprocess` runs tools unisolated (one trusted
    # tenant only). Limits hold per tool call; the concurrency bounds per instance and per organization.
    tool_sandbox: Literal["auto", "bwrap", "unsafe-subprocess"] = Field(
        default="auto", validation_alias=_env("TOOL_SANDBOX")
    )
    tool_bwrap_path: str = Field(default="bwrap", validation_alias=_env("TOOL_BWRAP_PATH"))
    # The interpreter tools run with (unset: the server's own base interpreter, never its virtualenv); its
    # prefix is mounted read-only, its site-packages hidden.
    tool_python: Path | None = Field(default=None, validation_alias=_env("TOOL_PYTHON"))
    # Packages a tool may import besides the standard library, mounted read-only and put on sys.path.
    tool_packages_dir: Path | None = Field(default=None, validation_alias=_env("TOOL_PACKAGES_DIR"))
    # When the server runs as root, bwrap runs as this uid (root's processes escape RLIMIT_NPROC).
    tool_sandbox_uid: int = Field(default=65534, ge=1, validation_alias=_env("TOOL_SANDBOX_UID"))
    tool_timeout_s: float = Field(default=60.0, gt=0, le=3600, validation_alias=_env("TOOL_TIMEOUT_S"))
    tool_memory_mb: int = Field(default=256, ge=32, validation_alias=_env("TOOL_MEMORY_MB"))
    tool_max_procs: int = Field(default=32, ge=2, validation_alias=_env("TOOL_MAX_PROCS"))
    tool_output_bytes: int = Field(default=1024 * 1024, ge=1024, validation_alias=_env("TOOL_OUTPUT_BYTES"))
    # Largest file a tool may write, and the size of its /tmp.
    tool_file_mb: int = Field(default=64, ge=1, validation_alias=_env("TOOL_FILE_MB"))
    tool_open_files: int = Field(default=256, ge=16, validation_alias=_env("TOOL_OPEN_FILES"))
    tool_concurrency: int = Field(default=8, ge=1, validation_alias=_env("TOOL_CONCURRENCY"))
    tool_concurrency_per_org: int = Field(default=2, ge=1, validation_alias=_env("TOOL_CONCURRENCY_PER_ORG"))
    # Tool calls waiting for a slot on this instance; one more is a tool error for the model.
    tool_queue_max: int = Field(default=64, ge=0, validation_alias=_env("TOOL_QUEUE_MAX"))
    # A tool's pip_requirements: wheels from this index (unset: tools with requirements are refused), installed
    # once per set into the cache directory (default <RECALLD_DIR>/tool-requirements), which the sandbox mounts
    # read-only; each install has this wall time.
    tool_pip_index_url: str | None = Field(default=None, validation_alias=_env("TOOL_PIP_INDEX_URL"))
    tool_pip_cache_dir: Path | None = Field(default=None, validation_alias=_env("TOOL_PIP_CACHE_DIR"))
    tool_pip_timeout_s: float = Field(default=120.0, gt=0, validation_alias=_env("TOOL_PIP_TIMEOUT_S"))
    # The cache's bounds: its total size (the least recently used sets not in use are removed to stay under it)
    # and how many sets one organization may keep (its own least recently used set makes room for a new one).
    tool_pip_cache_mb: int = Field(default=2048, ge=1, validation_alias=_env("TOOL_PIP_CACHE_MB"))
    tool_pip_sets_per_org: int = Field(default=8, ge=1, validation_alias=_env("TOOL_PIP_SETS_PER_ORG"))
    # A tool with network (an organization the operator allows it) reaches RECALLD_ALLOWED_ENDPOINTS only, through
    # the server's proxy: each connection carries at most this many MB (both ways) and lasts at most the tool's
    # wall time; at most this many proxied connections are open at once on an instance.
    tool_net_mb: int = Field(default=64, ge=1, validation_alias=_env("TOOL_NET_MB"))
    tool_net_connections: int = Field(default=64, ge=1, validation_alias=_env("TOOL_NET_CONNECTIONS"))
    # Per-organization tool limits (R23): `recalld orgs set-limits --tool-timeout-s/--tool-memory-mb/--tool-max-procs`
    # may lower or raise the three settings above for one organization, never above these ceilings.
    tool_timeout_max_s: float = Field(default=600.0, gt=0, le=3600, validation_alias=_env("TOOL_TIMEOUT_MAX_S"))
    tool_memory_max_mb: int = Field(default=2048, ge=32, validation_alias=_env("TOOL_MEMORY_MAX_MB"))
    tool_max_procs_max: int = Field(default=256, ge=2, validation_alias=_env("TOOL_MAX_PROCS_MAX"))

    # Provider keys and endpoints carry no prefix, as in Letta.
    openai_api_key: str | None = Field(default=None, validation_alias=AliasChoices("OPENAI_API_KEY"))
    openai_base_url: str | None = Field(
        default=None, validation_alias=AliasChoices("OPENAI_BASE_URL", "OPENAI_API_BASE")
    )
    anthropic_api_key: str | None = Field(default=None, validation_alias=AliasChoices("ANTHROPIC_API_KEY"))
    anthropic_base_url: str = Field(
        default="https://api.anthropic.com/v1", validation_alias=AliasChoices("ANTHROPIC_BASE_URL")
    )
    ollama_base_url: str | None = Field(default=None, validation_alias=AliasChoices("OLLAMA_BASE_URL"))
    vllm_api_base: str | None = Field(default=None, validation_alias=AliasChoices("VLLM_API_BASE"))

    # Outbound calls (R20). Endpoints a tenant may name beyond the configured providers' base URLs: URL prefixes
    # (comma-separated; a bare "https://" allows any public host). Such endpoints never get an operator key.
    allowed_endpoints: Annotated[list[str], NoDecode] = Field(
        default_factory=list, validation_alias=_env("ALLOWED_ENDPOINTS")
    )
    # Whole-call bounds (connect to last byte) of an outbound call: a plain one, and a streamed answer.
    outbound_timeout_s: float = Field(default=300.0, gt=0, validation_alias=_env("OUTBOUND_TIMEOUT"))
    outbound_stream_timeout_s: float = Field(default=1800.0, gt=0, validation_alias=_env("OUTBOUND_STREAM_TIMEOUT"))
    # Largest non-streamed answer read from an outbound call; a bigger one fails the call.
    outbound_max_response_bytes: int = Field(
        default=32 * 1024 * 1024, ge=1024, validation_alias=_env("OUTBOUND_MAX_RESPONSE_BYTES")
    )

    @field_validator("allowed_endpoints", mode="before")
    @classmethod
    def _split_allowed_endpoints(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        from recalld.llm.urls import AllowedPrefix  # a leaf module: malformed entries stop start-up, saying which

        for entry in value if isinstance(value, list) else ():
            AllowedPrefix.parse(str(entry))
        return value

    # Access: "off" serves keyless requests as the default organization; "required" demands a key.
    auth: Literal["off", "required"] = Field(default="off", validation_alias=_env("AUTH"))
    cors_origins: list[str] = Field(default_factory=list, validation_alias=_env("CORS_ORIGINS"))

    # Secure defaults (R21).
    # `recalld serve` with auth off refuses a non-loopback address unless this is true.
    allow_unauthenticated: bool = Field(default=False, validation_alias=_env("ALLOW_UNAUTHENTICATED"))
    # With auth required, /openapi.json, /docs and /redoc need a key unless this is true.
    public_docs: bool = Field(default=False, validation_alias=_env("PUBLIC_DOCS"))
    # When set, /metrics answers only `Authorization: Bearer <this token>`.
    metrics_token: str | None = Field(default=None, validation_alias=_env("METRICS_TOKEN"))
    # Fernet keys for secrets at rest, comma-separated: the first encrypts, all decrypt (secrets_box.py). Unset on
    # SQLite: a key generated into RECALLD_DIR/secrets.key; unset on PostgreSQL: `recalld serve` refuses to start.
    secrets_key: str | None = Field(default=None, validation_alias=_env("SECRETS_KEY"))
    # A key found valid is trusted this long without another lookup; with Redis a revocation is pushed at once.
    key_cache_ttl_s: float = Field(default=5.0, ge=0, le=300, validation_alias=_env("KEY_CACHE_TTL_S"))

    # The OTLP/HTTP collector's base URL (spans go to <url>/v1/traces); unset, nothing is traced (obs/tracing.py).
    otel_endpoint: str | None = Field(
        default=None, validation_alias=AliasChoices("RECALLD_OTEL_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
    )
    metrics_enabled: bool = Field(default=True, validation_alias=_env("METRICS"))
    log_level: str = Field(default="info", validation_alias=_env("LOG_LEVEL"))
    # One JSON object per line (obs/logs.py) or plain text; unset: json for `recalld serve`, text otherwise.
    log_format: Literal["json", "text"] | None = Field(default=None, validation_alias=_env("LOG_FORMAT"))
    # Largest request body accepted, in bytes.
    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024, validation_alias=_env("MAX_BODY_BYTES"))

    # Limits (R22). Per-organization defaults; `recalld orgs set-limits` overrides them per organization
    # (services/limits.py). Generous enough that a single user on the embedded default never meets them.
    limit_requests_per_s: float = Field(default=500.0, gt=0, validation_alias=_env("LIMIT_REQUESTS_PER_S"))
    limit_burst: int = Field(default=1000, ge=1, validation_alias=_env("LIMIT_BURST"))
    limit_concurrent_turns: int = Field(default=64, ge=1, validation_alias=_env("LIMIT_CONCURRENT_TURNS"))
    limit_queued_turns: int = Field(default=256, ge=0, validation_alias=_env("LIMIT_QUEUED_TURNS"))
    limit_max_steps: int = Field(default=100, ge=1, validation_alias=_env("LIMIT_MAX_STEPS"))
    limit_max_passages: int = Field(default=1_000_000, ge=0, validation_alias=_env("LIMIT_MAX_PASSAGES"))
    limit_max_storage_mb: int = Field(default=10_240, ge=0, validation_alias=_env("LIMIT_MAX_STORAGE_MB"))
    limit_max_tool_seconds_per_min: float = Field(
        default=600.0, ge=0, validation_alias=_env("LIMIT_MAX_TOOL_SECONDS_PER_MIN")
    )
    limit_tool_network: bool = Field(default=False, validation_alias=_env("LIMIT_TOOL_NETWORK"))
    # How often an instance re-reads the per-organization overrides, and re-measures an organization's storage.
    limits_refresh_s: float = Field(default=2.0, gt=0, validation_alias=_env("LIMITS_REFRESH_S"))
    storage_measure_s: float = Field(default=30.0, gt=0, validation_alias=_env("STORAGE_MEASURE_S"))
    # Hard caps whatever the organization.
    max_block_limit: int = Field(default=1_000_000, ge=1, validation_alias=_env("MAX_BLOCK_LIMIT"))
    max_blocks_per_agent: int = Field(default=100, ge=1, validation_alias=_env("MAX_BLOCKS_PER_AGENT"))
    max_tool_source_bytes: int = Field(default=256 * 1024, ge=1024, validation_alias=_env("MAX_TOOL_SOURCE_BYTES"))

    @property
    def data_dir(self) -> Path:
        return self.dir.expanduser()

    @property
    def database_url(self) -> str:
        """SQLAlchemy URL of the primary database, with the async driver."""
        if self.pg_uri:
            return to_asyncpg_url(self.pg_uri)
        return f"sqlite+aiosqlite:///{self.data_dir / 'recalld.db'}"

    @property
    def is_postgres(self) -> bool:
        return bool(self.pg_uri)


def to_asyncpg_url(uri: str) -> str:
    """Normalise postgres:// and postgresql:// URIs to SQLAlchemy's asyncpg dialect."""
    for prefix in ("postgresql+asyncpg://", "postgresql+psycopg2://", "postgresql://", "postgres://"):
        if uri.startswith(prefix):
            return "postgresql+asyncpg://" + uri[len(prefix) :]
    return uri
