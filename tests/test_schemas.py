"""The committed JSON Schemas are exactly what the models generate."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema

from skyra_stream.messages import DeadLetter, ErrorReason, IngestEvent
from skyra_stream.schemas import json_schemas, render

SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"


def test_committed_schemas_match_the_models() -> None:
    generated = json_schemas()
    committed = {p.name for p in SCHEMAS.glob("*.json")}
    assert committed == set(generated), "run `make schemas` and commit schemas/"
    for name, schema in generated.items():
        assert (SCHEMAS / name).read_text() == render(schema), f"{name} drifted: make schemas"


def test_messages_validate_against_their_committed_schema() -> None:
    event = IngestEvent(event_id="e", video_id="v", uri="s3://b/k")
    dead = DeadLetter(
        event_id="e", raw="{}", reason=ErrorReason(code="invalid_event", message="bad")
    )
    for name, msg in (("ingest_event", event), ("dead_letter", dead)):
        schema = json.loads((SCHEMAS / f"{name}.v1.schema.json").read_text())
        jsonschema.validate(json.loads(msg.model_dump_json()), schema)
