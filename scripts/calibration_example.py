"""The README's calibration example, reproducible: synthetic labelled scores with a known
miscalibration (true logits z ~ N(0, 2), labels drawn with probability sigmoid(z), scores
sigmoid(2.5 z): an overconfident model), then `skyra-stream calibrate` on them.

    .venv/bin/python scripts/calibration_example.py OUT_DIR
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np


def main() -> int:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "calibration-example")
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    n, temperature = 10_000, 2.5
    z = rng.normal(0.0, 2.0, n)
    fake = rng.random(n) < 1 / (1 + np.exp(-z))
    score = 1 / (1 + np.exp(-temperature * z))
    sources = np.where(fake, rng.choice(["gen-a", "gen-b"], n), "Real")
    predictions = out / "synthetic-predictions.jsonl"
    with predictions.open("w") as f:
        for source, p in zip(sources, score, strict=True):
            f.write(json.dumps({"source": str(source), "fake_probability": float(p)}) + "\n")
    skyra = str(Path(sys.executable).with_name("skyra-stream"))
    return subprocess.call(
        [
            skyra,
            "calibrate",
            "--predictions",
            str(predictions),
            "--model",
            "synthetic@example",
            "--out",
            str(out / "calibration-synthetic.json"),
        ]
    )


if __name__ == "__main__":
    raise SystemExit(main())
