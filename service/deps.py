"""Dependencies of the routes, as ``Annotated`` aliases.

All are ``async def``: FastAPI runs a plain ``def`` dependency in a worker thread,
a thread hop per dependency per request for what is only an attribute lookup.
The settings are the app's own (``create_app(settings)``, else ``get_settings()``),
read from ``app.state``; a test swaps them with
``app.dependency_overrides[get_app_settings]``. (``create_app`` itself sets no
override: with any override present FastAPI re-inspects every dependency's
signature on every request, which cost more than a millisecond per request here.)
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from service.errors import NotReady, Unauthorized
from service.runtime import Runtime
from service.settings import Settings

__all__ = ["ApiKey", "ReadyRuntime", "RequestId", "RuntimeDep", "SettingsDep", "get_app_settings"]


_bearer = HTTPBearer(auto_error=False, description="an API key of ILCS_API_KEYS, when keys are set")
_KEY_PARAMETERS = frozenset({"api_key", "apikey", "api-key", "key", "token", "access_token", "x-api-key"})
_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="the same key, as a header")


async def get_app_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_runtime(request: Request) -> Runtime:
    runtime = getattr(request.app.state, "runtime", None)
    if runtime is None:
        raise NotReady("the model is not loaded yet; retry after the Retry-After seconds")
    return runtime


async def get_ready_runtime(runtime: Annotated[Runtime, Depends(get_runtime)]) -> Runtime:
    runtime.ensure_ready()
    return runtime


async def get_request_id(request: Request) -> str:
    return request.state.request_id


async def require_api_key(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
    header_key: Annotated[str | None, Security(_api_key_header)],
) -> None:
    """Pass when no keys are configured, or when the Bearer token or X-API-Key is one of them."""
    keys: tuple[bytes, ...] = request.app.state.api_keys
    if not keys:
        return
    if _KEY_PARAMETERS.intersection(name.lower() for name in request.query_params):
        msg = (
            "API keys in the URL are refused: URLs end up in logs and proxies. Send the key as "
            "'Authorization: Bearer <key>' or 'X-API-Key: <key>', and have the key you sent replaced"
        )
        raise Unauthorized(msg)
    given = bearer.credentials if bearer is not None else header_key
    if not given:
        msg = "this service needs an API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"
        raise Unauthorized(msg)
    candidate = given.encode()
    # Compare with every key, in constant time, without stopping at a match.
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(candidate, key)
    if not matched:
        raise Unauthorized("the API key is not valid for this service; check the key you were given")


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
ReadyRuntime = Annotated[Runtime, Depends(get_ready_runtime)]
RequestId = Annotated[str, Depends(get_request_id)]
ApiKey = Depends(require_api_key)
