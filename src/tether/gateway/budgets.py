"""Where budgets stand, per feature and scope: ``GET /admin/budgets`` and ``tether budgets
status`` print the same report.

    {"backend": "redis", "note": null, "scopes": [
      {"feature": "support", "scope": "user", "identity": "alice", "dimension": "cost_usd",
       "spent": 0.42, "reserved": 0.01, "limit": 1.0, "mode": "hard", "period": "day",
       "period_start": 1764201600.0, "resets_at": 1764288000.0}, ...]}

``spent`` and ``reserved`` are read from the state backend. A scope whose identity the query
does not name (``user``, ``tenant``, ``key``) is left out by :func:`tether.budgets.status.status`
or reported with ``identity: null``, as that function decides. With the in-process backend
(``state.backend: memory``) each process keeps its own numbers: the gateway reports its own,
and a separate process (the CLI) has none, which ``note`` says (its ``spent`` and ``reserved``
are then ``null``, never a misleading 0).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tether.errors import InvalidRequest
from tether.gateway.asgi import Handler

if TYPE_CHECKING:
    from tether.gateway.runtime import GatewayRuntime
    from tether.sdk import Tether

FILTERS = ("feature", "user", "tenant", "key")
MEMORY_ELSEWHERE = (
    "state.backend is memory: budgets live inside each running process, and this one has "
    "served no calls, so spent and reserved are unknown here; ask the running gateway "
    "(GET /admin/budgets with the admin token), or set state.backend: redis to share them"
)
MEMORY_HERE = (
    "state.backend is memory: these are this process's own numbers; other replicas keep "
    "their own (set state.backend: redis to share budgets between replicas)"
)


async def budget_report(
    tether: Tether,
    *,
    feature: str | None = None,
    user: str | None = None,
    tenant: str | None = None,
    key: str | None = None,
    in_process: bool = True,
) -> dict[str, Any]:
    """Every budget scope of ``feature`` (default: every feature with budgets), for the
    identities given. ``in_process``: the report comes from the process that served the
    calls (the gateway), not a separate one (the CLI). Raises FeatureNotFound, and
    StateUnavailable when the state backend cannot be read."""
    from tether.budgets.status import status

    if feature is not None:
        names = [tether.pipeline.feature(feature).name]
    else:
        names = [n for n, f in tether.config.features.items() if not f.budgets.empty]
    backend = tether.services.state.backend.name
    unknown = backend == "memory" and not in_process
    scopes: list[dict[str, Any]] = []
    for name in names:
        for row in await status(tether.services, name, user=user, tenant=tenant, key=key):
            entry = {"feature": name, **row.as_dict()}
            if unknown:
                entry["spent"] = entry["reserved"] = None
            scopes.append(entry)
    note = None
    if backend == "memory":
        note = MEMORY_HERE if in_process else MEMORY_ELSEWHERE
    return {"backend": backend, "note": note, "scopes": scopes}


def report_filters(query: Mapping[str, str]) -> dict[str, str | None]:
    """``/admin/budgets`` query parameters (``feature``, ``user``, ``tenant``, ``key``);
    an unknown one is a 400 that names the ones there are."""
    unknown = sorted(set(query) - set(FILTERS))
    if unknown:
        raise InvalidRequest(
            f"{', '.join(unknown)}: not a filter of /admin/budgets (there are "
            f"{', '.join(FILTERS)})",
            param=unknown[0],
        )
    return {name: query.get(name) or None for name in FILTERS}


def budgets_handler(runtime: GatewayRuntime) -> Handler:
    """``GET /admin/budgets`` (admin token): :func:`budget_report` of this gateway."""

    async def admin_budgets(request: Request) -> Response:
        runtime.auth.require_admin(request.headers)
        f = report_filters(request.query_params)
        report = await budget_report(
            runtime.tether, feature=f["feature"], user=f["user"], tenant=f["tenant"], key=f["key"]
        )
        return JSONResponse(report)

    return admin_budgets
