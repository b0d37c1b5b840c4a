"""The InvarLock plugin's FastAPI app, mounted by the API server at ``/invarlock``.

Every page is read server side from the store, so the browser needs no bucket access; a task's
XCom says where its evidence is, but only a store the deployment serves is read, through that
store's configured connection (anything else is a 403 page). Every route checks with Airflow's
auth manager that the user may read the DAG the evidence belongs to, names and ids taken from URLs
are validated before any key is formed, and every response carries a Content-Security-Policy that
allows no script (a file download's also sandboxes it).

Routes (below ``/invarlock``):
    /task/{dag_id}/{run_id}/{task_id}/{map_index}        that task's evidence (report, verify result)
    /task/{dag_id}/{run_id}/{task_id}/{map_index}/files/{name}   one file of that task's bundle
    /run/{dag_id}/{run_id}                               every report of the DAG run
    /evidence?report=NAME&verdict=PASS|FAIL              recent bundles and history per report name
    /evidence/{report}/{evidence_id}                     one bundle of the Evidence store
    /evidence/{report}/{evidence_id}/files/{name}        one file of it
"""

from __future__ import annotations

from typing import Annotated, Any

from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
from airflow.api_fastapi.common.db.common import SessionDep
from airflow.api_fastapi.core_api.security import GetUserDep, requires_access_dag
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from invarlock_provider.airflow import evidence_pages as pages

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; "
    "frame-ancestors 'self'; base-uri 'none'"
)
NIGHTLY_DAG_ID = "invarlock_nightly"

router = APIRouter()
TaskAccess = Depends(requires_access_dag("GET", DagAccessEntity.TASK_INSTANCE))
RunAccess = Depends(requires_access_dag("GET", DagAccessEntity.RUN))


def create_app() -> FastAPI:
    app = FastAPI(title="InvarLock evidence", docs_url=None, redoc_url=None, openapi_url=None)

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Any) -> Response:
        response = await call_next(request)
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)  # a download sets its own
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"
        response.headers["Cache-Control"] = "private, no-store"
        return response

    from invarlock_provider.errors import InvarlockError

    @app.exception_handler(InvarlockError)
    async def bad_input(request: Request, exc: InvarlockError) -> Response:
        return _error_page(400, str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return _error_page(exc.status_code, str(exc.detail), exc.headers)

    app.include_router(router)
    return app


def _error_page(status: int, message: str, headers: dict[str, str] | None = None) -> HTMLResponse:
    """Errors are pages too: these routes are opened in the Airflow UI's frames, not called by scripts."""
    body = f'<p class="error" data-status="{status}">{pages.esc(message)}</p>'
    return HTMLResponse(pages.page(f"{status}: {message}", body), status_code=status, headers=headers)


def _map_index(text: str) -> int:
    """The UI leaves ``{MAP_INDEX}`` in the view's URL for a task that is not mapped."""
    if text == "{MAP_INDEX}":
        return -1
    if not text.lstrip("-").isdigit() or int(text) < -1:
        raise HTTPException(400, f"map index {text!r}: expected an integer >= -1")
    return int(text)


def _root(request: Request) -> str:
    """The app's own URL path (``/invarlock`` under any API server base path), for links."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def _task_value(session: Any, dag_id: str, run_id: str, task_id: str, map_index: int) -> dict[str, Any]:
    from airflow.models.xcom import XComModel

    query = XComModel.get_many(
        run_id=run_id, key="return_value", task_ids=task_id, dag_ids=dag_id, map_indexes=map_index, limit=1
    )
    found = session.scalars(query).first()
    value = XComModel.deserialize_value(found) if found is not None else None
    if not isinstance(value, dict):
        raise HTTPException(404, f"{dag_id}/{run_id}/{task_id}[{map_index}] recorded no InvarLock evidence")
    return value


@router.get("/task/{dag_id}/{run_id}/{task_id}/{map_index}", dependencies=[TaskAccess])
def task_page(
    request: Request, session: SessionDep, dag_id: str, run_id: str, task_id: str, map_index: str
) -> HTMLResponse:
    value = _task_value(session, dag_id, run_id, task_id, _map_index(map_index))
    files = f"{_root(request)}/task/{dag_id}/{run_id}/{task_id}/{map_index}/files"
    return HTMLResponse(pages.task_page(value, files_link=files))


@router.get("/task/{dag_id}/{run_id}/{task_id}/{map_index}/files/{name:path}", dependencies=[TaskAccess])
def task_file(session: SessionDep, dag_id: str, run_id: str, task_id: str, map_index: str, name: str) -> Response:
    value = _task_value(session, dag_id, run_id, task_id, _map_index(map_index))
    if "bundle_uri" not in value:
        raise HTTPException(404, f"{task_id} archived no bundle")
    return pages.bundle_file(value["bundle_uri"], name)


@router.get("/run/{dag_id}/{run_id}", dependencies=[RunAccess])
def run_page(request: Request, session: SessionDep, dag_id: str, run_id: str) -> HTMLResponse:
    from airflow.models.xcom import XComModel

    query = XComModel.get_many(run_id=run_id, key="return_value", dag_ids=dag_id)
    values = [(row.task_id, row.map_index, XComModel.deserialize_value(row)) for row in session.scalars(query)]
    return HTMLResponse(pages.run_page(dag_id, run_id, values, root=_root(request)))


def _evidence_source(user: Any) -> Any:
    """The nightly DAG's archive target, for users whom the auth manager lets read that DAG."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagDetails

    from invarlock_provider.airflow.defaults import archive_conn_id, archive_target
    from invarlock_provider.airflow.evidence_store import EvidenceSource

    source = EvidenceSource(archive_target(), archive_conn_id(), NIGHTLY_DAG_ID)
    if not get_auth_manager().is_authorized_dag(method="GET", details=DagDetails(id=source.dag_id), user=user):
        raise HTTPException(403, f"not allowed to read DAG {source.dag_id}, whose evidence this is")
    return source


@router.get("/evidence")
def evidence_page(
    request: Request,
    user: GetUserDep,
    report: Annotated[str | None, Query(max_length=128)] = None,
    verdict: Annotated[str | None, Query(pattern="^(PASS|FAIL)?$")] = None,
) -> HTMLResponse:
    from invarlock_provider.storage.uri import check_segment

    source = _evidence_source(user)
    if report:
        check_segment(report, "report")
    return HTMLResponse(pages.evidence_page(source, report or None, verdict or None, root=_root(request)))


@router.get("/evidence/{report}/{evidence_id}")
def evidence_bundle_page(request: Request, user: GetUserDep, report: str, evidence_id: str) -> HTMLResponse:
    source = _evidence_source(user)
    uri = pages.source_bundle_uri(source, report, evidence_id)
    files = f"{_root(request)}/evidence/{report}/{evidence_id}/files"
    return HTMLResponse(pages.bundle_page(uri, files_link=files))


@router.get("/evidence/{report}/{evidence_id}/files/{name:path}")
def evidence_file(user: GetUserDep, report: str, evidence_id: str, name: str) -> Response:
    source = _evidence_source(user)
    return pages.bundle_file(pages.source_bundle_uri(source, report, evidence_id), name)
