"""Skyra's GRPO reward for verl (`custom_reward_function`), as docs/model-contract.md
defines it.

Asymmetric: a missed fake scores 0, a false alarm on a real video scores -0.2, and a correct
answer scores 0.8 * min(log(1 + N), log(4)), where N counts the grounded evidence spans
`<t>[..]</t> at <bbox>[..]</bbox>` inside the think block.
"""

from __future__ import annotations

import math
import re

_ANSWER = re.compile(r"<answer>\s*(.*?)\s*</answer>", re.IGNORECASE | re.DOTALL)
_THINK = re.compile(r"<think>(.*?)</think>", re.IGNORECASE | re.DOTALL)
_SPAN = re.compile(r"<t>\s*\[[^\]<]*\]\s*</t>\s*at\s*<bbox>\s*\[[^\]<]*\]\s*</bbox>", re.IGNORECASE)


def evidence_spans(text: str) -> int:
    think = _THINK.search(text)
    return len(_SPAN.findall(think.group(1))) if think else 0


def compute_score(
    data_source: str,
    solution_str: str,
    ground_truth: str,
    extra_info: dict[str, object] | None = None,
) -> float:
    answer = _ANSWER.search(solution_str)
    predicted = re.sub(r"[^a-z]", "", answer.group(1).lower()) if answer else ""
    truth = ground_truth.strip().lower()
    if predicted == truth:
        return 0.8 * min(math.log(1 + evidence_spans(solution_str)), math.log(4))
    if truth == "real" and predicted == "fake":
        return -0.2  # false alarm
    return 0.0  # missed fake, or no usable answer
