"""Sign videos with C2PA content credentials from a throwaway certificate chain.

What the tests, the demo and the provenance benchmark use to make the uploads a platform
receives from generators and cameras that sign their output. The chain (a root CA and an
end-entity certificate with the extensions C2PA requires of a signer) is made on the spot
and is trusted by nobody unless its root is given to `SKYRA_C2PA_TRUST_ANCHORS`.
"""

from __future__ import annotations

import datetime
import io
from dataclasses import dataclass
from typing import Any, Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from skyra_stream.media.provenance import IPTC

GENERATED: Final = IPTC + "trainedAlgorithmicMedia"
CAPTURED: Final = IPTC + "digitalCapture"


@dataclass(frozen=True, slots=True)
class SigningChain:
    root_pem: bytes
    chain_pem: bytes  # end entity, then the root
    key_pem: bytes


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "skyra-stream test"),
        ]
    )


def _usage(*, signer: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=signer,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=not signer,
        crl_sign=not signer,
        encipher_only=False,
        decipher_only=False,
    )


def make_chain(
    common_name: str = "Test Video Generator", *, expired: bool = False, ed25519: bool = False
) -> SigningChain:
    """A root and a signing certificate under it; `expired`: the signing certificate's
    validity ended yesterday (the root's has not); `ed25519`: an Ed25519 signing key (the
    root's is ECDSA P-256 either way)."""
    now = datetime.datetime.now(datetime.UTC)
    valid = (now - datetime.timedelta(days=1), now + datetime.timedelta(days=30))
    leaf_valid = (now - datetime.timedelta(days=30), now - datetime.timedelta(days=1))
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = (
        x509.CertificateBuilder()
        .subject_name(_name("Test Root CA"))
        .issuer_name(_name("Test Root CA"))
        .public_key(root_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid[0])
        .not_valid_after(valid[1])
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_usage(signer=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), False)
        .sign(root_key, hashes.SHA256())
    )
    key: ec.EllipticCurvePrivateKey | Ed25519PrivateKey = (
        Ed25519PrivateKey.generate() if ed25519 else ec.generate_private_key(ec.SECP256R1())
    )
    leaf = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(root.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before((leaf_valid if expired else valid)[0])
        .not_valid_after((leaf_valid if expired else valid)[1])
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(signer=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), False
        )
        .sign(root_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    return SigningChain(
        root_pem=root.public_bytes(pem),
        chain_pem=leaf.public_bytes(pem) + root.public_bytes(pem),
        key_pem=key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    )


def sign_mp4(
    video: bytes,
    chain: SigningChain,
    *,
    digital_source_type: str | None = GENERATED,
    generator: str = "test-generator",
) -> bytes:
    """`video` (MP4 bytes) with an embedded, signed manifest declaring how it was made."""
    import c2pa  # noqa: PLC0415

    action: dict[str, Any] = {"action": "c2pa.created"}
    if digital_source_type:
        action["digitalSourceType"] = digital_source_type
    manifest = {
        "claim_generator_info": [{"name": generator, "version": "1.0"}],
        "title": "upload.mp4",
        "format": "video/mp4",
        "assertions": [{"label": "c2pa.actions", "data": {"actions": [action]}}],
    }
    signer = c2pa.Signer.from_info(
        c2pa.C2paSignerInfo(b"es256", chain.chain_pem, chain.key_pem, None)
    )
    out = io.BytesIO()
    with c2pa.Builder(manifest) as builder:
        builder.sign(signer, "video/mp4", io.BytesIO(video), out)
    return out.getvalue()


def tamper(signed: bytes) -> bytes:
    """The same file with one byte of its media changed after signing."""
    data = bytearray(signed)
    at = data.find(b"mdat")
    if at < 0:
        raise ValueError("no mdat box")
    data[at + 64] ^= 0xFF
    return bytes(data)


def garble_manifest(signed: bytes) -> bytes:
    """The same file with the inside of its manifest box overwritten by garbage."""
    data = bytearray(signed)
    at = data.find(b"jumb")
    if at < 0:
        raise ValueError("no manifest")
    data[at + 16 : at + 400] = b"A" * 384
    return bytes(data)
