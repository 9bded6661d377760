"""The review pages: a Flask application over one ``ReviewSite``.

Routes (auditor pages read only; the one write is the steward's decision form, on a node):

    GET  /                                  the timeline (coordinator) or the results (node)
    GET  /log                               the audit log: filters, verification state, anchor
    GET  /jobs, /jobs/<job>                 jobs; one job's steps, bands and score histogram
    GET  /results, /results/<job>           a node's results per job (its own records only)
    GET  /results/<job>/review/<n>          the n-th possible match of the job, one at a time
    POST /results/<job>/review/<n>          a decision: same person, not, unsure
    GET  /results/<job>/labels.csv          the job's decisions as a labels file

Every request passes ``guard`` first: the Host header must name this machine (no DNS rebinding),
and with TLS the client certificate must carry the role the folder calls for. Forms carry a
per-server token. Responses are never cached and never framed.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, abort, g, redirect, render_template, request, url_for
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response as BaseResponse  # what redirect() returns

from linkage.errors import LinkageError
from linkage.matching._labels import DECISIONS
from linkage.trust._pki import Identity
from services.review._folder import LogFilters, ReviewSite, job_view
from services.review._reviews import REVIEWS_FILE

DECISION_WORDS = {"same": "Same person", "different": "Not the same", "unsure": "Unsure"}
ACCESS_KEYS = {"same": "s", "different": "n", "unsure": "u"}
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})

# Who is asking: the identity a client certificate names (TLS), or None without TLS.
IdentityOf = Callable[[dict[str, Any]], Identity | None]


def create_app(
    site: ReviewSite, *, local_actor: str = "local", identity_of: IdentityOf | None = None, hosts: frozenset[str] = LOCAL_HOSTS
) -> Flask:
    """The application. ``identity_of`` (with TLS) reads the client certificate from the WSGI
    environment; without it every reader is ``local_actor`` (loopback only: see ``_server``)."""
    app = Flask(__name__)
    app.config.update(TEMPLATES_AUTO_RELOAD=False, MAX_CONTENT_LENGTH=16 * 1024)
    form_token = secrets.token_urlsafe(32)
    app.add_template_filter(lambda text: (text or "—").replace("T", " ").removesuffix("+00:00"), "utc")

    @app.before_request
    def guard() -> None:
        if request.host.rsplit(":", 1)[0] not in hosts:
            abort(421)  # a name that is not this machine: DNS rebinding, or a misdirected request
        if identity_of is None:
            g.actor = local_actor
            return
        identity = identity_of(request.environ)
        if identity is None:
            abort(403)
        wanted = ("node", site.agency) if site.kind == "node" else ("auditor", None)
        if identity.role != wanted[0] or (wanted[1] is not None and identity.name != wanted[1]):
            abort(403)
        g.actor = str(identity)

    @app.after_request
    def headers(response: Response) -> Response:
        response.headers["Cache-Control"] = "no-store"
        response.headers["Content-Security-Policy"] = (
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        )
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    @app.context_processor
    def common() -> dict[str, Any]:
        return {"site": site, "form_token": form_token, "actor": g.get("actor", "")}

    @app.errorhandler(LinkageError)
    def linkage_error(error: LinkageError) -> tuple[str, int]:
        return render_template("error.html", title="Cannot show this page", message=str(error)), 400

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> tuple[str, int]:
        return render_template(
            "error.html", title=f"{error.code} {error.name}", message=error.description or ""
        ), error.code or 500

    @app.get("/")
    def home() -> BaseResponse:
        return redirect(url_for("results_index" if site.kind == "node" else "timeline"))

    # -- auditors ------------------------------------------------------------------------------
    @app.get("/log")
    def timeline() -> str:
        args = request.args
        filters = LogFilters(
            job=args.get("job", ""), actor=args.get("actor", ""), agency=args.get("agency", ""), action=args.get("action", ""),
            since=args.get("since", ""), until=args.get("until", ""), reads=args.get("reads") == "1",
        )  # fmt: skip
        read = site.audit.read(g.actor, filters, expected_last=args.get("anchor", ""), what="timeline")
        return render_template("log.html", title="Audit log", read=read, filters=filters, anchor_given=args.get("anchor", ""))

    @app.get("/jobs")
    def jobs() -> str:
        if site.kind == "coordinator":
            return render_template("jobs.html", title="Jobs", jobs=site.jobs(), job_ids=None)
        read = site.audit.read(g.actor, LogFilters(), what="jobs")
        return render_template("jobs.html", title="Jobs", jobs=None, job_ids=read.choices["jobs"])

    @app.get("/jobs/<job_id>")
    def job(job_id: str) -> str:
        record = site.job(job_id) if site.kind == "coordinator" else None
        read = site.audit.read(g.actor, LogFilters(job=job_id), what="job")
        if record is None and not read.entries:
            abort(404, description="No such job in this folder.")
        return render_template("job.html", title=f"Job {job_id}", job=job_view(job_id, read, record))

    # -- stewards ------------------------------------------------------------------------------
    def stewardship() -> Any:
        if site.stewardship is None:
            abort(404, description="Results and reviews are kept on an agency's node, not here.")
        return site.stewardship

    def results_or_404(job_id: str) -> Any:
        try:
            return stewardship().results(job_id)
        except KeyError:
            abort(404, description="No results of that job here.")

    @app.get("/results")
    def results_index() -> str:
        steward = stewardship()
        return render_template("results.html", title="Results", summaries=[steward.summary(j) for j in steward.jobs()])

    @app.get("/results/<job_id>")
    def results(job_id: str) -> str:
        frame = results_or_404(job_id)
        band = request.args.get("band", "")
        if band:
            frame = frame.filter(frame.get_column("band") == band)
        decided = {r["record_id"]: r["decision"] for r in stewardship().store.decisions(job_id).iter_rows(named=True)}
        return render_template("results_job.html", title=f"Results of {job_id}", job_id=job_id, rows=frame.iter_rows(named=True),
                               count=frame.height, band=band, decided=decided, summary=stewardship().summary(job_id),
                               words=DECISION_WORDS)  # fmt: skip

    @app.get("/results/<job_id>/review")
    def review_start(job_id: str) -> BaseResponse:
        frame = results_or_404(job_id)
        possible = frame.filter(frame.get_column("band") == "possible")
        decided = set(stewardship().store.decisions(job_id).get_column("record_id").to_list())
        ids = possible.get_column("record_id").to_list()
        first = next((n for n, rid in enumerate(ids, 1) if rid not in decided), 1)
        return redirect(url_for("review", job_id=job_id, n=first))

    @app.get("/results/<job_id>/review/<int:n>")
    def review(job_id: str, n: int) -> str:
        results_or_404(job_id)
        possible = stewardship().possible(job_id)
        if not 1 <= n <= possible.height:
            abort(404, description="No such possible match in this job.")
        row = possible.row(n - 1, named=True)
        decisions = stewardship().store.decisions(job_id)
        previous = decisions.filter(decisions.get_column("record_id") == row["record_id"])
        return render_template(
            "review.html", title=f"Review {n} of {possible.height}", job_id=job_id, n=n, total=possible.height, row=row,
            record=stewardship().own_record(row["record_id"]), previous=previous.get_column("decision").to_list()[0] if previous.height else None,
            reviewed=decisions.height, decisions=DECISIONS, words=DECISION_WORDS, keys=ACCESS_KEYS, reviews_file=REVIEWS_FILE,
        )  # fmt: skip

    @app.post("/results/<job_id>/review/<int:n>")
    def decide(job_id: str, n: int) -> BaseResponse:
        stewardship()  # no decisions on a coordinator's folder
        if not hmac.compare_digest(request.form.get("token", ""), form_token):
            abort(403, description="This form is stale or came from another site; reload the page.")
        results_or_404(job_id)
        possible = stewardship().possible(job_id)
        decision = request.form.get("decision", "")
        if not 1 <= n <= possible.height or decision not in DECISIONS:
            abort(400, description="Choose same person, not the same, or unsure.")
        row = possible.row(n - 1, named=True)
        stewardship().store.decide(job=job_id, record_id=row["record_id"], reference=row["reference"], score=row["similarity"],
                                   decision=decision, reviewer=g.actor)  # fmt: skip
        if n < possible.height:
            return redirect(url_for("review", job_id=job_id, n=n + 1), code=303)
        return redirect(url_for("results", job_id=job_id, band="possible"), code=303)

    @app.get("/results/<job_id>/labels.csv")
    def labels(job_id: str) -> Response:
        results_or_404(job_id)
        text = stewardship().store.decisions(job_id).write_csv()
        return Response(text, mimetype="text/csv", headers={"Content-Disposition": f'attachment; filename="labels-{job_id}.csv"'})

    return app
