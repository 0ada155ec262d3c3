"""Signed verdict receipts: a C2PA manifest that binds our verdict to the upload's exact bytes,
so that anyone who later holds the video can check which detector said what about it.

Why C2PA, and why this shape (docs/receipts.md has the whole reasoning):
- C2PA 2.x has no standard assertion for a third party's detection result, but allows
  entity-specific labels (a reverse-domain prefix): the verdict goes in one such assertion,
  under the platform's own label (`SKYRA_RECEIPT_ASSERTION_LABEL`), shaped by
  `ReceiptAssertion` (schemas/receipt_assertion.v1.schema.json).
- The manifest is hard-bound to the upload's bytes (the library's data hash: a BMFF hash for
  MP4 and MOV), and kept beside it as a sidecar (`.c2pa`): the upload is never rewritten.
- The upload is the manifest's `parentOf` ingredient, opened (`c2pa.opened`): when it carries
  its own active manifest, that manifest becomes the ingredient's, so the creator's provenance
  and our finding chain together and both are validated on reading.
- Signing and validation are the reference implementation's (c2pa-python, c2pa-rs), never
  ours: the signature, the hash binding and the certificate rules are the hard part.

Checked by `verify_receipt`: `valid` (signature and binding hold, the signer chains to a
given trust anchor), `untrusted` (they hold, but the signer is not one of the anchors), or
`invalid` (the binding or the signature fails: a changed byte, another video, a damaged
receipt).
"""

from __future__ import annotations

import io
import json
import uuid
from dataclasses import dataclass, field
from typing import IO, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from skyra_stream import __version__
from skyra_stream.messages import Artifact, Verdict

DEFAULT_ASSERTION_LABEL = "org.skyra-stream.verdict"
UPLOAD_INGREDIENT = "upload"
ReceiptState = Literal["valid", "untrusted", "invalid"]
Algorithm = Literal["es256", "ed25519"]


class ReceiptError(ValueError):
    """The receipt cannot be made or read; the message says why (a key that does not match
    its certificate, an expired certificate, a format C2PA does not bind)."""


class ReceiptBox(BaseModel):
    """Where on the frame, normalised to 0..1. An object, not an array: C2PA's JSON report
    of a CBOR array of floats came back as an empty string (c2pa-python 0.38)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    x1: float
    y1: float
    x2: float
    y2: float


class ReceiptArtifact(BaseModel):
    """One artifact as the receipt carries it: what, when, where."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str
    start_s: float | None
    end_s: float | None
    bbox: ReceiptBox | None = Field(description="Null: the whole frame, or not given.")


class ReceiptAssertion(BaseModel):
    """The verdict, as the receipt's own assertion carries it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = 1
    event_id: str = Field(description="The verdict's event: a reused verdict's own event.")
    content_sha256: str | None = Field(description="SHA-256 of the upload the verdict is about.")
    label: Literal["fake", "real"] | None
    status: str
    fake_probability: float | None = Field(description="Calibrated, as the verdict says.")
    fake_probability_raw: float | None = Field(description="The model's own.")
    model_name: str
    model_revision: str | None
    artifacts: list[ReceiptArtifact]
    action: str | None = Field(description="The policy's action; null without a policy.")
    policy_id: str | None
    policy_version: str | None
    verdict_created_at: str
    detector: str = Field(default=f"skyra-stream {__version__}")


def assertion_of(verdict: Verdict) -> ReceiptAssertion:
    decision = verdict.decision
    return ReceiptAssertion(
        event_id=verdict.event_id,
        content_sha256=verdict.content_sha256,
        label=verdict.label,
        status=verdict.status,
        fake_probability=verdict.fake_probability,
        fake_probability_raw=verdict.fake_probability_raw,
        model_name=verdict.model.name,
        model_revision=verdict.model.revision,
        artifacts=[_artifact(a) for a in verdict.artifacts],
        action=decision.action if decision else None,
        policy_id=decision.policy_id if decision else None,
        policy_version=decision.policy_version if decision else None,
        verdict_created_at=verdict.created_at.isoformat(),
    )


def _artifact(artifact: Artifact) -> ReceiptArtifact:
    box = artifact.bbox
    return ReceiptArtifact(
        type=artifact.type,
        start_s=artifact.start_s,
        end_s=artifact.end_s,
        bbox=ReceiptBox(x1=box[0], y1=box[1], x2=box[2], y2=box[3]) if box else None,
    )


@dataclass(frozen=True)
class Receipt:
    manifest: bytes  # the sidecar (.c2pa): a C2PA manifest store, not embedded
    manifest_id: str  # the active manifest's label (urn:c2pa:...)


@dataclass(frozen=True)
class ReceiptCheck:
    state: ReceiptState
    codes: list[str] = field(default_factory=list)  # C2PA validation codes behind the state
    assertion: ReceiptAssertion | None = None
    manifest_id: str | None = None
    ingredient_manifest: str | None = None  # the upload's own manifest, when it had one
    signer: str | None = None


class ReceiptSigner:
    """Signs receipts with the platform's key and certificate chain (PEM; the chain: the
    signing certificate first). A key that does not match its certificate, or a certificate
    not valid now, fails here, at start, with the library's reason."""

    def __init__(
        self,
        key_pem: bytes,
        chain_pem: bytes,
        *,
        label: str = DEFAULT_ASSERTION_LABEL,
        algorithm: Algorithm = "es256",
    ) -> None:
        import c2pa  # noqa: PLC0415 - native library, loaded only where receipts are signed

        self.label = label
        try:
            self._signer = c2pa.Signer.from_info(
                c2pa.C2paSignerInfo(algorithm.encode(), chain_pem, key_pem, None)
            )
        except Exception as exc:
            raise ReceiptError(f"the receipt key and certificate are not usable: {exc}") from None

    def check(self, probe: bytes) -> None:
        """Sign once for `probe` (a small MP4) and fail with the reason if signing cannot
        work: a key that does not match the certificate, an expired certificate."""
        self.sign(io.BytesIO(probe), None)

    def sign(self, upload: IO[bytes], verdict: Verdict | None, fmt: str = "video/mp4") -> Receipt:
        """A receipt for the upload's bytes carrying `verdict` (None: an empty assertion, for
        `check`)."""
        import c2pa  # noqa: PLC0415

        data = json.loads(assertion_of(verdict).model_dump_json()) if verdict else {}
        ours = {"label": self.label, "data": data}
        # Our own label for the manifest, so that its id is known without reading it back
        # (which would hash the whole upload a second time).
        manifest_id = f"urn:c2pa:{uuid.uuid4()}"
        manifest: dict[str, Any] = {
            "label": manifest_id,
            "claim_generator_info": [{"name": "skyra-stream", "version": __version__}],
            "assertions": [ours],
        }
        # An upload with its own manifest gets an update manifest: that manifest becomes its
        # one parent ingredient, the content is untouched, and the receipt binds to these
        # bytes. Any other upload is opened as the parent ingredient.
        update = _has_manifest(upload, fmt)
        if not update:
            opened = {"action": "c2pa.opened", "parameters": {"ingredientIds": [UPLOAD_INGREDIENT]}}
            manifest["assertions"] = [
                {"label": "c2pa.actions", "data": {"actions": [opened]}},
                ours,
            ]
        try:
            with c2pa.Builder(manifest) as builder:
                builder.set_no_embed()
                if update:
                    builder.set_intent(c2pa.C2paBuilderIntent.UPDATE)
                else:
                    upload.seek(0)
                    builder.add_ingredient(
                        {"title": "upload", "relationship": "parentOf", "label": UPLOAD_INGREDIENT},
                        fmt,
                        upload,
                    )
                upload.seek(0)
                store = builder.sign(self._signer, fmt, upload, io.BytesIO())
        except Exception as exc:
            raise ReceiptError(f"signing failed: {exc}") from None
        if not store:
            raise ReceiptError("signing produced no manifest")
        return Receipt(bytes(store), manifest_id)


def _has_manifest(upload: IO[bytes], fmt: str) -> bool:
    """Whether the upload carries a C2PA manifest of its own (valid or not)."""
    import c2pa  # noqa: PLC0415

    try:
        upload.seek(0)
        c2pa.Reader(fmt, upload)
        return True
    except Exception:
        return False
    finally:
        upload.seek(0)


def verify_receipt(
    upload: IO[bytes],
    receipt: bytes,
    *,
    trust_anchors_pem: str | None = None,
    label: str = DEFAULT_ASSERTION_LABEL,
    fmt: str = "video/mp4",
) -> ReceiptCheck:
    """Check `receipt` against the upload's bytes with the reference implementation."""
    import c2pa  # noqa: PLC0415

    settings: dict[str, Any] = {"verify": {"verify_trust": True}}
    if trust_anchors_pem:
        settings["trust"] = {"trust_anchors": trust_anchors_pem}
    try:
        upload.seek(0)
        reader = c2pa.Reader(
            fmt, upload, manifest_data=receipt, context=c2pa.Context.from_dict(settings)
        )
        report = json.loads(reader.json())
    except Exception as exc:
        return ReceiptCheck("invalid", [f"unreadable: {str(exc)[:300]}"])
    codes = [str(s.get("code")) for s in report.get("validation_status", []) or []]
    active_id = report.get("active_manifest")
    active = (report.get("manifests") or {}).get(active_id, {})
    state: ReceiptState
    validation = str(report.get("validation_state", "Invalid"))
    if validation == "Trusted":
        state = "valid"
    elif validation == "Valid":
        state = "untrusted"
    else:
        state = "invalid"
    assertion = None
    for item in active.get("assertions", []):
        if item.get("label") == label:
            try:
                assertion = ReceiptAssertion.model_validate(item.get("data"))
            except ValueError:
                codes.append("receipt.assertion.malformed")
                state = "invalid"
    if assertion is None and state != "invalid":
        codes.append("receipt.assertion.missing")
        state = "invalid"
    ingredient = next(
        (
            i.get("active_manifest")
            for i in active.get("ingredients", [])
            if i.get("active_manifest")
        ),
        None,
    )
    signer = (active.get("signature_info") or {}).get("common_name")
    return ReceiptCheck(state, codes, assertion, active_id, ingredient, signer)


# -- the worker's receipts --------------------------------------------------------------------

ReceiptMode = Literal["none", "all", "fake", "restricted"]
C2PA_SIDECAR_TYPE = "application/c2pa"


def receipt_wanted(mode: ReceiptMode, verdict: Verdict) -> bool:
    """Whether the tenant's policy asks for a receipt of this verdict."""
    if mode == "all":
        return True
    if mode == "fake":
        return verdict.label == "fake"
    if mode == "restricted":
        return verdict.decision is not None and verdict.decision.action == "block"
    return False


class ReceiptFailedError(RuntimeError):
    """No receipt for this verdict (the verdict itself still goes out)."""


@dataclass
class ReceiptWriter:
    """Makes the worker's receipts: the upload fetched again (its bytes were released after
    decoding, and a verdict reused without a download never had them), checked against the
    verdict's SHA-256, signed, and stored beside it (`<key>.c2pa`) or under `prefix` in
    `bucket`. Runs on the I/O pool, never on the engine's thread."""

    signer: ReceiptSigner
    fetch: Any  # media.fetch.Fetcher
    put: Any  # media.staging.ObjectWriter.put(bucket, key, body, content_type) -> uri
    bucket: str | None = None
    prefix: str = ""

    def location(self, upload_uri: str) -> tuple[str, str]:
        bucket, _, key = upload_uri.removeprefix("s3://").partition("/")
        if self.bucket is None:
            return bucket, f"{key}.c2pa"
        return self.bucket, f"{self.prefix}{bucket}/{key}.c2pa"

    def write(self, verdict: Verdict) -> Verdict:
        uri = verdict.source.uri
        if not uri.startswith("s3://"):
            raise ReceiptFailedError(f"no receipt for {uri[:80]}: not an object in a bucket")
        fetched = self.fetch(uri, version_id=verdict.source.version_id)
        try:
            digest = getattr(fetched, "sha256", None)
            if verdict.content_sha256 and digest and digest != verdict.content_sha256:
                raise ReceiptFailedError(
                    "the object changed since its verdict (SHA-256 differs): no receipt"
                )
            receipt = self.signer.sign(fetched.body, verdict)
        finally:
            fetched.close()
        bucket, key = self.location(uri)
        stored = self.put(bucket, key, receipt.manifest, C2PA_SIDECAR_TYPE)
        return verdict.model_copy(
            update={"receipt_uri": stored, "receipt_manifest_id": receipt.manifest_id}
        )
