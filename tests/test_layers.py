"""The dependency rules of the layout, checked on the import graph (grimp, the library behind
import-linter) and by importing in a fresh interpreter:

    core (skyra_stream.*) <- Kafka adapters (consumers, producers) <- entry points (cli,
    runtime, devstack)

The core never imports an adapter or an entry point, nor Kafka; adapters never import an
entry point; nothing that ships or runs (the package, campaigns, benchmarks) imports tests;
and the message, schema and analysis modules load without vLLM or torch."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).parents[1]
ADAPTERS = ("skyra_stream.consumers", "skyra_stream.producers")
ENTRY = ("skyra_stream.cli", "skyra_stream.runtime", "skyra_stream.devstack")


def _under(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph(
        "skyra_stream", "campaigns", "benchmarks", "tests", include_external_packages=True
    )


def _violations(graph: grimp.ImportGraph, sources: set[str], forbidden: tuple[str, ...]) -> list:
    return sorted(
        (m, imported)
        for m in sources
        for imported in graph.find_modules_directly_imported_by(m)
        if _under(imported, forbidden)
    )


def test_the_core_imports_no_adapter_no_entry_point_and_no_kafka(graph: grimp.ImportGraph) -> None:
    core = {
        m for m in graph.modules if m.startswith("skyra_stream") and not _under(m, ADAPTERS + ENTRY)
    }
    assert "skyra_stream.analysis" in core
    assert "skyra_stream.consumers.worker" not in core
    assert _violations(graph, core, (*ADAPTERS, *ENTRY, "kafka")) == []


def test_adapters_import_no_entry_point(graph: grimp.ImportGraph) -> None:
    adapters = {m for m in graph.modules if _under(m, ADAPTERS)}
    assert "skyra_stream.consumers.worker" in adapters
    assert _violations(graph, adapters, ENTRY) == []


def test_nothing_that_runs_imports_the_tests(graph: grimp.ImportGraph) -> None:
    shipped = {m for m in graph.modules if _under(m, ("skyra_stream", "campaigns", "benchmarks"))}
    assert _violations(graph, shipped, ("tests",)) == []


def test_the_one_path_is_the_only_place_that_builds_verdicts(graph: grimp.ImportGraph) -> None:
    builders = {
        m
        for m in graph.modules
        if m.startswith("skyra_stream")
        and "skyra_stream.verdicts" in graph.find_modules_directly_imported_by(m)
    }
    # The pipeline builds dead letters for messages that never became a job, the review
    # loop for review events it refuses; only the analysis path builds verdicts (and the
    # CLI formats rejections with the same codes).
    assert builders <= {
        "skyra_stream.analysis",
        "skyra_stream.pipeline",
        "skyra_stream.cli",
        "skyra_stream.consumers.reviews",
    }


@pytest.mark.subprocess
def test_messages_schemas_and_the_analysis_path_load_without_vllm_or_torch() -> None:
    code = (
        "import sys\n"
        "for name in ('vllm', 'torch', 'transformers'):\n"
        "    sys.modules[name] = None  # any import of them now raises ImportError\n"
        "import skyra_stream.verdicts, skyra_stream.schemas, skyra_stream.analysis\n"
        "import skyra_stream.api.app, skyra_stream.testing, skyra_stream.inference\n"
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
    assert "skyra_stream/consumers/worker.py" in names
    assert "skyra_stream/producers/outcomes.py" in names
