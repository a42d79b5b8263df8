"""Key images: the BG and SG ASPECTS levels as RGB pictures, saved as secondary capture + PNG.

What a radiologist sees in any PACS without a SEG viewer: the slice in a stroke window
(W 40 / L 35 HU), the level's ASPECTS regions (BG: C, L, IC, I, M1-M3; SG: M4-M6) outlined in
their colours with their codes, on the slice that shows all of them (:func:`choose_key_slices`), the infarct
filled semi-transparent red, R/L side markers in radiological convention (patient right on
image left) and a banner with ASPECTS per side, the infarct volume, the flags in words (in red:
a suspected haemorrhage changes how the ASPECTS is read) and NOT FOR DIAGNOSTIC USE.
Regions the series does not cover are "not assessable": the banner says so (and names them, with
no ASPECTS for their side), their codes on the picture read "n/a", and a level the series misses
is named as not covered. A marginal call (the mask near the involvement threshold, aspects.json
``marginal``) has its code drawn with "?", and the banner lists those regions and shows the
side's ASPECTS range. A flagged finding the app locates (suspected haemorrhage, suspected old
infarct, acute infarct outside the MCA territory) is ringed in its colour wherever it crosses a
key slice, and gets a key image of its own, on the slice where it is largest, so that a reader
sees where it is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import highdicom as hd
import numpy as np
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset

from aspects.derived import (
    NOT_FOR_DIAGNOSTIC_USE,
    SERIES_NUMBER,
    Equipment,
    check_source,
    copy_patient_study,
    flag_volume_text,
    mark_derived,
    new_uid,
)
from aspects.errors import EXIT_PROCESSING, InputError
from aspects.labels import (FINDING_COLOURS, FINDING_LABELS, FINDINGS, INFARCT_COLOUR, OUTSIDE_MCA, REGION_CODES,
                            REGION_COLOURS, SIDES, label_value)
from aspects.series import hu_slice

WINDOW_WIDTH, WINDOW_LEVEL = 40.0, 35.0
INFARCT_ALPHA = 0.45
DISPLAY_SIZE = 512  # small series are enlarged (integer factor, nearest) to about this size
LEVELS = ("BG", "SG")
OPPOSITE = {"L": "R", "R": "L", "A": "P", "P": "A", "H": "F", "F": "H"}
# Flagged findings that get a key image of their own: the SEG's located findings and the acute
# infarct outside the MCA territory (in SEG segment 1 with the rest of the infarct), which the two
# level slices rarely cut (a thalamic, occipital or cerebellar infarct).
KEY_FINDINGS = FINDINGS + (OUTSIDE_MCA,)
KEY_FINDING_LABELS = {**FINDING_LABELS, OUTSIDE_MCA: "Acute infarct outside the MCA territory"}
# Ring colours: the SEG segment's; the outside-MCA infarct is part of the red infarct, ringed red.
RING_COLOURS = {**FINDING_COLOURS, OUTSIDE_MCA: INFARCT_COLOUR}
KEY_FILES = {"haemorrhage_suspected": "key_haemorrhage", "old_infarct_suspected": "key_old_infarct",
             OUTSIDE_MCA: "key_outside_mca"}
LEVEL_NAMES = {"BG": "basal ganglia level", "SG": "supraganglionic level",
               **{name: f"{KEY_FINDING_LABELS[name][0].lower()}{KEY_FINDING_LABELS[name][1:]}, its largest extent"
                  for name in KEY_FINDINGS}}
# The word written beside a located finding's ring on the picture.
FINDING_TAGS = {"haemorrhage_suspected": "blood?", "old_infarct_suspected": "old?", OUTSIDE_MCA: "outside MCA"}
# Regions whose in-plane extent defines each level's key slice.
LEVEL_REGIONS = {"BG": ("C", "L", "IC"), "SG": ("M4", "M5", "M6")}
# Regions outlined on each level's picture: the ten ASPECTS regions as a reader assigns them to the
# two levels (Barber et al. 2000). The atlas's regions are 3-D, so on a pitched head the SG slice
# also cuts the caudate body or M1; outlining them there reads as scoring them twice.
LEVEL_OUTLINED = {"BG": ("C", "L", "IC", "I", "M1", "M2", "M3"), "SG": ("M4", "M5", "M6")}
# A level's region counts as fully shown on a slice from this share of its largest area on any slice.
SHOWN_SHARE = 0.5


def _labels_of(codes: Sequence[str]) -> List[int]:
    return [label_value(side, code) for side in SIDES for code in codes]


def choose_key_slices(regions: np.ndarray) -> Dict[str, int]:
    """Axis-0 index of the BG and SG key slices: the slice that shows all of the level's regions
    (both sides), then the one with their largest area.

    Each region scores ``min(1, area / (SHOWN_SHARE * its largest area on any slice))``; the slice
    with the highest sum wins, ties broken by the level's total area. On a head pitched against
    the atlas M4 can peak a centimetre or two above M6, and the slice of the largest
    total area shows M6 without M4. A level whose regions are absent falls back to the slice with
    the most labelled voxels (or the middle slice when nothing is labelled).
    """
    # One label histogram per slice (uint8 planes, no whole-volume temporaries): a thin series'
    # 80 M voxels were scanned three times with np.isin / > 0 by each of two writers, ~1 s each.
    planes = np.ascontiguousarray(regions).reshape(regions.shape[0], -1)
    n = max(256 if planes.dtype == np.uint8 else int(planes.max(initial=0)) + 1, 21)
    counts = np.stack([np.bincount(plane, minlength=n) for plane in planes]) if planes.size else np.zeros((0, n), int)
    any_area = counts[:, 1:].sum(axis=1)
    fallback = int(np.argmax(any_area)) if any_area.any() else regions.shape[0] // 2
    out = {}
    for level in LEVELS:
        per_region = counts[:, _labels_of(LEVEL_REGIONS[level])].astype(float)
        area = per_region.sum(axis=1)
        if not area.any():
            out[level] = fallback
            continue
        full = SHOWN_SHARE * per_region.max(axis=0)
        shown = np.divide(per_region, full, out=np.zeros_like(per_region), where=full > 0)
        score = np.minimum(shown, 1.0).sum(axis=1)
        best = np.flatnonzero(score >= score.max() - 1e-9)
        out[level] = int(best[np.argmax(area[best])])
    return out


def level_labels(regions: np.ndarray, level: str) -> np.ndarray:
    """``regions`` with only the labels of ``level``'s outlined regions (:data:`LEVEL_OUTLINED`)."""
    return np.where(np.isin(regions, _labels_of(LEVEL_OUTLINED[level])), regions, 0).astype(regions.dtype)


def key_slices(result: Mapping, regions: np.ndarray) -> Dict[str, int]:
    """``result["key_slices"]`` when given (and valid), else :func:`choose_key_slices`."""
    chosen = choose_key_slices(regions)
    given = result.get("key_slices") or {}
    for level in LEVELS:
        if level in given:
            k = int(given[level])
            if not 0 <= k < regions.shape[0]:
                raise InputError(EXIT_PROCESSING, f"key slice {level}={k} outside the series (0..{regions.shape[0] - 1})")
            chosen[level] = k
    return chosen


def window(hu: np.ndarray, width: float = WINDOW_WIDTH, level: float = WINDOW_LEVEL) -> np.ndarray:
    lo = level - width / 2.0
    return (np.clip((hu - lo) / width, 0.0, 1.0) * 255.0).astype(np.uint8)


def _letter(v: np.ndarray) -> str:
    """Patient-orientation letter of the dominant LPS component of direction ``v``."""
    i = int(np.argmax(np.abs(v)))
    return ("L", "P", "H")[i] if v[i] > 0 else ("R", "A", "F")[i]


def display_flips(ds: Dataset) -> Tuple[bool, bool, Tuple[str, str]]:
    """(flip rows, flip columns, PatientOrientation after flipping) for radiological display."""
    iop = np.asarray(ds.ImageOrientationPatient, dtype=float)
    row_dir, col_dir = iop[:3], iop[3:]  # along a row (increasing column), down a column
    flip_cols = row_dir[0] < 0  # image left must be patient right (+x is patient left in LPS)
    flip_rows = col_dir[1] < 0  # image top must be anterior
    row_dir = -row_dir if flip_cols else row_dir
    col_dir = -col_dir if flip_rows else col_dir
    return flip_rows, flip_cols, (_letter(row_dir), _letter(col_dir))


def _outline(labels: np.ndarray, width: int = 2) -> np.ndarray:
    """Inner border, ``width`` pixels wide, of every labelled region (4-neighbourhood)."""
    inside = labels > 0
    core = inside.copy()  # pixels whose 4 neighbours carry the same label, eroded width times
    for _ in range(width):
        same = core.copy()
        same[1:, :] &= core[:-1, :] & (labels[1:, :] == labels[:-1, :])
        same[:-1, :] &= core[1:, :] & (labels[:-1, :] == labels[1:, :])
        same[:, 1:] &= core[:, :-1] & (labels[:, 1:] == labels[:, :-1])
        same[:, :-1] &= core[:, 1:] & (labels[:, :-1] == labels[:, 1:])
        same[0, :] = same[-1, :] = same[:, 0] = same[:, -1] = False
        core = same
    return inside & ~core


def _ring(mask: np.ndarray, width: int = 2) -> np.ndarray:
    """Outer border, ``width`` pixels wide, of ``mask`` (4-neighbourhood): drawn around a finding,
    so that the finding's own pixels stay visible however small it is."""
    grown = mask.copy()
    for _ in range(width):
        step = grown.copy()
        step[1:, :] |= grown[:-1, :]
        step[:-1, :] |= grown[1:, :]
        step[:, 1:] |= grown[:, :-1]
        step[:, :-1] |= grown[:, 1:]
        grown = step
    return grown & ~mask


def finding_slice(mask: np.ndarray) -> int:
    """Axis-0 index of the slice where a finding's mask is largest (the first of equals)."""
    return int(np.argmax(mask.reshape(mask.shape[0], -1).sum(axis=1)))


Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


def _font(size: int) -> Font:
    return ImageFont.load_default(size=size)


NOT_ASSESSABLE = "not assessable"
NBSP = "\u00a0"  # a no-break space in banner text: the wrap keeps its neighbours on one line
# aspects.json flags in words, on the banner: the key image is what PACS shows, and a suspected
# haemorrhage or a low-confidence registration changes how its ASPECTS is read. Incomplete
# coverage has its own line (the regions not covered).
FLAG_WORDS = {
    "haemorrhage_suspected": "HAEMORRHAGE SUSPECTED",
    "low_confidence": "LOW CONFIDENCE",
    "old_infarct_suspected": "old infarct suspected, not scored",
    "infarct_outside_mca": "infarct outside the MCA territory",
}
FLAGS_PREFIX = "Flags: "


def not_assessable_labels(result: Mapping) -> List[int]:
    """Label values of the regions aspects.json marks not assessable (missing key = assessable)."""
    regions = result.get("regions") or {}
    return [label_value(side, code) for side in SIDES for code in REGION_CODES
            if (regions.get(side) or {}).get(code, {}).get("assessable", True) is False]


def marginal_labels(result: Mapping) -> List[int]:
    """Label values of the regions whose call aspects.json marks marginal."""
    regions = result.get("regions") or {}
    return [label_value(side, code) for side in SIDES for code in REGION_CODES
            if (regions.get(side) or {}).get(code, {}).get("marginal")]


def flag_line(result: Mapping) -> Optional[str]:
    """The banner line of the study's flags in words (volumes where aspects.json has them; the
    low-confidence reasons), or None without one (:data:`FLAG_WORDS`)."""
    details = result.get("flag_details") or {}
    entries = []
    for name in result.get("flags") or []:
        words = FLAG_WORDS.get(name)
        if words is None:
            continue
        volume = flag_volume_text(details.get(name))
        if volume is not None:
            words += f" ({volume})"
        elif name == "low_confidence" and (result.get("qc") or {}).get("reasons"):
            words += ": " + "; ".join(result["qc"]["reasons"])
        # an entry wraps only where it is long text (the low-confidence reasons)
        entries.append(words if name == "low_confidence" else words.replace(" ", NBSP))
    return FLAGS_PREFIX + ", ".join(entries) if entries else None


def banner_lines(result: Mapping, level: str, k: int, n: int, level_on_slice: bool = True) -> List[str]:
    a = result["aspects"]
    side = result.get("affected_side") or "none"
    ranges = result.get("aspects_range") or {}
    shown = {s: (NOT_ASSESSABLE if a[s] is None else str(a[s])) for s in SIDES}
    for s in SIDES:  # a side with marginal calls shows its ASPECTS range
        r = ranges.get(s)
        if r is not None and r[0] != r[1]:
            shown[s] += f" (range {r[0]}-{r[1]})"
    where = LEVEL_NAMES[level] if level_on_slice else f"{LEVEL_NAMES[level]} NOT COVERED by the series"
    lines = [
        f"ASPECTS  right {shown['right']}  |  left {shown['left']}   (affected side: {side})",
        f"Infarct volume {float(result['infarct_volume_ml']):.1f} ml   |   {where}, slice {k + 1}/{n}",
    ]
    missing = not_assessable_labels(result)
    if missing:
        per_side = {s: [REGION_CODES[(v - 1) % 10] for v in missing if (v > 10) == (s == "left")] for s in SIDES}
        names = "; ".join(f"{s} {', '.join(c)}" for s, c in per_side.items() if c)
        lines.append(f"Not covered by the series, {NOT_ASSESSABLE}: {names}")
    flagged = flag_line(result)
    if flagged:
        lines.append(flagged)
    # no-break spaces inside an entry: the banner wraps between regions, never inside one
    marginal = [f"{s}{NBSP}{c}{NBSP}{100 * float(result['regions'][s][c]['infarct_fraction']):.0f}{NBSP}%"
                for s in SIDES for c in REGION_CODES if result["regions"][s][c].get("marginal")]
    if marginal:
        threshold = float((result.get("thresholds") or {}).get("involvement_fraction") or 0.1)
        lines.append(f"Marginal calls (?), infarct near the {100 * threshold:.0f} % threshold: {', '.join(marginal)}")
    return lines + [NOT_FOR_DIAGNOSTIC_USE]


def render(
    hu: np.ndarray,
    labels: np.ndarray,
    infarct: np.ndarray,
    lines: Sequence[str],
    flip_rows: bool = False,
    flip_cols: bool = False,
    row_letter: str = "L",
    not_assessable: Sequence[int] = (),
    marginal: Sequence[int] = (),
    findings: Optional[Mapping[str, np.ndarray]] = None,
) -> np.ndarray:
    """RGB uint8 picture ``(banner + rows * f, cols * f, 3)`` of one slice; f = enlargement.

    ``row_letter``: patient direction along the displayed rows after the flips ("L" for an
    axial slice in radiological convention), used for the side markers. ``not_assessable``:
    label values whose code is drawn with "n/a"; ``marginal``: those drawn with "?" (a call
    near the threshold). ``findings``: the slice's masks of located findings by flag name, each
    ringed in its colour (:data:`RING_COLOURS`) and tagged.
    """
    findings = {name: mask for name, mask in (findings or {}).items() if mask.any()}
    if flip_rows:
        hu, labels, infarct = hu[::-1], labels[::-1], infarct[::-1]
        findings = {name: mask[::-1] for name, mask in findings.items()}
    if flip_cols:
        hu, labels, infarct = hu[:, ::-1], labels[:, ::-1], infarct[:, ::-1]
        findings = {name: mask[:, ::-1] for name, mask in findings.items()}
    f = max(1, int(round(DISPLAY_SIZE / max(hu.shape))))
    big = lambda a: np.kron(a, np.ones((f, f), dtype=a.dtype))  # noqa: E731 - nearest enlargement
    grey = big(window(hu)).astype(np.float32)
    labels, infarct = big(labels.astype(np.uint8)), big(infarct.astype(np.uint8)).astype(bool)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    rgb[infarct] = (1 - INFARCT_ALPHA) * rgb[infarct] + INFARCT_ALPHA * np.asarray(INFARCT_COLOUR, np.float32)
    edge = _outline(labels)
    colours = np.zeros((21, 3), np.float32)
    for value in range(1, 21):
        colours[value] = REGION_COLOURS[REGION_CODES[(value - 1) % 10]]
    rgb[edge] = colours[labels[edge]]
    rings = {name: _ring(big(mask.astype(np.uint8)).astype(bool), width=max(2, f)) for name, mask in findings.items()}
    for name, ring in rings.items():
        rgb[ring] = np.asarray(RING_COLOURS[name], np.float32)
    picture = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))
    width, height = picture.size
    size = max(12, width // 36)
    draw = ImageDraw.Draw(picture)
    small = _font(max(10, size - 2))
    outlined: Dict[str, Any] = {"stroke_width": 2, "stroke_fill": (0, 0, 0)}
    for value in np.unique(labels[labels > 0]):
        ys, xs = np.nonzero(labels == value)
        code = (REGION_CODES[(value - 1) % 10] + (" n/a" if int(value) in not_assessable else "")
                + ("?" if int(value) in marginal else ""))
        draw.text((float(xs.mean()), float(ys.mean())), code, font=small, fill=(255, 255, 255), anchor="mm", **outlined)
    for name, ring in rings.items():  # the tag above the ring's top, in the ring's colour
        ys, xs = np.nonzero(ring)
        above = ys.min() > 2 * size  # else below the ring: the picture's top would cut the tag
        draw.text((float(xs.mean()), float(ys.min() - 2 if above else ys.max() + 2)), FINDING_TAGS[name], font=small,
                  fill=RING_COLOURS[name], anchor="mb" if above else "mt", **outlined)
    # Side markers: the right edge shows where the rows run to, the left edge the opposite.
    big_font, marker = _font(2 * size), (255, 255, 0)
    draw.text((size // 2, height // 2), OPPOSITE[row_letter], font=big_font, fill=marker, anchor="lm", **outlined)
    draw.text((width - size // 2, height // 2), row_letter, font=big_font, fill=marker, anchor="rm", **outlined)
    line_h = int(size * 1.5)
    font = _font(size)
    rows = [(part, text) for text in lines for part in _wrap(text, font, width - size)]
    canvas = Image.new("RGB", (width, height + line_h * len(rows) + size // 2), (0, 0, 0))
    canvas.paste(picture, (0, canvas.height - height))
    draw = ImageDraw.Draw(canvas)
    for i, (part, text) in enumerate(rows):
        warn = text == NOT_FOR_DIAGNOSTIC_USE or NOT_ASSESSABLE in text or text.startswith(FLAGS_PREFIX)
        colour = (255, 80, 80) if warn else (255, 255, 255)
        draw.text((size // 2, size // 4 + i * line_h), part, font=font, fill=colour)
    return np.asarray(canvas, dtype=np.uint8)


def _wrap(text: str, font: Font, width: float) -> List[str]:
    """``text`` broken at spaces into lines no wider than ``width`` pixels; a no-break space
    (U+00A0) holds its neighbours together and is drawn as a space (the font has no glyph for it)."""
    out, line = [], ""
    for word in text.split(" "):
        trial = f"{line} {word}" if line else word
        if line and font.getlength(trial.replace(NBSP, " ")) > width:
            out.append(line.replace(NBSP, " "))
            line = word
        else:
            line = trial
    return out + [line.replace(NBSP, " ")]


def enlargement(ds: Dataset) -> int:
    return max(1, int(round(DISPLAY_SIZE / max(int(ds.Rows), int(ds.Columns)))))


def build_key_image(
    ref: Dataset,
    rgb: np.ndarray,
    level: str,
    instance_number: int,
    series_uid: str,
    equipment: Equipment,
    orientation: Tuple[str, str],
) -> hd.sc.SCImage:
    """Secondary capture of ``rgb`` in the source study, referencing source slice ``ref``."""
    f = enlargement(ref)
    spacing = [float(v) / f for v in getattr(ref, "PixelSpacing", [])] or None
    sc = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=ref,
        pixel_array=rgb,
        photometric_interpretation="RGB",
        bits_allocated=8,
        coordinate_system="PATIENT",
        series_instance_uid=series_uid,
        series_number=SERIES_NUMBER["key"],
        sop_instance_uid=new_uid(),
        instance_number=instance_number,
        manufacturer=equipment.manufacturer,
        pixel_spacing=(spacing[0], spacing[1]) if spacing else None,  # type: ignore[arg-type]  # highdicom types it int
        patient_orientation=orientation,
    )
    copy_patient_study(ref, sc)
    mark_derived(sc, equipment, "KEY IMAGES")
    src = Dataset()
    src.ReferencedSOPClassUID = ref.SOPClassUID
    src.ReferencedSOPInstanceUID = ref.SOPInstanceUID
    sc.SourceImageSequence = [src]
    sc.DerivationDescription = (f"ASPECTS {LEVEL_NAMES[level]} key image with region outlines and infarct overlay"
                                if level in LEVELS else
                                f"{KEY_FINDING_LABELS[level]} key image: its outline and the infarct overlay")
    sc.BurnedInAnnotation = "YES"
    # dciodvfy wants Laterality unless the body part is known to be unpaired.
    sc.BodyPartExamined = str(getattr(ref, "BodyPartExamined", "") or "HEAD")
    return sc


def write_key_images(
    source: Sequence[Dataset],
    infarct: np.ndarray,
    regions: np.ndarray,
    result: Mapping,
    out_dir: Path,
    dicom_dir: Optional[Path] = None,
    png_dir: Optional[Path] = None,
    findings: Optional[Mapping[str, np.ndarray]] = None,
) -> Dict[str, Dict]:
    """Write ``dicom/key_bg.dcm``, ``key_sg.dcm`` and ``png/key_bg.png``, ``key_sg.png``; and for
    each located finding in ``findings`` (masks by flag name, :data:`KEY_FINDINGS`)
    ``key_haemorrhage`` / ``key_old_infarct`` / ``key_outside_mca`` on the slice where it is largest.

    Returns ``{"BG": {"slice": k, "dcm": path, "png": path}, "SG": {...}, <flag name>: {...}}``.
    """
    check_source(source)
    findings = {name: findings[name].astype(bool) for name in KEY_FINDINGS if findings and name in findings
                and findings[name].any()}
    if regions.shape != infarct.shape or regions.shape[0] != len(source) or any(
            m.shape != regions.shape for m in findings.values()):
        raise InputError(EXIT_PROCESSING, f"masks {regions.shape}/{infarct.shape} do not match {len(source)} source slices")
    out_dir = Path(out_dir)
    dicom_dir = Path(dicom_dir) if dicom_dir else out_dir / "dicom"
    png_dir = Path(png_dir) if png_dir else out_dir / "png"
    dicom_dir.mkdir(parents=True, exist_ok=True)
    png_dir.mkdir(parents=True, exist_ok=True)
    equipment = Equipment.from_result(result)
    series_uid = new_uid()
    out: Dict[str, Dict] = {}
    pictures = list(key_slices(result, regions).items()) + [(name, finding_slice(m)) for name, m in findings.items()]
    for number, (level, k) in enumerate(pictures, start=1):
        ref = source[k]
        flip_rows, flip_cols, orientation = display_flips(ref)
        on_slice = level not in LEVELS or bool(np.isin(regions[k], _labels_of(LEVEL_REGIONS[level])).any())
        lines = banner_lines(result, level, k, len(source), on_slice)
        # a finding's own picture shows the finding, not a level's regions
        outlined = level_labels(regions[k], level) if level in LEVELS else np.zeros_like(regions[k])
        rgb = render(hu_slice(ref), outlined, infarct[k], lines, flip_rows, flip_cols, orientation[0],
                     not_assessable_labels(result), marginal_labels(result),
                     {name: m[k] for name, m in findings.items()})
        name = f"key_{level.lower()}" if level in LEVELS else KEY_FILES[level]
        png = png_dir / f"{name}.png"
        Image.fromarray(rgb).save(png)
        dcm = dicom_dir / f"{name}.dcm"
        build_key_image(ref, rgb, level, number, series_uid, equipment, orientation).save_as(dcm)
        out[level] = {"slice": k, "dcm": dcm, "png": png}
    return out
