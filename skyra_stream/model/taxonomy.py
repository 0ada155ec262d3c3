"""Skyra's artifact taxonomy (L1 group > L2 category > L3 type) as data.

The L3 name is what the model writes inside `<type>`; the verdict also carries its L2 and L1
so that downstream policy can act on a whole family of artifacts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

TAXONOMY: Final[dict[str, dict[str, tuple[str, ...]]]] = {
    "Low-Level Forgery": {
        "Texture Anomaly": ("Structure Anomaly", "Texture Jittering", "Unnatural Blur"),
        "Color and Lighting Anomaly": ("Color Over-saturation", "Lighting Inconsistency"),
        "Move Forgery": ("Camera Motion Inconsistency",),
    },
    "Violation of Laws": {
        "Object Inconsistency": (
            "Abnormal Object Disappearance",
            "Abnormal Object Appearance",
            "Person Identity Inconsistency",
            "General Object Identity Inconsistency",
            "Shape Distortion",
        ),
        "Interaction Inconsistency": (
            "Abnormal Rigid-Body Crossing",
            "Abnormal Multi-Object Merging",
            "Abnormal Object Splitting",
            "General Interaction Anomaly",
        ),
        "Unnatural Movement": (
            "Unnatural Human Movement",
            "Unnatural Animal Movement",
            "Unnatural General Object Movement",
        ),
        "Violation of Causality Law": (
            "Violation of Physical Law",
            "Violation of General Causality Law",
        ),
        "Violation of Commonsense": (
            "Abnormal Human Body Structure",
            "Abnormal General Object Structure",
            "Text Distortion",
        ),
    },
}


@dataclass(frozen=True, slots=True)
class ArtifactClass:
    """Where one L3 type sits in the taxonomy."""

    type: str
    category: str
    group: str


def _key(name: str) -> str:
    # The model sometimes varies case, spacing or hyphens ("Rigid Body"); those still name
    # the same class, so they are matched on a folded key.
    return re.sub(r"[\s\-_]+", " ", name).strip().casefold()


_BY_KEY: Final[dict[str, ArtifactClass]] = {
    _key(l3): ArtifactClass(type=l3, category=l2, group=l1)
    for l1, categories in TAXONOMY.items()
    for l2, types in categories.items()
    for l3 in types
}

L3_TYPES: Final[tuple[str, ...]] = tuple(c.type for c in _BY_KEY.values())


def classify(type_name: str) -> ArtifactClass | None:
    """The taxonomy entry for an emitted `<type>` name, or None when it is not in the taxonomy."""
    return _BY_KEY.get(_key(type_name))
