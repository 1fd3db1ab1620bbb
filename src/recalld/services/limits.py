"""Every organization's limits (contract R22): the defaults from settings, overridden per organization by
`recalld orgs set-limits`. Each instance keeps all overrides in memory and re-reads them every
limits_refresh_s, so a request pays a dict lookup and a change reaches every instance within seconds."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, fields, replace

from recalld import ids
from recalld.errors import InvalidInput, NotFound
from recalld.sandbox import ToolRunLimits
from recalld.settings import Settings
from recalld.store import org_limits as limits_store
from recalld.store import orgs as orgs_store
from recalld.store.router import StoreRouter

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OrgLimits:
    requests_per_s: float
    burst: int
    concurrent_turns: int
    queued_turns: int
    max_steps: int
    max_passages: int
    max_storage_mb: int
    max_tool_seconds_per_min: float
    tool_network: bool
    tool_timeout_s: float
    tool_memory_mb: int
    tool_max_procs: int

    @classmethod
    def defaults(cls, settings: Settings) -> OrgLimits:
        return cls(
            requests_per_s=settings.limit_requests_per_s,
            burst=settings.limit_burst,
            concurrent_turns=settings.limit_concurrent_turns,
            queued_turns=settings.limit_queued_turns,
            max_steps=settings.limit_max_steps,
            max_passages=settings.limit_max_passages,
            max_storage_mb=settings.limit_max_storage_mb,
            max_tool_seconds_per_min=settings.limit_max_tool_seconds_per_min,
            tool_network=settings.limit_tool_network,
            tool_timeout_s=settings.tool_timeout_s,
            tool_memory_mb=settings.tool_memory_mb,
            tool_max_procs=settings.tool_max_procs,
        )

    def tool_run_limits(self) -> ToolRunLimits:
        return ToolRunLimits(self.tool_timeout_s, self.tool_memory_mb, self.tool_max_procs)


LIMIT_NAMES = tuple(f.name for f in fields(OrgLimits))
# The smallest value each limit takes (a rate and a burst of 0 would refuse everything: that is what revoking
# the organization's keys is for).
_MINIMUM = {"requests_per_s": 0.01, "burst": 1, "concurrent_turns": 1, "queued_turns": 0, "max_steps": 1,
            "max_passages": 0, "max_storage_mb": 0, "max_tool_seconds_per_min": 0,
            "tool_timeout_s": 0.1, "tool_memory_mb": 32, "tool_max_procs": 2}
# The tool limits an override may not exceed: the operator's ceilings (R23), named by their settings.
_CEILING = {"tool_timeout_s": ("tool_timeout_max_s", "RECALLD_TOOL_TIMEOUT_MAX_S"),
            "tool_memory_mb": ("tool_memory_max_mb", "RECALLD_TOOL_MEMORY_MAX_MB"),
            "tool_max_procs": ("tool_max_procs_max", "RECALLD_TOOL_MAX_PROCS_MAX")}


def check_values(values: dict, settings: Settings) -> None:
    """Refuse unknown limits and values out of range (below the minimum, over a tool ceiling), naming them."""
    for name, value in values.items():
        if name not in LIMIT_NAMES:
            raise InvalidInput(f"Unknown limit '{name}'; limits are {list(LIMIT_NAMES)}")
        if value is None:
            continue
        if name == "tool_network":
            if not isinstance(value, bool):
                raise InvalidInput("tool_network must be on or off")
        elif isinstance(value, bool) or not isinstance(value, int | float) or value < _MINIMUM[name]:
            raise InvalidInput(f"{name} must be a number of at least {_MINIMUM[name]}")
        elif name in _CEILING:
            setting, env_name = _CEILING[name]
            ceiling = getattr(settings, setting)
            if value > ceiling:
                raise InvalidInput(f"{name} may be at most {ceiling:g}, the ceiling this server sets ({env_name})")
        if name in ("tool_memory_mb", "tool_max_procs") and not isinstance(value, int):
            raise InvalidInput(f"{name} must be a whole number")


def _within_ceilings(values: dict, settings: Settings) -> dict:
    """An override stored under a higher ceiling holds only up to today's."""
    return {
        name: min(value, getattr(settings, _CEILING[name][0])) if name in _CEILING else value
        for name, value in values.items()
    }


class LimitBook:
    """The limits of every organization, as this instance last read them."""

    def __init__(self, router: StoreRouter, settings: Settings):
        self.router = router
        self.settings = settings
        self.defaults = OrgLimits.defaults(settings)
        self._resolved: dict[str, OrgLimits] = {}

    def for_org(self, org_id: str) -> OrgLimits:
        return self._resolved.get(org_id, self.defaults)

    async def refresh(self) -> None:
        async with self.router.read(ids.DEFAULT_ORG_ID) as conn:
            overrides = await limits_store.all_overrides(conn)
        self._resolved = {
            org_id: replace(self.defaults, **_within_ceilings(values, self.settings))
            for org_id, values in overrides.items()
        }

    async def run_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.limits_refresh_s)
            try:
                await self.refresh()
            except Exception as e:  # noqa: BLE001 - the last limits read stay in force
                log.warning("re-reading organization limits failed (%s); keeping the last ones", e)

    # --- `recalld orgs` ---------------------------------------------------------------------------------

    async def set_limits(self, org_name: str, values: dict) -> dict:
        """Set (a value) or reset to the default (None) limits of the organization named; its limits after."""
        check_values(values, self.settings)
        async with self.router.write(ids.DEFAULT_ORG_ID) as conn:
            org = await orgs_store.get_org_by_name(conn, org_name)
            if org is None:
                raise NotFound(f"No organization named '{org_name}'")
            await limits_store.set_overrides(conn, org["organization_id"], values)
        return (await self.show(org_name))[0]

    async def show(self, org_name: str | None = None) -> list[dict]:
        """Each organization's (or the one named's) limits, saying which are overridden."""
        async with self.router.read(ids.DEFAULT_ORG_ID) as conn:
            names = await limits_store.org_names(conn)
            overrides = await limits_store.all_overrides(conn)
        if org_name is not None:
            names = {org_id: name for org_id, name in names.items() if name == org_name}
            if not names:
                raise NotFound(f"No organization named '{org_name}'")
        out = []
        for org_id, name in sorted(names.items(), key=lambda item: item[1]):
            own = overrides.get(org_id, {})
            limits = replace(self.defaults, **_within_ceilings(own, self.settings))
            out.append({
                "organization": name,
                "organization_id": org_id,
                "limits": {n: getattr(limits, n) for n in LIMIT_NAMES},
                "overridden": sorted(own),
            })
        return out
