"""The documentation site's reference pages, generated from the code so that they cannot drift:
every `SKYRA_*` setting from the Settings model (its type, default and description, grouped as
settings.py groups them), every message schema, and the HTTP API from the committed OpenAPI.

`skyra-stream docs` writes them under docs/reference/; `--check` (in `make docs`, hence
in CI) fails when a committed page differs from a fresh one, and tests/test_docs.py fails when a
setting has no description.
"""

from __future__ import annotations

import re
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from skyra_stream.schemas import json_schemas, openapi_spec
from skyra_stream.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "docs" / "reference"
SOURCE = "https://github.com/skyra-stream/skyra-stream/blob/main"
GENERATED = "<!-- Made by `skyra-stream docs` from the code: edit the code, not this page. -->"
_SECTION = re.compile(r"^    # -- (.+?) -+$")
_FIELD = re.compile(r"^    (\w+): ")


def _cell(text: str) -> str:
    return " ".join(text.replace("|", "\\|").split())


def setting_sections() -> list[tuple[str, list[str]]]:
    """The settings in the order and under the headings of settings.py's `# -- x --` lines."""
    source = Path(__file__).resolve().parents[1].joinpath("settings.py").read_text("utf-8")
    sections: list[tuple[str, list[str]]] = []
    for line in source.splitlines():
        if (m := _SECTION.match(line)) is not None:
            sections.append((m[1].strip(), []))
        elif (m := _FIELD.match(line)) is not None and m[1] in Settings.model_fields and sections:
            sections[-1][1].append(m[1])
    return sections


def _default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        value = field.default_factory()  # type: ignore[call-arg]
    elif field.default is PydanticUndefined:
        return "required"
    else:
        value = field.default
    if value is None or value == []:
        return "unset"
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _type(annotation: Any) -> str:
    """A setting's type as an operator reads it: `str | None`, `one of a, b`, `list of str`."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Literal:
        return "one of " + ", ".join(f"`{a}`" for a in args)
    if origin is Annotated:
        return _type(args[0])
    if origin in (Union, UnionType):
        return " | ".join(_type(a) for a in args)
    if origin is list:
        return f"list of {_type(args[0])}"
    if annotation is type(None):
        return "None"
    if annotation is SecretStr:
        return "secret"
    return getattr(annotation, "__name__", str(annotation))


def configuration_page() -> str:
    lines = [
        "# Configuration",
        "",
        GENERATED,
        "",
        "Every process reads its configuration from `SKYRA_*` environment variables, and only",
        "from them (in Kubernetes: the ConfigMap and the Secrets of `k8s/`). An invalid value",
        "stops the process at start with the variable's name and exit code 2",
        "(`invalid configuration: SKYRA_MAX_NUM_SEQS: Input should be a valid integer`); a",
        "variable that no setting reads is logged as `unknown_setting` with the nearest known",
        "name. Lists are comma-separated. Object-storage credentials come from the standard AWS",
        "chain (environment, web identity, instance profile), never from these settings.",
        "",
    ]
    for title, names in setting_sections():
        lines += [f"## {title[0].upper() + title[1:]}", ""]
        lines += ["| Variable | Type | Default | Meaning |", "| --- | --- | --- | --- |"]
        for name in names:
            field = Settings.model_fields[name]
            aliases = ""
            alias = field.validation_alias
            if alias is not None and hasattr(alias, "choices"):
                old = [str(a) for a in alias.choices if str(a) != f"SKYRA_{name.upper()}"]
                old = [a for a in old if a.startswith("SKYRA_")]
                aliases = f" (also read as `{'`, `'.join(old)}`)" if old else ""
            kind, default = _cell(_type(field.annotation)), _cell(_default(field))
            meaning = _cell(field.description or "") + aliases
            lines.append(f"| `SKYRA_{name.upper()}` | {kind} | {default} | {meaning} |")
        lines.append("")
    return "\n".join(lines)


def _schema_type(prop: dict[str, Any]) -> str:
    if "$ref" in prop:
        return str(prop["$ref"]).rsplit("/", 1)[-1]
    if "anyOf" in prop:
        return " or ".join(_schema_type(p) for p in prop["anyOf"])
    if "const" in prop:
        return f"`{prop['const']}`"
    if "enum" in prop:
        return " / ".join(f"`{v}`" for v in prop["enum"])
    kind = prop.get("type", "any")
    if kind == "array":
        return f"list of {_schema_type(prop.get('items', {}))}"
    return str(kind)


def _properties_table(schema: dict[str, Any]) -> list[str]:
    required = set(schema.get("required", []))
    lines = ["| Field | Type | Required | Meaning |", "| --- | --- | --- | --- |"]
    for name, prop in schema.get("properties", {}).items():
        lines.append(
            f"| `{name}` | {_cell(_schema_type(prop))} | {'yes' if name in required else ''} "
            f"| {_cell(prop.get('description', ''))} |"
        )
    return lines


def schemas_page() -> str:
    lines = [
        "# Message schemas",
        "",
        GENERATED,
        "",
        "Every message that crosses a process boundary is a pydantic model; its JSON Schema is",
        f"committed under [`schemas/`]({SOURCE}/schemas) (`make schemas` regenerates them, and a",
        "test fails when one is stale). The tables below are the same schemas, rendered.",
        "",
    ]
    for filename, schema in json_schemas().items():
        title = filename.split(".")[0]
        lines += [
            f"## {title}",
            "",
            _cell(schema.get("description", "")),
            "",
            f"Schema: [`schemas/{filename}`]({SOURCE}/schemas/{filename})",
            "",
            *_properties_table(schema),
            "",
        ]
        for name, sub in sorted(schema.get("$defs", {}).items()):
            if "properties" not in sub:
                continue
            lines += [f"### {title}: {name}", "", _cell(sub.get("description", "")), ""]
            lines += [*_properties_table(sub), ""]
    return "\n".join(lines)


def http_api_page() -> str:
    spec = openapi_spec()
    lines = [
        "# HTTP API reference",
        "",
        GENERATED,
        "",
        "Rendered from the committed OpenAPI document ([`openapi.json`](../openapi.json),",
        f"version {spec['info']['version']}), which documents every route a deployment may serve",
        "(the jobs routes only where jobs are on). See [the API](../processes/api.md) for how",
        "to use it.",
        "",
    ]
    for path, operations in spec["paths"].items():
        for method, op in operations.items():
            lines += [f"## `{method.upper()} {path}`", "", _cell(op.get("summary", "")), ""]
            description = op.get("description", "").strip()
            if description:
                lines += [description, ""]
            lines += ["| Status | Meaning |", "| --- | --- |"]
            for status, answer in op.get("responses", {}).items():
                lines.append(f"| {status} | {_cell(answer.get('description', ''))} |")
            lines.append("")
    return "\n".join(lines)


def reference_pages() -> dict[Path, str]:
    return {
        REFERENCE / "configuration.md": configuration_page() + "\n",
        REFERENCE / "schemas.md": schemas_page() + "\n",
        REFERENCE / "http-api.md": http_api_page() + "\n",
    }
