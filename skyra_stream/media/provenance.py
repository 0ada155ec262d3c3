"""C2PA content credentials of an upload, read with the official library (`c2pa-python`).

A signed manifest that declares the video made by a model is evidence no detector can
match, and a manifest that fails validation is evidence of its own. Both feed the policy
(`skyra_stream.decisions.policy`), which may decide from them before the GPU is spent.

The upload is untrusted input, so:
- only ISO BMFF files (MP4, MOV: where C2PA embeds in video) are looked at, and only after
  walking their top-level boxes ourselves finds the C2PA `uuid` box. An upload without one,
  the common case, costs a few small reads and never reaches the library.
- a manifest box larger than `c2pa_max_manifest_bytes` is `invalid` unparsed.
- the library never goes to the network: remote manifests and OCSP are switched off, so a
  manifest cannot make the worker fetch a URL it names.
- whatever the library raises is `invalid` provenance with the reason, never a crash and
  never a dead letter by itself: the model still runs.
Validation hashes the whole file (the BMFF hash covers `mdat`), so its time grows with the
object, which `max_object_bytes` bounds like every other stage.
"""

from __future__ import annotations

import json
import struct
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final

import structlog

from skyra_stream.messages import Provenance, ProvenanceState

log = structlog.get_logger(__name__)

C2PA_BOX_UUID: Final = bytes.fromhex("d8fec3d61b0e483c92975828877ec481")
IPTC: Final = "http://cv.iptc.org/newscodes/digitalsourcetype/"
GENERATED_TERMS: Final = frozenset(
    {"trainedAlgorithmicMedia", "compositeWithTrainedAlgorithmicMedia"}
)
CAPTURED_TERMS: Final = frozenset({"digitalCapture", "computationalCapture"})
MAX_TOP_LEVEL_BOXES: Final = 4096
MAX_PROBLEM_CHARS: Final = 300


@dataclass(frozen=True, slots=True)
class ProvenanceConfig:
    max_manifest_bytes: int = 4 << 20
    trust_anchors_pem: str | None = None

    @classmethod
    def from_paths(cls, max_manifest_bytes: int, trust_anchors: Path | None) -> ProvenanceConfig:
        pem = trust_anchors.read_text(encoding="ascii") if trust_anchors else None
        return cls(max_manifest_bytes, pem)


def find_c2pa_box(body: IO[bytes]) -> int | None:
    """Size of the C2PA manifest box of a BMFF file, or None when it has none (or is not
    BMFF at all). Reads only box headers; leaves `body` at its start."""
    try:
        return _walk(body)
    finally:
        body.seek(0)


def _walk(body: IO[bytes]) -> int | None:
    body.seek(0)
    offset = 0
    for n in range(MAX_TOP_LEVEL_BOXES):
        header = body.read(8)
        if len(header) < 8:
            return None
        size, kind = struct.unpack(">I4s", header)
        if n == 0 and kind != b"ftyp":
            return None  # not ISO BMFF
        head = 8
        if size == 1:
            large = body.read(8)
            if len(large) < 8:
                return None
            size, head = struct.unpack(">Q", large)[0], 16
        if kind == b"uuid" and body.read(16) == C2PA_BOX_UUID:
            return size if size else None
        if size == 0 or size < head:
            return None  # runs to the end of the file, or damaged: nothing after it
        offset += size
        body.seek(offset)
    return None


class ProvenanceReader:
    """Reads one upload's provenance; safe to share between decode threads (each thread
    keeps its own library context)."""

    def __init__(self, config: ProvenanceConfig | None = None) -> None:
        self.config = config or ProvenanceConfig()
        self._local = threading.local()

    @classmethod
    def from_paths(cls, max_manifest_bytes: int, trust_anchors: Path | None) -> ProvenanceReader:
        return cls(ProvenanceConfig.from_paths(max_manifest_bytes, trust_anchors))

    def read(self, body: IO[bytes]) -> Provenance:
        """The provenance of the file in `body` (seekable); `body` is left at its start."""
        try:
            return self._read(body)
        finally:
            body.seek(0)

    def _read(self, body: IO[bytes]) -> Provenance:
        try:
            box = find_c2pa_box(body)
        except (OSError, ValueError, struct.error):
            return Provenance(present=False, state="absent")
        if box is None:
            return Provenance(present=False, state="absent")
        if box > self.config.max_manifest_bytes:
            return _invalid(
                f"manifest_too_large: {box} bytes, the limit is {self.config.max_manifest_bytes}"
            )
        import c2pa  # noqa: PLC0415 - a native library, loaded on the first manifest

        try:
            reader = c2pa.Reader("video/mp4", body, context=self._context())
            try:
                store = json.loads(reader.json())
            finally:
                reader.close()
        except Exception as exc:  # C2paError mostly; a damaged manifest may raise anything
            log.info("provenance_unreadable", reason=str(exc)[:MAX_PROBLEM_CHARS])
            return _invalid(f"unreadable: {exc}")
        return _from_store(store)

    def _context(self) -> Any:
        ctx = getattr(self._local, "context", None)
        if ctx is None:
            import c2pa  # noqa: PLC0415

            settings: dict[str, Any] = {
                "verify": {"remote_manifest_fetch": False, "ocsp_fetch": False},
            }
            if self.config.trust_anchors_pem:
                settings["trust"] = {"trust_anchors": self.config.trust_anchors_pem}
            ctx = self._local.context = c2pa.Context.from_dict(settings)
        return ctx


def _invalid(problem: str) -> Provenance:
    return Provenance(present=True, state="invalid", problems=[problem[:MAX_PROBLEM_CHARS]])


def _from_store(store: dict[str, Any]) -> Provenance:
    manifests = store.get("manifests") or {}
    active = manifests.get(store.get("active_manifest") or "") or {}
    codes = [
        str(s.get("code"))[:MAX_PROBLEM_CHARS]
        for s in store.get("validation_status") or ()
        if isinstance(s, dict)
    ]
    state: ProvenanceState
    validation = str(store.get("validation_state") or "").casefold()
    if validation == "trusted":
        state = "trusted"
    elif validation == "valid":
        state = "untrusted"
    else:
        state = "invalid"
    if not active:
        state, codes = "invalid", [*codes, "no_active_manifest"]
    terms = _source_types(active)
    names = {t.rsplit("/", 1)[-1] for t in terms}
    generated = bool(names & GENERATED_TERMS)
    return Provenance(
        present=True,
        state=state,
        problems=codes,
        claim_generator=_generator(active),
        signer=_signer(active),
        digital_source_type=terms[0] if terms else None,
        declares_generated=generated,
        declares_captured=not generated and bool(names & CAPTURED_TERMS),
    )


def _source_types(manifest: dict[str, Any]) -> list[str]:
    """IPTC digital source types the manifest's assertions declare, actions first."""
    found: list[str] = []
    for assertion in manifest.get("assertions") or ():
        if not isinstance(assertion, dict):
            continue
        data = assertion.get("data")
        label = str(assertion.get("label", ""))
        if label.startswith("c2pa.actions") and isinstance(data, dict):
            for action in data.get("actions") or ():
                if isinstance(action, dict) and isinstance(action.get("digitalSourceType"), str):
                    found.append(action["digitalSourceType"])
        elif isinstance(data, dict):  # IPTC metadata assertions
            value = data.get("Iptc4xmpExt:DigitalSourceType")
            if isinstance(value, str):
                found.append(value)
    return found


def _generator(manifest: dict[str, Any]) -> str | None:
    infos = manifest.get("claim_generator_info")
    if isinstance(infos, list) and infos and isinstance(infos[0], dict):
        name, version = infos[0].get("name"), infos[0].get("version")
        if isinstance(name, str):
            return f"{name} {version}"[:200] if isinstance(version, str) else name[:200]
    generator = manifest.get("claim_generator")
    return generator[:200] if isinstance(generator, str) else None


def _signer(manifest: dict[str, Any]) -> str | None:
    info = manifest.get("signature_info")
    if not isinstance(info, dict):
        return None
    parts = [info.get("common_name"), info.get("issuer")]
    text = ", ".join(p for p in parts if isinstance(p, str))
    return text[:200] or None
