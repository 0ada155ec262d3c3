"""The house by stage, checked on the import graph (grimp, the library behind import-linter)
and by importing in a fresh interpreter:

    wings (media, model, decisions, evaluation) and the top modules (analysis, pipeline,
    messages, errors, ...) <- adapters (api, consumers, producers) <- composition roots
    (runtime, cli, devstack)

- media, model and delivery import nothing from decisions, the pipeline, the adapters,
  runtime or the CLI; decisions import no adapter or composition root either;
- nothing below the composition roots imports runtime or the CLI;
- Kafka is imported only by its adapters (consumers, producers, and the dev stack's broker),
  FastAPI only by `api`, vLLM only by `model.vllm_engine`;
- `Settings` is read only where the process is put together: the composition roots and the
  API's app factory;
- nothing that ships or runs imports the tests; the message, schema and analysis modules load
  without vLLM or torch; the wheel installs only `skyra_stream`.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).parents[1]
PKG = ROOT / "skyra_stream"
WINGS = (
    "skyra_stream.media",
    "skyra_stream.model",
    "skyra_stream.delivery",
    "skyra_stream.operations",
)
ADAPTERS = ("skyra_stream.api", "skyra_stream.consumers", "skyra_stream.producers")
ROOTS = (
    "skyra_stream.runtime",
    "skyra_stream.cli",
    "skyra_stream.cli_offline",
    "skyra_stream.devstack",
)
SETTINGS_READERS = (*ROOTS, "skyra_stream.api.app")
MAX_TOP_MODULES = 16


def _under(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph(
        "skyra_stream", "campaigns", "benchmarks", "tests", include_external_packages=True
    )


def _violations(
    graph: grimp.ImportGraph, sources: set[str], forbidden: tuple[str, ...]
) -> list[tuple[str, str]]:
    return sorted(
        (m, imported)
        for m in sources
        for imported in graph.find_modules_directly_imported_by(m)
        if _under(imported, forbidden)
    )


def _package(graph: grimp.ImportGraph, *packages: str) -> set[str]:
    return {m for m in graph.modules if _under(m, packages)}


def test_at_most_sixteen_modules_sit_at_the_top() -> None:
    top = sorted(p.name for p in PKG.glob("*.py") if p.name != "__init__.py")
    assert "analysis.py" in top
    assert len(top) <= MAX_TOP_MODULES, top


def test_media_and_model_import_no_decision_pipeline_adapter_or_root(
    graph: grimp.ImportGraph,
) -> None:
    wings = _package(graph, *WINGS)
    assert "skyra_stream.media.decode" in wings
    assert "skyra_stream.model.vllm_engine" in wings
    assert "skyra_stream.delivery.webhooks" in wings
    forbidden = (
        "skyra_stream.decisions",
        "skyra_stream.analysis",
        "skyra_stream.pipeline",
        "skyra_stream.evaluation",
        *ADAPTERS,
        *ROOTS,
    )
    assert _violations(graph, wings, forbidden) == []


def test_decisions_import_no_pipeline_adapter_or_root(graph: grimp.ImportGraph) -> None:
    decisions = _package(graph, "skyra_stream.decisions")
    assert "skyra_stream.decisions.policy" in decisions
    forbidden = ("skyra_stream.analysis", "skyra_stream.pipeline", *ADAPTERS, *ROOTS)
    assert _violations(graph, decisions, forbidden) == []


def test_nothing_below_the_roots_imports_runtime_or_the_cli(graph: grimp.ImportGraph) -> None:
    below = {m for m in graph.modules if m.startswith("skyra_stream") and not _under(m, ROOTS)}
    assert "skyra_stream.consumers.ingest_loop" in below
    assert _violations(graph, below, ROOTS) == []


@pytest.mark.parametrize(
    ("library", "adapters"),
    [
        ("kafka", ("skyra_stream.consumers", "skyra_stream.producers", "skyra_stream.devstack")),
        ("fastapi", ("skyra_stream.api",)),
        ("starlette", ("skyra_stream.api",)),
        ("vllm", ("skyra_stream.model.vllm_engine",)),
    ],
)
def test_a_framework_is_imported_only_by_its_adapter(
    graph: grimp.ImportGraph, library: str, adapters: tuple[str, ...]
) -> None:
    importers = {
        m for m in graph.find_modules_that_directly_import(library) if m.startswith("skyra_stream")
    }
    assert importers, f"nothing imports {library}: the rule checks nothing"
    assert {m for m in importers if not _under(m, adapters)} == set()


def test_settings_are_read_only_where_the_process_is_put_together(
    graph: grimp.ImportGraph,
) -> None:
    readers = {
        m
        for m in graph.find_modules_that_directly_import("skyra_stream.settings")
        if m.startswith("skyra_stream")
    }
    assert "skyra_stream.runtime.configs" in readers
    assert {m for m in readers if not _under(m, SETTINGS_READERS)} == set()
    # The leaf: settings import no stage.
    own = {
        m
        for m in graph.find_modules_directly_imported_by("skyra_stream.settings")
        if m.startswith("skyra_stream")
    }
    assert own == set()


def test_adapters_import_no_root(graph: grimp.ImportGraph) -> None:
    adapters = _package(graph, *ADAPTERS)
    assert "skyra_stream.consumers.ingest_loop" in adapters
    assert _violations(graph, adapters, ROOTS) == []


def test_nothing_that_runs_imports_the_tests(graph: grimp.ImportGraph) -> None:
    shipped = _package(graph, "skyra_stream", "campaigns", "benchmarks")
    assert _violations(graph, shipped, ("tests",)) == []


def test_the_one_path_is_the_only_place_that_builds_verdicts(graph: grimp.ImportGraph) -> None:
    builders = {
        m
        for m in graph.modules
        if m.startswith("skyra_stream")
        and "skyra_stream.decisions.verdicts" in graph.find_modules_directly_imported_by(m)
    }
    # The pipeline builds dead letters for messages that never became a job, the review
    # loop and the review console for reviews they refuse; only the analysis path builds verdicts (and the
    # local runs format rejections with the same codes).
    assert "skyra_stream.analysis" in builders
    assert builders <= {
        "skyra_stream.analysis",
        "skyra_stream.pipeline",
        "skyra_stream.runtime.local",
        "skyra_stream.consumers.review_loop",
        "skyra_stream.consumers.review_console",  # annotations that cannot be reviews
        "skyra_stream.consumers.webhook_loop",  # webhook_failed records
    }


@pytest.mark.subprocess
def test_messages_schemas_and_the_analysis_path_load_without_vllm_or_torch() -> None:
    code = (
        "import sys\n"
        "for name in ('vllm', 'torch', 'transformers'):\n"
        "    sys.modules[name] = None  # any import of them now raises ImportError\n"
        "import skyra_stream.decisions.verdicts, skyra_stream.schemas, skyra_stream.analysis\n"
        "import skyra_stream.api.app, skyra_stream.model.fake_engine, skyra_stream.model.engine\n"
        "import skyra_stream.runtime.wiring\n"
        "from skyra_stream.schemas import json_schemas, openapi_spec\n"
        "assert json_schemas() and openapi_spec()['paths']\n"
        "print('ok')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


@pytest.mark.subprocess
def test_the_wheel_installs_only_the_skyra_stream_package(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    [wheel] = tmp_path.glob("skyra_stream-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/", 1)[0] for n in names if not n.split("/", 1)[0].endswith(".dist-info")}
    assert tops == {"skyra_stream"}
    for module in (
        "consumers/ingest_loop.py",
        "producers/outcomes.py",
        "media/decode.py",
        "model/vllm_engine.py",
        "decisions/policy.py",
        "runtime/wiring.py",
    ):
        assert f"skyra_stream/{module}" in names
