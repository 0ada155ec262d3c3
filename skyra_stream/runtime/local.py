"""Runs without Kafka: the analysis path started on the configured engine for a command
(`analyze`, `eval`) and closed after it, and `analyze`'s loop over local files and URIs.

The loop is bounded by the path's capacity: each line is written as its video finishes, and
memory does not grow with the number of inputs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from skyra_stream.analysis import Analysis, Outcome, local_jobs
from skyra_stream.decisions.evidence import render_sheet
from skyra_stream.decisions.receipts import ReceiptSigner
from skyra_stream.decisions.verdicts import dead_letter_code
from skyra_stream.messages import ErrorReason, Rejection
from skyra_stream.runtime.wiring import build_analysis, build_engine
from skyra_stream.settings import Settings


@contextmanager
def analysis_session(settings: Settings) -> Iterator[Analysis]:
    """The analysis path on the engine SKYRA_ENGINE names, started and closed around use."""
    engine = build_engine(settings).start()
    analysis = build_analysis(settings, engine)
    try:
        yield analysis
    finally:
        analysis.close()
        engine.close()


def outcome_line(source: str, outcome: Outcome) -> str:
    """A verdict, or a rejection with the dead-letter code, as one JSON line."""
    if outcome.verdict is not None:
        return outcome.verdict.model_dump_json()
    assert outcome.error is not None
    reason = ErrorReason(code=dead_letter_code(outcome.error), message=outcome.error.message)
    return Rejection(source=source, error=reason).model_dump_json()


def analyze_sources(
    analysis: Analysis,
    sources: Sequence[str],
    sink: TextIO,
    *,
    sheets: Path | None = None,
    receipts: tuple[Path, ReceiptSigner] | None = None,
    advance: Callable[[], None] = lambda: None,
) -> int:
    """`skyra-stream analyze`: one JSON line per source on `sink`, an evidence sheet per
    verdict into `sheets` when given, a signed receipt (`<name>.c2pa`, beside the JSON line's
    name) per verdict of a local file into `receipts`; returns how many were rejected."""
    rejected = 0
    names: dict[str, str] = {}
    for outcome in analysis.run(local_jobs(sources, names)):
        source = names.pop(outcome.job.event.event_id)
        sink.write(outcome_line(source, outcome) + "\n")
        sink.flush()
        advance()
        if outcome.verdict is None:
            rejected += 1
        else:
            digest = hashlib.sha256(source.encode()).hexdigest()[:8]
            if sheets is not None and outcome.video is not None:
                name = f"{Path(source).stem}-{digest}.png"
                render_sheet(outcome.video.frames, outcome.verdict, sheets / name, title=source)
            if receipts is not None and Path(source).is_file():
                folder, signer = receipts
                with Path(source).open("rb") as upload:
                    receipt = signer.sign(upload, outcome.verdict)
                (folder / f"{Path(source).stem}-{digest}.c2pa").write_bytes(receipt.manifest)
    return rejected
