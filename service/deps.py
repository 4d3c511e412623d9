"""Dependencies of the routes, as ``Annotated`` aliases."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from service.errors import NotReady, Unauthorized
from service.runtime import Runtime
from service.settings import Settings, get_settings

__all__ = ["ApiKey", "ReadyRuntime", "RequestId", "RuntimeDep", "SettingsDep"]

SettingsDep = Annotated[Settings, Depends(get_settings)]

_bearer = HTTPBearer(auto_error=False, description="an API key of ILCS_API_KEYS, when keys are set")
_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="the same key, as a header")


def get_runtime(request: Request) -> Runtime:
    runtime = getattr(request.app.state, "runtime", None)
    if runtime is None:
        raise NotReady("the model is not loaded yet; retry after the Retry-After seconds")
    return runtime


def get_ready_runtime(runtime: Annotated[Runtime, Depends(get_runtime)]) -> Runtime:
    runtime.ensure_ready()
    return runtime


def get_request_id(request: Request) -> str:
    return request.state.request_id


def require_api_key(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
    header_key: Annotated[str | None, Security(_api_key_header)],
) -> None:
    """Pass when no keys are configured, or when the Bearer token or X-API-Key is one of them."""
    keys: tuple[bytes, ...] = request.app.state.api_keys
    if not keys:
        return
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


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
ReadyRuntime = Annotated[Runtime, Depends(get_ready_runtime)]
RequestId = Annotated[str, Depends(get_request_id)]
ApiKey = Depends(require_api_key)
