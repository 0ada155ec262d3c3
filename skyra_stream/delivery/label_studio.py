"""The few Label Studio API calls the review console makes, over httpx.

Why not `label-studio-sdk`: its 2.x client is generated from the whole API and pins its own
httpx, pydantic and numpy ranges; the bridge needs nine calls whose answers it validates
itself anyway (everything Label Studio returns is untrusted input here, as anything a person
can type into). Each call is bounded in time; a 5xx, 429, timeout or refused connection is a
`LabelStudioUnavailable` that the caller retries with backoff, anything else a
`LabelStudioError` with Label Studio's own words.

Idempotency lives in Label Studio itself, not in a side store: a task is found by the verdict's
event id (a Data Manager filter on `data.event_id`), and what the bridge has turned into review
events is written on the task's `meta`, so a restarted bridge, or a second replica, reads the
same state.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

import httpx

ANNOTATION_ACTIONS: Final = ("ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_CREATED")
SUSPICIOUS_VIEW: Final = "Most suspicious first"


class LabelStudioError(RuntimeError):
    """Label Studio answered, and refused (4xx): retrying will not help."""


class LabelStudioUnavailable(LabelStudioError):
    """Down, slow or overloaded (connection refused, timeout, 5xx, 429): retry later."""


@dataclass(frozen=True, slots=True)
class LabelStudioConfig:
    url: str
    token: str
    project_title: str = "Skyra review"
    timeout_s: float = 10.0


class LabelStudio:
    def __init__(self, config: LabelStudioConfig, transport: httpx.BaseTransport | None = None):
        self.config = config
        self._http = httpx.Client(
            base_url=config.url.rstrip("/"),
            headers={"Authorization": f"Token {config.token}"},
            timeout=config.timeout_s,
            follow_redirects=False,
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            answer = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise LabelStudioUnavailable(f"{method} {path}: {type(exc).__name__}: {exc}") from None
        if answer.status_code >= 500 or answer.status_code == 429:
            raise LabelStudioUnavailable(f"{method} {path}: {answer.status_code}")
        if answer.status_code >= 400:
            raise LabelStudioError(f"{method} {path}: {answer.status_code} {answer.text[:300]}")
        if answer.status_code == 204 or not answer.content:
            return None
        try:
            return answer.json()
        except ValueError:
            raise LabelStudioError(f"{method} {path}: the answer is not JSON") from None

    # -- project ---------------------------------------------------------------------------
    def ensure_project(self, label_config: str) -> int:
        """The project named `project_title`, made with `label_config` or brought up to it."""
        title = self.config.project_title
        page: int | None = 1
        while page:
            doc = self._call("GET", "/api/projects", params={"page": page, "page_size": 100})
            for project in _results(doc):
                if project.get("title") == title:
                    pid = int(project["id"])
                    if project.get("label_config") != label_config:
                        self._call(
                            "PATCH", f"/api/projects/{pid}", json={"label_config": label_config}
                        )
                    return pid
            page = page + 1 if isinstance(doc, dict) and doc.get("next") else None
        created = self._call(
            "POST",
            "/api/projects",
            json={
                "title": title,
                "label_config": label_config,
                "description": "Verdicts that the policy sent to review, most suspicious first.",
                "show_collab_predictions": True,
                "evaluate_predictions_automatically": True,
                "maximum_annotations": 1,
            },
        )
        return int(created["id"])

    def ensure_suspicious_view(self, project_id: int) -> int:
        """A Data Manager tab ordered by P(fake), highest first: what reviewers open."""
        views = self._call("GET", "/api/dm/views", params={"project": project_id}) or []
        for view in views:
            if isinstance(view, dict) and (view.get("data") or {}).get("title") == SUSPICIOUS_VIEW:
                return int(view["id"])
        created = self._call(
            "POST",
            "/api/dm/views",
            json={
                "project": project_id,
                "data": {
                    "title": SUSPICIOUS_VIEW,
                    "ordering": ["-tasks:data.fake_probability"],
                    "filters": {"conjunction": "and", "items": []},
                },
            },
        )
        return int(created["id"])

    def ensure_webhook(self, project_id: int, url: str, headers: dict[str, str]) -> int:
        for hook in self._call("GET", "/api/webhooks", params={"project": project_id}) or []:
            if isinstance(hook, dict) and hook.get("url") == url:
                if hook.get("headers") != headers:
                    self._call("PATCH", f"/api/webhooks/{hook['id']}", json={"headers": headers})
                return int(hook["id"])
        created = self._call(
            "POST",
            "/api/webhooks",
            json={
                "project": project_id,
                "url": url,
                "headers": headers,
                "send_payload": True,
                "send_for_all_actions": False,
                "actions": list(ANNOTATION_ACTIONS),
                "is_active": True,
            },
        )
        return int(created["id"])

    # -- tasks -----------------------------------------------------------------------------
    def tasks(
        self, project_id: int, filters: list[dict[str, Any]], ordering: list[str] | None = None
    ) -> list[dict[str, Any]]:
        """Every task of the project matching the Data Manager filters (all pages)."""
        query = json.dumps(
            {
                "filters": {"conjunction": "and", "items": filters},
                "ordering": ordering or ["tasks:id"],
            }
        )
        out: list[dict[str, Any]] = []
        page = 1
        while True:
            doc = self._call(
                "GET",
                "/api/tasks",
                params={"project": project_id, "query": query, "page": page, "page_size": 100},
            )
            batch = [t for t in (doc or {}).get("tasks", []) if isinstance(t, dict)]
            out += batch
            if len(batch) < 100:
                return out
            page += 1

    def find_task(self, project_id: int, event_id: str) -> int | None:
        found = self.tasks(
            project_id,
            [
                {
                    "filter": "filter:tasks:data.event_id",
                    "operator": "equal",
                    "type": "String",
                    "value": event_id,
                }
            ],
        )
        exact = [t for t in found if (t.get("data") or {}).get("event_id") == event_id]
        return int(exact[0]["id"]) if exact else None

    def import_task(self, project_id: int, task: dict[str, Any]) -> None:
        """Task and prediction in one request (one transaction in Label Studio)."""
        self._call("POST", f"/api/projects/{project_id}/import", json=[task])

    def annotated_tasks(self, project_id: int) -> list[dict[str, Any]]:
        return self._by_annotations(project_id, "greater")

    def unannotated_tasks(self, project_id: int) -> list[dict[str, Any]]:
        """The queue: tasks nobody has annotated yet."""
        return self._by_annotations(project_id, "equal")

    def _by_annotations(self, project_id: int, operator: str) -> list[dict[str, Any]]:
        """Tasks whose annotation count compares to 0 by `operator` (Data Manager's)."""
        count = {"filter": "filter:tasks:total_annotations", "type": "Number", "value": 0}
        return self.tasks(project_id, [{**count, "operator": operator}])

    def task(self, task_id: int) -> dict[str, Any]:
        doc = self._call("GET", f"/api/tasks/{task_id}")
        if not isinstance(doc, dict):
            raise LabelStudioError(f"task {task_id}: not an object")
        return doc

    def set_task_meta(self, task_id: int, meta: dict[str, Any]) -> None:
        self._call("PATCH", f"/api/tasks/{task_id}", json={"meta": meta})

    def set_task_data(self, task_id: int, data: dict[str, Any]) -> None:
        self._call("PATCH", f"/api/tasks/{task_id}", json={"data": data})

    def annotations(self, task_id: int) -> list[dict[str, Any]]:
        doc = self._call("GET", f"/api/tasks/{task_id}/annotations")
        return [a for a in doc or [] if isinstance(a, dict)]

    def annotation(self, annotation_id: int) -> dict[str, Any]:
        doc = self._call("GET", f"/api/annotations/{annotation_id}")
        if not isinstance(doc, dict):
            raise LabelStudioError(f"annotation {annotation_id}: not an object")
        return doc

    def user_name(self, user_id: int) -> str:
        doc = self._call("GET", f"/api/users/{user_id}")
        name = (doc or {}).get("email") or (doc or {}).get("username")
        return str(name) if name else f"label-studio-user-{user_id}"

    def comment(self, annotation_id: int, text: str) -> None:
        self._call("POST", "/api/comments", json={"annotation": annotation_id, "text": text})


def _results(doc: Any) -> list[dict[str, Any]]:
    items = doc.get("results", []) if isinstance(doc, dict) else doc or []
    return [p for p in items if isinstance(p, dict)]
