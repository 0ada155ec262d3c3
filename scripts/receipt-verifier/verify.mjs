// An independent check of a skyra-stream verdict receipt: @trustnxt/c2pa-ts, a pure
// TypeScript C2PA implementation that shares no code with c2pa-rs (which skyra-stream signs
// and verifies with), reads the sidecar, validates it against the video's bytes, and prints
// the verdict it carries. Trust is checked here with Node's own X.509 code, because c2pa-ts
// does not validate certificate chains yet.
//
//   node verify.mjs VIDEO RECEIPT.c2pa [--trust anchors.pem] [--label org.skyra-stream.verdict]
//
// Prints one JSON object; exits 0 valid, 1 untrusted, 2 invalid (as `skyra-stream receipt
// verify` does).
import * as fs from 'node:fs/promises';
import { X509Certificate } from 'node:crypto';
import { BMFF } from '@trustnxt/c2pa-ts/asset';
import { SuperBox } from '@trustnxt/c2pa-ts/jumbf';
import { ManifestStore } from '@trustnxt/c2pa-ts/manifest';

// c2pa-ts reads ISO BMFF but only lists the HEIF brands; MP4 and MOV are the same box format.
for (const brand of ['isom', 'iso2', 'iso4', 'iso5', 'iso6', 'mp41', 'mp42', 'avc1', 'qt  ']) {
  BMFF.canReadBrands.add(brand);
}

function option(name, fallback) {
  const at = process.argv.indexOf(name);
  return at > 0 ? process.argv[at + 1] : fallback;
}

function pemBlocks(text) {
  return [...text.matchAll(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)].map(
    (m) => new X509Certificate(m[0]),
  );
}

// The signer's chain (leaf first) ends at one of the anchors: each certificate is issued and
// signed by the next, the last by an anchor (or is one).
function chainsToAnchor(chain, anchors) {
  for (let i = 0; i + 1 < chain.length; i++) {
    if (!chain[i].checkIssued(chain[i + 1]) || !chain[i].verify(chain[i + 1].publicKey)) {
      return false;
    }
  }
  const last = chain[chain.length - 1];
  return anchors.some(
    (anchor) =>
      anchor.fingerprint256 === last.fingerprint256 ||
      (last.checkIssued(anchor) && last.verify(anchor.publicKey)),
  );
}

const [video, receipt] = process.argv.slice(2);
const label = option('--label', 'org.skyra-stream.verdict');
const trust = option('--trust', null);
const report = { verifier: '@trustnxt/c2pa-ts', state: 'invalid', codes: [] };
try {
  const asset = new BMFF(await fs.readFile(video));
  const store = ManifestStore.read(SuperBox.fromBuffer(await fs.readFile(receipt)));
  const result = await store.validate(asset);
  const manifest = store.getActiveManifest();
  report.manifest_id = manifest.label;
  report.codes = result.statusEntries.filter((e) => !e.success).map((e) => e.code);
  const data = manifest.signature.signatureData;
  const chain = [data.certificate, ...data.chainCertificates].map(
    (cert) => new X509Certificate(Buffer.from(cert.rawData)),
  );
  report.signer = chain[0].subject.match(/CN=([^\n]+)/)?.[1] ?? chain[0].subject;
  const assertion = manifest.assertions.assertions.find((a) => a.label === label);
  report.verdict = assertion?.sourceBox?.contentBoxes?.[0]?.content ?? null;
  if (!result.isValid) {
    report.state = 'invalid';
  } else if (!report.verdict) {
    report.state = 'invalid';
    report.codes.push('receipt.assertion.missing');
  } else {
    const anchors = trust ? pemBlocks(await fs.readFile(trust, 'utf8')) : [];
    report.state = chainsToAnchor(chain, anchors) ? 'valid' : 'untrusted';
  }
} catch (error) {
  report.codes.push(`unreadable: ${error.message}`.slice(0, 300));
}
console.log(JSON.stringify(report));
process.exit({ valid: 0, untrusted: 1, invalid: 2 }[report.state]);
