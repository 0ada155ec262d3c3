"""Webhook delivery against real HTTP receivers on loopback (the guard, the signature, the
retry schedule, refusals before any connection), and async jobs end to end on the real
stack (Tansu, moto, Redis, a worker on the fake engine, `skyra-stream webhooks`)."""

from __future__ import annotations

import base64
import ipaddress
import json
from pathlib import Path

import pytest
from standardwebhooks.webhooks import Webhook

from skyra_stream.delivery.callbacks import CallbackRefused, check_callback
from skyra_stream.delivery.webhooks import TenantHooks, WebhookConfig, WebhookSender
from skyra_stream.devstack.receiver import Receiver

SECRET = "whsec_" + base64.b64encode(b"s" * 32).decode()
LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)


def sender(**overrides: object) -> WebhookSender:
    values: dict[str, object] = {
        "tenants": {"alpha": TenantHooks(secret=SECRET, hosts=["127.0.0.1", "localhost"])},
        "allowed_networks": LOOPBACK,
        "http_hosts": ("127.0.0.1", "localhost"),
        "max_attempts": 4,
        "backoff_initial_s": 0.01,
        "backoff_max_s": 0.02,
        "read_timeout_s": 1.0,
    }
    values.update(overrides)
    return WebhookSender(WebhookConfig(**values))  # type: ignore[arg-type]


@pytest.fixture
def receiver() -> Receiver:
    with Receiver() as r:
        yield r


def test_a_webhook_is_signed_as_the_standard_says(receiver: Receiver) -> None:
    result = sender().deliver(receiver.url(), "alpha", "msg_ev-1", "verdict.ready", {"a": 1})
    assert (result.delivered, result.attempts) == (True, 1)
    [got] = receiver.received
    # The reference library's own verifier accepts it.
    payload = Webhook(SECRET).verify(got.body, got.headers)
    assert payload["type"] == "verdict.ready"
    assert payload["data"] == {"a": 1}
    assert got.headers["webhook-id"] == "msg_ev-1"
    with pytest.raises(Exception):  # noqa: B017, PT011 - any verification failure
        Webhook("whsec_" + base64.b64encode(b"x" * 32).decode()).verify(got.body, got.headers)


def test_a_flaky_receiver_gets_the_same_id_on_every_attempt(receiver: Receiver) -> None:
    result = sender().deliver(receiver.url("/flaky/3"), "alpha", "msg_ev-2", "verdict.ready", {})
    assert (result.delivered, result.attempts) == (True, 4)
    assert receiver.ids() == ["msg_ev-2"] * 4


def test_a_receiver_that_never_answers_ends_in_a_failure(receiver: Receiver) -> None:
    result = sender(max_attempts=2, read_timeout_s=0.3).deliver(
        receiver.url("/hang"), "alpha", "msg_ev-3", "verdict.ready", {}
    )
    assert (result.delivered, result.attempts) == (False, 2)
    assert "timed out" in result.detail


def test_a_name_that_does_not_resolve_is_retried_then_fails_with_the_reason() -> None:
    # Once an exception that escaped the retries: no delivery and no webhook_failed record.
    def nowhere(host: str, port: int) -> list[str]:
        raise OSError("Name or service not known")

    retries: list[tuple[int, str]] = []
    result = WebhookSender(sender().config, resolver=nowhere).deliver(
        "https://localhost/h",
        "alpha",
        "msg_ev-9",
        "verdict.ready",
        {},
        on_retry=lambda n, why: retries.append((n, why)),
    )
    assert (result.delivered, result.attempts) == (False, 4)
    assert "does not resolve" in result.detail
    assert [n for n, _ in retries] == [1, 2, 3]
    assert all("does not resolve" in why for _, why in retries)


def test_a_redirect_is_not_followed(receiver: Receiver) -> None:
    with Receiver() as elsewhere:
        redirect = receiver.url(f"/redirect?to={elsewhere.url()}")
        result = sender().deliver(redirect, "alpha", "msg_ev-4", "verdict.ready", {})
        assert (result.delivered, result.attempts) == (False, 1)
        assert "redirect" in result.detail
        assert elsewhere.connections == 0


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://127.0.0.1:{port}/ok", "plain http"),  # not a development host here
        ("https://evil.example/ok", "not on the tenant's allowlist"),
        ("https://localhost:{port}/ok", "loopback"),  # an allowed name resolving to loopback
        ("https://127.0.0.1:{port}/ok", "loopback"),
        ("ftp://127.0.0.1/ok", "scheme"),
        ("https://user:pw@localhost/ok", "credentials"),
    ],
)
def test_a_refused_callback_is_never_connected_to(receiver: Receiver, url: str, why: str) -> None:
    strict = sender(allowed_networks=(), http_hosts=())
    result = strict.deliver(
        url.format(port=receiver.port), "alpha", "msg_ev-5", "verdict.ready", {}
    )
    assert not result.delivered
    assert why in result.detail
    assert receiver.connections == 0


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("169.254.169.254", "metadata"),
        ("10.0.0.7", "private"),
        ("192.168.1.1", "private"),
        ("100.64.0.1", "not a public"),
        ("224.0.0.1", "multicast"),
        ("::1", "loopback"),
        ("fd00:ec2::254", "metadata"),
        ("0.0.0.0", "unspecified"),
    ],
)
def test_names_that_resolve_to_refused_addresses(address: str, why: str) -> None:
    with pytest.raises(CallbackRefused, match=why):
        check_callback(
            "https://hooks.example.com/x",
            ["hooks.example.com"],
            resolver=lambda host, port: ["93.184.216.34", address],  # any bad one refuses
        )


def test_a_checked_public_name_is_pinned_to_the_address_checked() -> None:
    target = check_callback(
        "https://api.hooks.example.com:8443/in?x=1",
        ["*.hooks.example.com"],
        resolver=lambda host, port: ["93.184.216.34"],
    )
    assert (target.ip, target.host, target.port, target.path) == (
        "93.184.216.34",
        "api.hooks.example.com",
        8443,
        "/in?x=1",
    )


def test_a_tenant_without_a_secret_gets_no_webhook(receiver: Receiver) -> None:
    result = sender().deliver(receiver.url(), "beta", "msg_ev-6", "verdict.ready", {})
    assert not result.delivered
    assert receiver.connections == 0


def test_the_tenants_file_refuses_a_secret_that_is_not_one(tmp_path: Path) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="Standard Webhooks secret"):
        TenantHooks(secret="not-a-secret", hosts=["a"])
    assert json.loads(TenantHooks(secret=SECRET, hosts=["a"]).model_dump_json())["hosts"]
