"""Health and readiness (contract 1.8)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from recalld import LETTA_COMPAT_VERSION, __version__
from recalld.api.schemas.common import ErrorBody, Health

router = APIRouter(tags=["health"])


@router.get("/v1/health/", response_model=Health)
async def health() -> dict:
    """The process is up. `version` stays Letta's, which clients compare (contract R19)."""
    return {"version": LETTA_COMPAT_VERSION, "status": "ok", "recalld_version": __version__}


@router.get("/v1/ready/", response_model=Health, responses={503: {"model": Health, "description": "Not ready"}})
async def ready(request: Request):
    """Ready to take work: 503 while starting or draining, so balancers stop sending requests."""
    state = getattr(request.app.state, "readiness", "ok")
    body = {"version": LETTA_COMPAT_VERSION, "status": state, "recalld_version": __version__}
    return JSONResponse(body, status_code=200 if state == "ok" else 503)


_ = ErrorBody
