"""JSON Schemas of the messages, for downstream services that do not read Python.

The committed files under `schemas/` are generated from the pydantic models; a test
regenerates them and fails on any difference, so the two never drift.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from skyra_stream.decisions.calibration import CalibrationFile
from skyra_stream.decisions.policy import PolicyFile
from skyra_stream.decisions.receipts import ReceiptAssertion
from skyra_stream.messages import AuditRecord, DeadLetter, IngestEvent, ReviewEvent, Verdict

MODELS: dict[str, type[BaseModel]] = {
    "ingest_event": IngestEvent,
    "verdict": Verdict,
    "dead_letter": DeadLetter,
    "review_event": ReviewEvent,
    "audit_record": AuditRecord,
    # Not messages, but files operators write or keep: editors and CI validate them.
    "policy": PolicyFile,
    "calibration": CalibrationFile,
    # The verdict assertion of a signed receipt (docs/receipts.md): what a verifier reads.
    "receipt_assertion": ReceiptAssertion,
}


def json_schemas() -> dict[str, dict[str, Any]]:
    """`{file name: schema}` for every message model."""
    out = {}
    for name, model in MODELS.items():
        schema = model.model_json_schema(mode="serialization")
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["$id"] = f"https://skyra-stream.dev/schemas/{name}.v1.schema.json"
        out[f"{name}.v1.schema.json"] = schema
    return out


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def write_schemas(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for filename, schema in json_schemas().items():
        path = directory / filename
        path.write_text(render(schema), encoding="utf-8")
        written.append(path)
    return written


def openapi_spec() -> dict[str, Any]:
    """The HTTP API's OpenAPI document, as served at /openapi.json (default settings)."""
    from skyra_stream.api.app import default_openapi  # noqa: PLC0415 - FastAPI only when asked

    return default_openapi()
