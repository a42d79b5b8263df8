"""aspects.json (schema_version 2): the one place the document is assembled, validated, written
and read.

The schema and its consistency rules (ASPECTS = 10 - involved regions, null when a region is not
assessable, ``score`` is the affected side's, ...) are in docs/architecture.md ("aspects.json");
:func:`problems` names every breach. schema_version 1 files still validate.
"""

from __future__ import annotations

import json
import math
import re
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Sequence, TypeGuard

import numpy as np

from aspects import APP_NAME, __version__
from aspects.inference import MIRROR_TTA_MODES, DeviceKind, device_kind
from aspects.labels import REGION_CODES, SIDES
from aspects.methods import SECOND_CHANNELS, InfarctMethod, RegionMethod
from aspects.scoring import range_over_marginal

if TYPE_CHECKING:
    from aspects.scoring import AspectsResult

SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)
INCOMPLETE_COVERAGE = "incomplete_coverage"
REQUIRED_KEYS = (
    "schema_version",
    "study_instance_uid",
    "series_instance_uid",
    "affected_side",
    "aspects",
    "score",
    "infarct_volume_ml",
    "regions",
    "flags",
    "methods",
    "device",
    "timings_s",
    "outputs",
    "not_for_diagnostic_use",
    "app",
)
METHODS = {"regions": tuple(m.value for m in RegionMethod), "infarct": tuple(m.value for m in InfarctMethod)}
OUTPUT_KEYS = ("seg", "sr", "kos", "key_images", "png", "nifti")
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


class ResultSchemaError(ValueError):
    """aspects.json content that breaks the schema (message lists every problem)."""


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> TypeGuard[float]:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) and math.isfinite(v)


def _is_device(v: Any) -> bool:
    try:
        return isinstance(v, str) and device_kind(v) in DeviceKind
    except ValueError:
        return False


def _score_ok(v: Any, nullable: bool) -> bool:
    return (v is None and nullable) or (_is_int(v) and 0 <= v <= 10)


def _check_uid(d: Mapping, key: str, errors: List[str]) -> None:
    v = d.get(key)
    if not isinstance(v, str) or len(v) > 64 or not _UID.match(v):
        errors.append(f"{key}: not a DICOM UID ({v!r})")


def _check_regions(d: Mapping, errors: List[str]) -> None:
    regions = d.get("regions")
    if not isinstance(regions, Mapping) or set(regions) != set(SIDES):
        errors.append("regions: needs exactly the sides 'left' and 'right'")
        return
    for side in SIDES:
        per = regions[side]
        if not isinstance(per, Mapping) or set(per) != set(REGION_CODES):
            errors.append(f"regions.{side}: needs exactly the codes {', '.join(REGION_CODES)}")
            continue
        for code in REGION_CODES:
            r, where = per[code], f"regions.{side}.{code}"
            if not isinstance(r, Mapping):
                errors.append(f"{where}: not an object")
                continue
            assessable = r.get("assessable", True)
            if not isinstance(assessable, bool):
                errors.append(f"{where}.assessable: not a bool")
            elif assessable and not isinstance(r.get("involved"), bool):
                errors.append(f"{where}.involved: not a bool")
            elif not assessable and r.get("involved") is not None:
                errors.append(f"{where}.involved: must be null when the region is not assessable")
            f = r.get("infarct_fraction")
            if not _is_num(f) or not 0.0 <= f <= 1.0:
                errors.append(f"{where}.infarct_fraction: not a number in 0..1 ({f!r})")
            ml = r.get("infarct_ml")
            if not _is_num(ml) or ml < 0:
                errors.append(f"{where}.infarct_ml: not a number >= 0 ({ml!r})")
            _check_evidence(r, where, errors)


INVOLVED_BY = ("mask", "evidence")


def _check_evidence(r: Mapping, where: str, errors: List[str]) -> None:
    """The optional ``involved_by`` / ``evidence`` of a region entry agree with ``involved``."""
    by = r.get("involved_by")
    if by is not None:
        if not isinstance(by, list) or not set(by) <= set(INVOLVED_BY):
            errors.append(f"{where}.involved_by: expected a list of {INVOLVED_BY}, got {by!r}")
        elif isinstance(r.get("involved"), bool) and r["involved"] != bool(by):
            errors.append(f"{where}.involved is {r['involved']} but involved_by is {by!r}")
    withdrawn = r.get("withdrawn_calls")
    if withdrawn is not None and (not isinstance(withdrawn, list) or not set(withdrawn) <= set(INVOLVED_BY)
                                  or r.get("involved") is True):
        errors.append(f"{where}.withdrawn_calls: expected a list of {INVOLVED_BY} on a region not involved, "
                      f"got {withdrawn!r}")
    unsupported = r.get("unsupported_mask_call")
    if unsupported is not None and (unsupported is not True or (isinstance(by, list) and "mask" in by)):
        errors.append(f"{where}.unsupported_mask_call: expected true on a region not involved by the mask, "
                      f"got {unsupported!r}")
    no_mask = r.get("evidence_without_mask")
    if no_mask is not None and (no_mask is not True or (isinstance(by, list) and "evidence" in by)):
        errors.append(f"{where}.evidence_without_mask: expected true on a region the evidence did not call, got {no_mask!r}")
    marginal = r.get("marginal")
    if marginal is not None and (marginal is not True or r.get("assessable", True) is False
                                 or (isinstance(by, list) and "evidence" in by)):
        errors.append(f"{where}.marginal: expected true on an assessable region the evidence did not call, got {marginal!r}")
    mc = r.get("mask_check")
    if mc is not None and not (isinstance(mc, Mapping) and all(mc.get(k) is None or _is_num(mc[k]) for k in ("masked_hu", "share"))
                               and _is_int(mc.get("n_voxels")) and mc["n_voxels"] >= 0
                               and isinstance(mc.get("passed"), bool) and isinstance(mc.get("spill", False), bool)):
        errors.append(f"{where}.mask_check: expected masked_hu / share numbers or null, n_voxels int >= 0, passed / spill bool")
    ev = r.get("evidence")
    if ev is None:
        return
    ok = (isinstance(ev, Mapping) and all(ev.get(k) is None or _is_num(ev.get(k))
                                          for k in ("delta_hu", "z", "partial_hu", "partial_z"))
          and _is_int(ev.get("n_voxels")) and ev["n_voxels"] >= 0 and isinstance(ev.get("called"), bool)
          and (ev.get("volume_loss") is None or _is_num(ev["volume_loss"]))
          and isinstance(ev.get("volume_loss_veto", False), bool))
    if not ok:
        errors.append(f"{where}.evidence: expected delta_hu/z/partial_hu/partial_z/volume_loss numbers or null, "
                      "n_voxels int >= 0, called / volume_loss_veto bool")
    elif isinstance(by, list) and ev["called"] != ("evidence" in by) and r.get("assessable", True):
        errors.append(f"{where}.evidence.called is {ev['called']} but involved_by is {by!r}")


def not_assessable(d: Mapping) -> List[str]:
    """Regions ("left M4", ...) marked not assessable in an aspects.json (missing = assessable)."""
    return [f"{s} {c}" for s in SIDES for c in REGION_CODES if d["regions"][s][c].get("assessable", True) is False]


def _check_consistency(d: Mapping, errors: List[str]) -> None:
    aspects, regions, side = d["aspects"], d["regions"], d["affected_side"]
    missing = not_assessable(d)
    for s in SIDES:
        involved = sum(bool(regions[s][c]["involved"]) for c in REGION_CODES)
        incomplete = any(m.startswith(s + " ") for m in missing)
        expected = None if incomplete else 10 - involved
        if aspects[s] != expected:
            why = "a region is not assessable" if incomplete else f"{involved} region(s) are involved"
            errors.append(f"aspects.{s} = {aspects[s]} but {why} (expected {expected})")
    if side is not None and d["score"] != aspects[side]:
        errors.append(f"score = {d['score']} but the affected side ({side}) scores {aspects[side]}")
    if side is None:
        expected = None if None in (aspects["left"], aspects["right"]) else aspects["left"]
        if d["score"] != expected or (expected is not None and aspects["left"] != aspects["right"]):
            errors.append(
                f"affected_side is null but score/left/right = {d['score']}/{aspects['left']}/{aspects['right']} differ"
            )
    _check_range(d, errors)
    flagged = INCOMPLETE_COVERAGE in (d.get("flags") or [])
    if bool(missing) != flagged:
        errors.append(f"flags: '{INCOMPLETE_COVERAGE}' must be present exactly when a region is not assessable")
    elif missing:
        listed = ((d.get("flag_details") or {}).get(INCOMPLETE_COVERAGE) or {}).get("regions")
        if sorted(listed or []) != sorted(missing):
            errors.append(f"flag_details.{INCOMPLETE_COVERAGE}.regions: expected {missing}, got {listed!r}")
    total = sum(float(regions[s][c]["infarct_ml"]) for s in SIDES for c in REGION_CODES)
    if total > float(d["infarct_volume_ml"]) * 1.01 + 1e-3:
        errors.append(f"regions hold {total:.3f} ml of infarct, more than infarct_volume_ml {d['infarct_volume_ml']}")


def _check_range(d: Mapping, errors: List[str]) -> None:
    """The optional ``aspects_range`` agrees with the ASPECTS and the regions marked ``marginal``."""
    ranges = d.get("aspects_range")
    if ranges is None:
        return
    if not isinstance(ranges, Mapping) or set(ranges) != set(SIDES):
        errors.append(f"aspects_range: needs 'left' and 'right', got {ranges!r}")
        return
    for s in SIDES:
        value, r = d["aspects"][s], ranges[s]
        marginal = [d["regions"][s][c] for c in REGION_CODES if d["regions"][s][c].get("marginal")]
        expected = range_over_marginal(value, [bool(m["involved"]) for m in marginal])
        if r != expected:
            errors.append(f"aspects_range.{s} = {r!r} but ASPECTS {value} with {len(marginal)} marginal call(s) "
                          f"gives {expected!r}")


def problems(d: Any) -> List[str]:
    """Every way ``d`` breaks the schema (empty list = valid)."""
    if not isinstance(d, Mapping):
        return ["aspects.json must be a JSON object"]
    errors = [f"missing key: {k}" for k in REQUIRED_KEYS if k not in d]
    if errors:
        return errors
    if d["schema_version"] not in READABLE_VERSIONS:
        errors.append(f"schema_version: expected one of {READABLE_VERSIONS}, got {d['schema_version']!r}")
    _check_uid(d, "study_instance_uid", errors)
    _check_uid(d, "series_instance_uid", errors)
    if d["affected_side"] not in (None, *SIDES):
        errors.append(f"affected_side: expected 'left', 'right' or null, got {d['affected_side']!r}")
    aspects = d["aspects"]
    aspects_ok = isinstance(aspects, Mapping) and set(aspects) == set(SIDES)
    nullable = d["schema_version"] != 1
    aspects_ok = aspects_ok and all(_score_ok(aspects[s], nullable) for s in SIDES)
    if not aspects_ok:
        errors.append(f"aspects: needs integers 0..10 (or null) for 'left' and 'right', got {aspects!r}")
    if not _score_ok(d["score"], nullable):
        errors.append(f"score: not an integer 0..10 or null ({d['score']!r})")
    if not _is_num(d["infarct_volume_ml"]) or d["infarct_volume_ml"] < 0:
        errors.append(f"infarct_volume_ml: not a number >= 0 ({d['infarct_volume_ml']!r})")
    _check_regions(d, errors)
    if not errors:  # cross-field rules only make sense once the fields themselves are well-formed
        _check_consistency(d, errors)
    if not isinstance(d["flags"], list) or not all(isinstance(f, str) for f in d["flags"]):
        errors.append("flags: not a list of strings")
    methods = d["methods"]
    if not isinstance(methods, Mapping) or any(methods.get(k) not in v for k, v in METHODS.items()):
        errors.append(f"methods: expected regions in {METHODS['regions']} and infarct in {METHODS['infarct']}, got {methods!r}")
    else:
        errors += _model_run_problems(methods)
    if not _is_device(d["device"]):
        errors.append(f"device: expected 'cpu' or 'cuda:N', got {d['device']!r}")
    timings = d["timings_s"]
    if not isinstance(timings, Mapping) or not all(isinstance(k, str) and _is_num(v) and v >= 0 for k, v in timings.items()):
        errors.append("timings_s: expected {stage: seconds >= 0}")
    errors += _output_problems(d["outputs"])
    if d["not_for_diagnostic_use"] is not True:
        errors.append("not_for_diagnostic_use: must be true until the models are validated")
    app = d["app"]
    if not isinstance(app, Mapping) or not all(isinstance(app.get(k), str) and app.get(k) for k in ("name", "version")):
        errors.append("app: needs non-empty strings 'name' and 'version'")
    return errors


def _model_run_problems(methods: Mapping[str, Any]) -> List[str]:
    """The optional ``infarct_model`` / ``region_model`` records: present only for a model's path,
    with a version string (or null: the model declares none) and the infarct model's settings."""
    errors = []
    for key, path_key in (("infarct_model", "infarct"), ("region_model", "regions")):
        if key not in methods:
            continue
        run = methods[key]
        if methods[path_key] != "model":
            errors.append(f"methods.{key}: given although methods.{path_key} is {methods[path_key]!r}")
        elif not isinstance(run, Mapping) or not (run.get("version") is None or isinstance(run.get("version"), str)):
            errors.append(f"methods.{key}: needs 'version', a string or null, got {run!r}")
        elif key == "infarct_model" and (run.get("second_channel") not in SECOND_CHANNELS
                                         or run.get("mirror_tta") not in MIRROR_TTA_MODES):
            errors.append(f"methods.infarct_model: expected second_channel in {SECOND_CHANNELS} and mirror_tta in "
                          f"{MIRROR_TTA_MODES}, got {dict(run)!r}")
    return errors


def _relpath_ok(p: Any) -> bool:
    return isinstance(p, str) and bool(p) and not p.startswith("/") and ".." not in Path(p).parts


def _output_problems(outputs: Any) -> List[str]:
    if not isinstance(outputs, Mapping):
        return ["outputs: not an object"]
    errors = [f"outputs: unknown key {k!r}" for k in outputs if k not in OUTPUT_KEYS]
    for k in ("seg", "sr", "kos"):
        if k in outputs and not _relpath_ok(outputs[k]):
            errors.append(f"outputs.{k}: not a relative path inside the output folder ({outputs[k]!r})")
    for k in ("key_images", "png"):
        if k in outputs and (not isinstance(outputs[k], list) or not all(_relpath_ok(p) for p in outputs[k])):
            errors.append(f"outputs.{k}: not a list of relative paths")
    if "nifti" in outputs and (
        not isinstance(outputs["nifti"], Mapping) or not all(_relpath_ok(p) for p in outputs["nifti"].values())
    ):
        errors.append("outputs.nifti: not an object of relative paths")
    return errors


def validate(d: Any) -> None:
    """Raise :class:`ResultSchemaError` listing every problem of ``d``."""
    errors = problems(d)
    if errors:
        raise ResultSchemaError("invalid aspects.json: " + "; ".join(errors))


def result_document(result: AspectsResult, *, study_uid: str, series_uid: str, flags: Sequence[str],
                    flag_details: Mapping[str, Any], qc: Mapping[str, Any], thresholds: Mapping[str, Any],
                    methods: Mapping[str, str], device: str, timings: Mapping[str, float]) -> Dict[str, Any]:
    """The aspects.json content of a scored study, ``outputs`` still empty (:func:`with_outputs`
    adds them once the files are written). The one place the document is assembled."""
    return to_builtin({
        "schema_version": SCHEMA_VERSION,
        "study_instance_uid": study_uid,
        "series_instance_uid": series_uid,
        "affected_side": result.affected_side,
        "aspects": dict(result.aspects),
        "score": result.score,
        "aspects_range": result.aspects_range(),
        "infarct_volume_ml": round(result.infarct_volume_ml, 3),
        "regions": result.regions_json(),
        "flags": list(flags),
        "flag_details": dict(flag_details),
        "qc": {k: v for k, v in qc.items() if isinstance(v, (int, float, str, bool, list, dict)) or v is None},
        "thresholds": dict(thresholds),
        "methods": dict(methods),
        "device": device,
        "timings_s": {k: round(float(v), 3) for k, v in timings.items()},
        "not_for_diagnostic_use": True,
        "app": {"name": APP_NAME, "version": __version__},
        "outputs": {},
    })


def with_outputs(document: Mapping[str, Any], out_dir: Path, outputs: Mapping[str, Any]) -> Dict[str, Any]:
    """A copy of ``document`` whose ``outputs`` name the written files (:func:`relative_outputs`
    arguments: seg, sr, kos, key_images, png, nifti), entries already there kept."""
    merged = dict(document)
    merged["outputs"] = {**dict(document.get("outputs") or {}), **relative_outputs(out_dir, **outputs)}
    return merged


def relative_outputs(
    out_dir: Path,
    seg: Optional[Path] = None,
    sr: Optional[Path] = None,
    key_images: Sequence[Path] = (),
    kos: Optional[Path] = None,
    png: Sequence[Path] = (),
    nifti: Optional[Mapping[str, Path]] = None,
) -> Dict[str, Any]:
    """The ``outputs`` object: paths relative to ``out_dir`` (POSIX separators); absent ones left out."""
    rel = lambda p: Path(p).resolve().relative_to(Path(out_dir).resolve()).as_posix()  # noqa: E731
    out: Dict[str, Any] = {}
    if seg:
        out["seg"] = rel(seg)
    if sr:
        out["sr"] = rel(sr)
    if kos:
        out["kos"] = rel(kos)
    if key_images:
        out["key_images"] = [rel(p) for p in key_images]
    if png:
        out["png"] = [rel(p) for p in png]
    if nifti:
        out["nifti"] = {k: rel(p) for k, p in nifti.items()}
    return out


def to_builtin(value: Any) -> Any:
    """A copy of ``value`` with numpy scalars/arrays, tuples and paths as plain JSON types."""
    if isinstance(value, Mapping):
        return {str(k): to_builtin(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_builtin(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_builtin(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return value.as_posix()
    if isinstance(value, Enum):
        return value.value
    return value


def write_result(result: Mapping, path: Path) -> Path:
    """Validate and write ``result`` as pretty JSON (atomically: temp file + rename).

    numpy numbers are converted first (the caller's dict is not modified).
    """
    result = to_builtin(result)
    validate(result)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(path)
    return path


def read_result(path: Path) -> Dict[str, Any]:
    """Load and validate an aspects.json."""
    d = json.loads(Path(path).read_text())
    validate(d)
    return d
