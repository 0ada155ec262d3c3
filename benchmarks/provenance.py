"""What the decision step costs per upload: the C2PA read and the policy, against the fetch
and decode it rides on.

Uploads shaped like production (`benchmarks.uploads`: 1080p and 4K, long GOPs, B-frames, a
minute long), each in two forms: as uploaded (no manifest, the common case) and signed with
C2PA content credentials (a throwaway chain; validation hashes the whole file). For every
upload, one at a time on one thread, CPU-seconds (median of the repeats) of:

- fetch + decode: the worker's fetch (a `file://` object into the spool; S3 would only add
  to it) and the 16-frame sampler with frame skipping, one FFmpeg thread;
- provenance + policy: `ProvenanceReader.read` on the fetched body and `decide_before_model`
  plus `decide` under a policy with a skip rule in front, as the analysis path runs them.

Last line: `ratio provenance_vs_decode=<x.xx> signed=<x.xx>`: provenance + policy over
fetch + decode, summed over the shapes, for uploads without a manifest (the target is at
most 0.05) and, beside it, for the signed copies.

    python -m benchmarks.provenance [--repeats 3] [--out bench-out]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.uploads import write_uploads
from skyra_stream.decisions.policy import (
    Conditions,
    Policy,
    PolicyFile,
    Rule,
    before_model_inputs,
    decide,
    decide_before_model,
)
from skyra_stream.devstack.credentials import GENERATED, make_chain, sign_mp4
from skyra_stream.media.decode import sample_video
from skyra_stream.media.fetch import ObjectFetcher
from skyra_stream.media.provenance import ProvenanceReader
from skyra_stream.runtime.configs import decode_limits, fetch_config
from skyra_stream.settings import Settings

POLICY = PolicyFile(
    version="bench",
    default=Policy(
        id="bench",
        otherwise="allow",
        rules=[
            Rule(
                name="declared-ai",
                action="block",
                skip_model=True,
                when=Conditions(provenance=["trusted", "untrusted"], declares_generated=True),
            ),
            Rule(name="likely-fake", action="block", when=Conditions(min_fake_probability=0.9)),
            Rule(name="maybe-fake", action="review", when=Conditions(min_fake_probability=0.5)),
        ],
    ),
)


def cpu_s(fn: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("bench-out"))
    args = ap.parse_args()
    folder = args.out / "uploads"
    print(f"encoding uploads (cached in {folder})", flush=True)
    uploads = write_uploads(folder)
    chain = make_chain()
    signed_dir = args.out / "signed"
    signed_dir.mkdir(parents=True, exist_ok=True)
    files: list[tuple[str, str, Path]] = []
    for upload, path in uploads.items():
        files.append((upload.name, "plain", path))
        signed = signed_dir / path.name
        if not signed.exists() or signed.stat().st_mtime < path.stat().st_mtime:
            signed.write_bytes(sign_mp4(path.read_bytes(), chain, digital_source_type=GENERATED))
        files.append((upload.name, "signed", signed))

    settings = Settings(
        local_roots=[str(folder.resolve()), str(signed_dir.resolve())],  # type: ignore[arg-type]
        decode_concurrency=1,
        decode_threads=1,
        decode_device="cpu",
    )
    fetcher = ObjectFetcher(fetch_config(settings))
    limits = decode_limits(settings)
    reader = ProvenanceReader()

    def fetch_decode(path: Path) -> None:
        with fetcher.fetch(path.resolve().as_uri()) as obj:
            sample_video(obj.body, limits)

    def provenance_policy(path: Path) -> float:
        """CPU-seconds of the read and both decisions, on a body already fetched."""
        with fetcher.fetch(path.resolve().as_uri()) as obj:
            start = time.process_time()
            prov = reader.read(obj.body)
            inputs = before_model_inputs("t", prov)
            if decide_before_model(POLICY, inputs) is None:
                answered = inputs.model_copy(
                    update={"status": "ok", "label": "fake", "fake_probability": 0.7}
                )
                decide(POLICY, answered)
            return time.process_time() - start

    print(f"\nCPU-seconds per upload (median of {args.repeats}, one thread):")
    print(f"{'upload':<28}{'form':<8}{'MiB':>7}{'fetch+decode':>14}{'prov+policy':>13}{'ratio':>8}")
    sums: dict[str, list[float]] = {"plain": [0.0, 0.0], "signed": [0.0, 0.0]}
    for name, form, path in files:
        decode = cpu_s(lambda p=path: fetch_decode(p), args.repeats)  # type: ignore[misc]
        prov = statistics.median(provenance_policy(path) for _ in range(args.repeats))
        sums[form][0] += prov
        sums[form][1] += decode
        size = path.stat().st_size / 2**20
        print(f"{name:<28}{form:<8}{size:7.1f}{decode:14.3f}{prov:13.4f}{prov / decode:8.3f}")
    plain = sums["plain"][0] / sums["plain"][1]
    signed = sums["signed"][0] / sums["signed"][1]
    print(f"\nsummed over shapes: no manifest {plain:.4f}, signed {signed:.4f}")
    print(f"ratio provenance_vs_decode={plain:.2f} signed={signed:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
