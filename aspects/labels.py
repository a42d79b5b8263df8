"""The fixed ASPECTS label table used everywhere in the project.

Right hemisphere 1..10, left hemisphere 11..20, in the order C, L, IC, I, M1..M6; 0 = outside.
SEG segment order, aspects.json keys, truth files and the atlas all follow this table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Literal, Tuple

Side = Literal["right", "left"]
SIDES: Tuple[Side, Side] = ("right", "left")
REGION_CODES: Tuple[str, ...] = ("C", "L", "IC", "I", "M1", "M2", "M3", "M4", "M5", "M6")
REGION_NAMES: Dict[str, str] = {
    "C": "caudate",
    "L": "lentiform nucleus",
    "IC": "internal capsule",
    "I": "insular ribbon",
    "M1": "anterior MCA cortex",
    "M2": "MCA cortex lateral to insular ribbon",
    "M3": "posterior MCA cortex",
    "M4": "anterior MCA territory superior to M1",
    "M5": "lateral MCA territory superior to M2",
    "M6": "posterior MCA territory superior to M3",
}
REGION_LEVEL: Dict[str, str] = {c: ("BG" if c in ("C", "L", "IC", "I", "M1", "M2", "M3") else "SG") for c in REGION_CODES}
SIDE_OFFSET: Dict[str, int] = {"right": 0, "left": 10}
# Display colours (RGB 0..255) per region code, shared by key images, SEG and docs figures.
REGION_COLOURS: Dict[str, Tuple[int, int, int]] = {
    "C": (230, 25, 75),
    "L": (60, 180, 75),
    "IC": (255, 225, 25),
    "I": (0, 130, 200),
    "M1": (245, 130, 48),
    "M2": (145, 30, 180),
    "M3": (70, 240, 240),
    "M4": (240, 50, 230),
    "M5": (210, 245, 60),
    "M6": (250, 190, 212),
}
INFARCT_COLOUR: Tuple[int, int, int] = (255, 0, 0)
# Flagged findings that are shown where they are (SEG segments after the infarct and the regions,
# outlines on the key images, a key image each), in this order; aspects.json flag names. Their
# colours differ from the infarct's and every region's by > 30 CIELAB units (Delta E 1976).
FINDINGS: Tuple[str, ...] = ("haemorrhage_suspected", "old_infarct_suspected")
FINDING_LABELS: Dict[str, str] = {"haemorrhage_suspected": "Suspected haemorrhage",
                                  "old_infarct_suspected": "Suspected old infarct"}
FINDING_COLOURS: Dict[str, Tuple[int, int, int]] = {"haemorrhage_suspected": (0, 255, 0),
                                                    "old_infarct_suspected": (128, 128, 255)}
# The flag of acute infarct outside the MCA territory (part of the infarct: a key image, no segment).
OUTSIDE_MCA = "infarct_outside_mca"


@dataclass(frozen=True)
class Region:
    value: int
    side: Side
    code: str

    @property
    def name(self) -> str:
        return f"{self.side} {REGION_NAMES[self.code]}"

    @property
    def level(self) -> str:
        return REGION_LEVEL[self.code]


def label_value(side: str, code: str) -> int:
    """Integer label of a region (``label_value('left', 'M1') == 15``)."""
    if side not in SIDE_OFFSET:
        raise ValueError(f"side must be 'right' or 'left', not {side!r}")
    return SIDE_OFFSET[side] + REGION_CODES.index(code) + 1


def region_of(value: int) -> Region:
    """Inverse of :func:`label_value`."""
    if not 1 <= value <= 20:
        raise ValueError(f"ASPECTS label values are 1..20, not {value}")
    side: Side = "right" if value <= 10 else "left"
    return Region(value, side, REGION_CODES[(value - 1) % 10])


def all_regions() -> List[Region]:
    return [region_of(v) for v in range(1, 21)]


def label_table() -> List[dict]:
    """The table as written to ``models/atlas/labels.json``."""
    return [
        {"value": r.value, "side": r.side, "code": r.code, "name": r.name, "level": r.level}
        for r in all_regions()
    ]
