"""Cost of a signed receipt per upload, against the decode the worker already does for it.

Receipts must never become the worker's bottleneck (target: under 0.1 of decode CPU per
upload). Both arms run on the same production-shaped uploads (benchmarks/uploads.py: a 15 s
1080p desktop export, a 20 s 1080p phone clip, a 60 s 720p re-encode, a 6 s 4K HEVC clip),
read from memory, one thread, CPU seconds (`time.process_time`), side by side in one run:

- decode: `sample_video` as the worker runs it (16 frames, unreferenced frames skipped);
- receipt: `ReceiptSigner.sign` with a verdict (c2pa-rs hashes the whole file for the BMFF
  binding, then signs with ES256), and `verify_receipt` for the same, reported apart.

Last line: `ratio receipt_vs_decode=<x.xx> verify_vs_decode=<x.xx>` (sums over the uploads,
`--rounds` each, medians per upload).

    python -m benchmarks.receipts [--rounds 3] [--out bench-out/uploads]
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.uploads import write_uploads
from skyra_stream.decisions.receipts import ReceiptSigner, verify_receipt
from skyra_stream.devstack.credentials import make_chain
from skyra_stream.media.decode import DecodeLimits, sample_video
from skyra_stream.messages import ModelInfo, Source, Verdict, WorkerInfo


def _verdict() -> Verdict:
    return Verdict(
        event_id="bench",
        video_id="bench",
        source=Source(uri="s3://uploads/bench.mp4"),
        status="ok",
        label="fake",
        fake_probability=0.9,
        artifacts=[],
        cleared_regions=[],
        explanation=None,
        raw_response="",
        video=None,
        model=ModelInfo(name="Skyra-RL", revision=None),
        timings_ms={"total": 1.0},
        worker=WorkerInfo(id="bench", version="0"),
        created_at=datetime.now(UTC),
    )


def measure(
    data: bytes, signer: ReceiptSigner, verdict: Verdict, receipt: bytes
) -> dict[str, float]:
    """CPU seconds of each arm on one upload, in turn."""
    out = {}
    for arm, run in (
        ("decode", lambda: sample_video(io.BytesIO(data), DecodeLimits(threads=1))),
        ("receipt", lambda: signer.sign(io.BytesIO(data), verdict)),
        ("verify", lambda: verify_receipt(io.BytesIO(data), receipt)),
    ):
        start = time.process_time()
        run()
        out[arm] = time.process_time() - start
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("bench-out/uploads"))
    args = ap.parse_args()
    chain = make_chain("Bench Receipts")
    signer = ReceiptSigner(chain.key_pem, chain.chain_pem)
    verdict = _verdict()
    totals = {"decode": 0.0, "receipt": 0.0, "verify": 0.0}
    print(f"{'upload':34} {'MB':>6} {'decode s':>9} {'receipt s':>10} {'verify s':>9}")
    for upload, path in write_uploads(args.out).items():
        data = path.read_bytes()
        receipt = signer.sign(io.BytesIO(data), verdict).manifest
        costs: dict[str, list[float]] = {k: [] for k in totals}
        for _ in range(args.rounds):  # arms alternate: neither gets a warmer cache
            for arm, seconds in measure(data, signer, verdict, receipt).items():
                costs[arm].append(seconds)
        medians = {k: statistics.median(v) for k, v in costs.items()}
        for k, v in medians.items():
            totals[k] += v
        print(
            f"{upload.name:34} {len(data) / 1e6:6.1f} {medians['decode']:9.3f} "
            f"{medians['receipt']:10.4f} {medians['verify']:9.4f}"
        )
    print(
        f"ratio receipt_vs_decode={totals['receipt'] / totals['decode']:.2f} "
        f"verify_vs_decode={totals['verify'] / totals['decode']:.2f}"
    )


if __name__ == "__main__":
    main()
