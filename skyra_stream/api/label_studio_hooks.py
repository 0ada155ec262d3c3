"""The review console's webhook endpoint: Label Studio tells the bridge an annotation changed.

Label Studio sends the header configured on its webhook (`Authorization: Bearer <secret>`,
SKYRA_REVIEW_CONSOLE_WEBHOOK_SECRET); anything else is 401 and nothing is queued. Even an
authenticated payload is only a notification: the bridge takes the task and annotation ids
from it and reads the annotation back from Label Studio's API, so a forged or replayed body
can at most cause a re-read, never a review event of its own making.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable

from fastapi import APIRouter, Request, Response

from skyra_stream.api.guards import ApiProblem
from skyra_stream.errors import ErrorCode, ServiceCode

PATH = "/v1/label-studio/webhook"
MAX_BODY_BYTES = 1 << 20


def label_studio_router(secret: str, notify: Callable[[int], None]) -> APIRouter:
    """`notify(task_id)` is called once per task named by an authenticated notification."""
    if len(secret) < 16:
        raise ValueError("the webhook secret must be at least 16 characters")
    expected = f"Bearer {secret}".encode()
    router = APIRouter()

    @router.post(PATH, include_in_schema=False, status_code=204)
    async def notified(request: Request) -> Response:
        given = request.headers.get("authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            raise ApiProblem(ServiceCode.UNAUTHORIZED, "wrong or missing webhook secret")
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            raise ApiProblem(ErrorCode.INVALID_EVENT, "notification too large", status=413)
        for task_id in task_ids(body):
            notify(task_id)
        return Response(status_code=204)

    return router


def task_ids(body: bytes) -> list[int]:
    """The tasks a Label Studio webhook body names (one annotation, or a bulk of them)."""
    try:
        doc = json.loads(body)
    except ValueError:
        raise ApiProblem(ErrorCode.INVALID_EVENT, "the notification is not JSON") from None
    if not isinstance(doc, dict):
        raise ApiProblem(ErrorCode.INVALID_EVENT, "the notification is not an object")
    found: list[object] = []
    task = doc.get("task")
    if isinstance(task, dict):
        found.append(task.get("id"))
    for key in ("annotation", "annotations"):
        value = doc.get(key)
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, dict):
                found.append(item.get("task"))
    ids = sorted({i for i in found if isinstance(i, int) and not isinstance(i, bool) and i > 0})
    return ids[:1000]
