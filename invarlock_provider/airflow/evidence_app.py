"""The InvarLock plugin's FastAPI app, mounted by the API server at ``/invarlock``.

Every page is read server side from the store, so the browser needs no bucket access; a task's
XCom says where its evidence is, but only a store the deployment serves is read, through that
store's configured connection (anything else is a 403 page). Every route checks with Airflow's
auth manager that the user may read the DAG the evidence belongs to, names and ids taken from URLs
are validated before any key is formed, and every response carries a Content-Security-Policy: a
page may run only the shell's own script (``ui_shell``), a download nothing at all (sandboxed).

Routes (below ``/invarlock``):
    /task/{dag_id}/{run_id}/{task_id}/{map_index}        that task's evidence (report, verify result)
    /task/{dag_id}/{run_id}/{task_id}/{map_index}/files/{name}   one file of that task's bundle
    /task/{dag_id}/{run_id}/{task_id}/{map_index}/bundle.zip     the whole bundle, as ev-<id>/...
    /run/{dag_id}/{run_id}                               every report of the DAG run
    /evidence?report=&verdict=&tier=&since=&until=&page=&per=    bundles: charts and a paged table
    /evidence/compare?bundle=REPORT/ID&bundle=REPORT/ID  two bundles side by side
    /evidence/{report}/{evidence_id}                     one bundle of the Evidence store
    /evidence/{report}/{evidence_id}/files/{name}        one file of it
    /evidence/{report}/{evidence_id}/bundle.zip          all of it
    /static/invarlock.js                                 the pages' one script
"""

from __future__ import annotations

from typing import Any

from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
from airflow.api_fastapi.common.db.common import SessionDep
from airflow.api_fastapi.core_api.security import GetUserDep, requires_access_dag
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, Response, StreamingResponse
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException as StarletteHTTPException

from invarlock_provider.airflow import evidence_pages as pages
from invarlock_provider.airflow import ui_shell

NIGHTLY_DAG_ID = "invarlock_nightly"

router = APIRouter()
TaskAccess = Depends(requires_access_dag("GET", DagAccessEntity.TASK_INSTANCE))
RunAccess = Depends(requires_access_dag("GET", DagAccessEntity.RUN))


def create_app() -> FastAPI:
    app = FastAPI(title="InvarLock evidence", docs_url=None, redoc_url=None, openapi_url=None)

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Any) -> Response:
        response = await call_next(request)
        response.headers.setdefault("Content-Security-Policy", ui_shell.page_csp())  # a download sets its own
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"
        response.headers["Cache-Control"] = "private, no-store"
        return response

    from invarlock_provider.errors import InvarlockError

    @app.exception_handler(InvarlockError)
    async def bad_input(request: Request, exc: InvarlockError) -> Response:
        return _error_page(request, 400, str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return _error_page(request, exc.status_code, str(exc.detail), exc.headers)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> Response:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error.get('loc', ())[1:])}: {error.get('msg')}" for error in exc.errors()
        )
        return _error_page(request, 400, problems or "bad request")

    app.include_router(router)
    return app


def _shell(request: Request) -> ui_shell.Shell:
    """The app's own URL path (``/invarlock`` under any API server base path), for links, and the
    timezone the Airflow UI shows this viewer (sent by the shell's script)."""
    root = str(request.scope.get("root_path", "")).rstrip("/")
    return ui_shell.Shell(root, ui_shell.viewer_timezone(request.cookies.get(ui_shell.TIMEZONE_COOKIE)))


def _error_page(request: Request, status: int, message: str, headers: Any = None) -> HTMLResponse:
    """Errors are pages too: these routes are opened in the Airflow UI's frames, not called by scripts."""
    return HTMLResponse(_shell(request).error(status, message), status_code=status, headers=headers)


@router.get(ui_shell.SCRIPT_ROUTE)
def script() -> Response:
    return Response(ui_shell.SCRIPT_FILE.read_bytes(), media_type="text/javascript; charset=utf-8")


def _map_index(text: str) -> int:
    """The UI leaves ``{MAP_INDEX}`` in the view's URL for a task that is not mapped."""
    if text == "{MAP_INDEX}":
        return -1
    if not text.lstrip("-").isdigit() or int(text) < -1:
        raise HTTPException(400, f"map index {text!r}: expected an integer >= -1")
    return int(text)


def _task_value(session: Any, origin: pages.Origin) -> dict[str, Any] | None:
    from airflow.models.xcom import XComModel

    query = XComModel.get_many(
        run_id=origin.run_id,
        key="return_value",
        task_ids=origin.task_id,
        dag_ids=origin.dag_id,
        map_indexes=origin.map_index,
        limit=1,
    )
    found = session.scalars(query).first()
    value = XComModel.deserialize_value(found) if found is not None else None
    return value if isinstance(value, dict) else None


def _run_values(session: Any, dag_id: str, run_id: str) -> list[tuple[str, int, Any]]:
    from airflow.models.xcom import XComModel

    query = XComModel.get_many(run_id=run_id, key="return_value", dag_ids=dag_id)
    return [(row.task_id, row.map_index, XComModel.deserialize_value(row)) for row in session.scalars(query)]


def _bundle_links(base: str) -> pages.BundleLinks:
    return pages.BundleLinks(files=f"{base}/files", archive=f"{base}/bundle.zip")


@router.get("/task/{dag_id}/{run_id}/{task_id}/{map_index}", dependencies=[TaskAccess])
def task_page(
    request: Request, session: SessionDep, dag_id: str, run_id: str, task_id: str, map_index: str
) -> HTMLResponse:
    shell = _shell(request)
    origin = pages.Origin(dag_id, run_id, task_id, _map_index(map_index))
    value = _task_value(session, origin)
    base = f"{shell.root}/task/{dag_id}/{run_id}/{task_id}/{map_index}"
    if value is None:
        return HTMLResponse(pages.no_evidence_page(shell, origin))
    if "bundle_uri" in value:
        return HTMLResponse(pages.bundle_page(shell, value["bundle_uri"], _bundle_links(base), origin))
    if "report_dir" in value:
        return HTMLResponse(_reports_tab(shell, session, origin, value))
    if "run_id" in value and "report" in value:
        return HTMLResponse(pages.run_summary_page(shell, value, origin))
    return HTMLResponse(pages.no_evidence_page(shell, origin))


def _reports_tab(shell: ui_shell.Shell, session: Any, origin: pages.Origin, value: dict[str, Any]) -> str:
    """A build_report task's folder, or, when a later run rebuilt it, this run's archived bundle."""
    report_dir, recorded = value["report_dir"], value.get("evaluation_sha256")
    now = pages.current_evaluation_sha256(report_dir)
    if not recorded or now == recorded:
        return pages.reports_page(shell, report_dir, recorded, origin)
    name = str(report_dir).rstrip("/").rsplit("/", 1)[-1]
    for task_id, map_index, other in _run_values(session, origin.dag_id, origin.run_id):
        uri = other.get("bundle_uri") if isinstance(other, dict) else None
        if isinstance(uri, str) and uri.rstrip("/").split("/")[-2:-1] == [name]:
            archive = pages.Origin(origin.dag_id, origin.run_id, task_id, map_index)
            note = (
                f"{report_dir} was rebuilt by a later run; this is the evidence this run archived "
                f"({task_id}), which never changes."
            )
            base = f"{shell.root}/task/{origin.dag_id}/{origin.run_id}/{task_id}/{map_index}"
            return pages.bundle_page(shell, uri, _bundle_links(base), archive, note)
    return pages.superseded_page(shell, report_dir, recorded, now, None, origin)


def _task_bundle(session: Any, dag_id: str, run_id: str, task_id: str, map_index: str) -> str:
    value = _task_value(session, pages.Origin(dag_id, run_id, task_id, _map_index(map_index)))
    if value is None or not isinstance(value.get("bundle_uri"), str):
        raise HTTPException(404, f"{task_id} archived no bundle")
    return value["bundle_uri"]


@router.get("/task/{dag_id}/{run_id}/{task_id}/{map_index}/bundle.zip", dependencies=[TaskAccess])
def task_bundle_zip(session: SessionDep, dag_id: str, run_id: str, task_id: str, map_index: str) -> Response:
    return _zip_response(_task_bundle(session, dag_id, run_id, task_id, map_index))


@router.get("/task/{dag_id}/{run_id}/{task_id}/{map_index}/files/{name:path}", dependencies=[TaskAccess])
def task_file(session: SessionDep, dag_id: str, run_id: str, task_id: str, map_index: str, name: str) -> Response:
    return pages.bundle_file(_task_bundle(session, dag_id, run_id, task_id, map_index), name)


@router.get("/run/{dag_id}/{run_id}", dependencies=[RunAccess])
def run_page(request: Request, session: SessionDep, dag_id: str, run_id: str) -> HTMLResponse:
    return HTMLResponse(pages.run_page(_shell(request), dag_id, run_id, _run_values(session, dag_id, run_id)))


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
def evidence_page(request: Request, user: GetUserDep) -> HTMLResponse:
    from invarlock_provider.airflow.evidence_index import evidence_page as index
    from invarlock_provider.airflow.evidence_index import parse_filters

    source = _evidence_source(user)
    filters = parse_filters(request.query_params)
    return HTMLResponse(index(_shell(request), source, filters))


@router.get("/evidence/compare")
def compare_page(request: Request, user: GetUserDep) -> HTMLResponse:
    from invarlock_provider.airflow.evidence_index import compare_page as compare

    source = _evidence_source(user)
    return HTMLResponse(compare(_shell(request), source, request.query_params.getlist("bundle")))


@router.get("/evidence/{report}/{evidence_id}")
def evidence_bundle_page(request: Request, user: GetUserDep, report: str, evidence_id: str) -> HTMLResponse:
    shell = _shell(request)
    source = _evidence_source(user)
    uri = pages.source_bundle_uri(source, report, evidence_id)
    return HTMLResponse(pages.bundle_page(shell, uri, _bundle_links(f"{shell.root}/evidence/{report}/{evidence_id}")))


@router.get("/evidence/{report}/{evidence_id}/bundle.zip")
def evidence_bundle_zip(user: GetUserDep, report: str, evidence_id: str) -> Response:
    return _zip_response(pages.source_bundle_uri(_evidence_source(user), report, evidence_id))


@router.get("/evidence/{report}/{evidence_id}/files/{name:path}")
def evidence_file(user: GetUserDep, report: str, evidence_id: str, name: str) -> Response:
    source = _evidence_source(user)
    return pages.bundle_file(pages.source_bundle_uri(source, report, evidence_id), name)


def _zip_response(uri: str) -> Response:
    """The bundle checked against its manifest first (an error page if it does not match), then zipped
    while it is sent; the scratch copy is removed when the response ends, however it ends."""
    import shutil

    from invarlock_provider.airflow.bundle_download import fetch_for_download, zip_stream
    from invarlock_provider.airflow.evidence_store import open_bundle_store, served_conn_id

    store, key = open_bundle_store(uri, served_conn_id(uri), cached=False)
    scratch, folder, manifest = fetch_for_download(store, key)
    name = f"{manifest['evidence_id']}.zip"
    return StreamingResponse(
        zip_stream(scratch, folder, manifest),
        media_type="application/zip",
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "Content-Security-Policy": pages.DOWNLOAD_CSP,
        },
        background=BackgroundTask(shutil.rmtree, scratch, ignore_errors=True),
    )
