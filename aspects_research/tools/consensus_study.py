"""Dump what the infarct consensus sees, per study and for two mirror-SyN settings, for offline
study of consensus rules (``aspects.segmentation``).

    python -m aspects_research.tools.consensus_study --cases CASEROOT [CASEROOT ...] --out DIR
        [--models models] [--alt-iterations 30 5]

Runs the app's own stages (:class:`aspects.pipeline.Pipeline`, sequential) on every phantom under
each CASEROOT (``<case>/dicom`` + ``truth.json``, aspects-make-phantoms): scan, select, preprocess,
both segmenters and scoring with the shipped settings, at the shipped mirror SyN
(``aspects.asymmetry.CONTRA_SYN_ITERATIONS``); then the asymmetry maps once more with the mirror SyN
at ``--alt-iterations``. Writes ``DIR/<case>.npz`` with, on the aligned grid (z, y, x): the brain
mask, the model's raw mask (before the consensus), the shipped consensus mask, per SyN setting
(suffix ``_ref`` / ``_alt``) the difference map, the comparable mask and the asymmetry support,
the shipped SyN's deformed mirror (``counterpart_ref``: a "contra" model's channel 1; see
:mod:`aspects_research.tools.checkpoint_rescore`),
the region labels, blood (for :func:`aspects.flags.acute_only`), the truth infarct; and ``meta``
(JSON): truth.json, the app's per-region calls (involved, involved_by, assessable), ASPECTS, the
thresholds, the spacing and the two SyN settings; and ``DIR/<case>.pkl.gz``: the preprocessed study
(without its source image) and the region segmentation, so that a consensus rule can be scored
exactly as the app scores it without the registrations:

    python -m aspects_research.tools.consensus_study --cases CASEROOT ... --out DIR --rescore RULE
        --syn ref|alt --runs RUNS

reloads each series, applies RULE (``touch``: the app's consensus without the scorer's growth;
``grow``: the app as shipped, the touch consensus grown by the scorer into the asymmetry
(``aspects.segmentation.grow_into_support``), ``grow:S`` with its least share S; ``union``: touch
plus every support component it touches, before the exclusions; ``raw``: no consensus; ``mean:T:F:N``: :func:`mean_consensus`) to the dumped raw mask and maps of that SyN setting and
writes aspects.json and nifti/ (what ``aspects-evaluate --runs RUNS --report`` reads) into
``RUNS/<case>``; the same stage functions as the app (:func:`aspects.assess.assess_study`), so
aspects.json and the masks equal the app's for that rule apart from the timings and the study's
pickling (``touch`` at the shipped SyN reproduced the app's aspects.json regions, scores, flags
and masks on all 44 v2 test and 20 val studies, 2026-12-02). A case already dumped is skipped
(restartable; ``--resume`` does the same for rescored cases). One line per study.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import pickle
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence

import numpy as np
import SimpleITK as sitk
from scipy import ndimage as ndi

from aspects import asymmetry, segmentation
from aspects.assess import ScoringSettings, assess_study
from aspects.dicom_input import scan_folder
from aspects.errors import EXIT_USAGE, InputError
from aspects.flags import find
from aspects.inference import MIRROR_TTA_MODES, MirrorTTA
from aspects.labels import REGION_CODES, SIDES
from aspects.methods import SECOND_CHANNELS
from aspects.model_io import from_model_layout
from aspects.outputs import WrittenOutputs, nifti_outputs, result_json_output
from aspects.pipeline import Pipeline
from aspects.preprocess import ALIGNED_SPACING, to_aligned
from aspects.segmentation import InfarctSegmentation, _on_aligned
from aspects.series import choose_series, load_series
from aspects_research.tools.evidence_cache import cache_parser, load_cached, pending_cases, phantom_cases, run_stages


class _Grab:
    """Records the infarct model's labels (wraps the model's ``predict``), from which the raw
    model mask before any consensus follows as in :func:`aspects.segmentation.segment_infarct`."""

    def __init__(self, model: segmentation.TorchModel) -> None:
        self.predict = model.predict
        self.labels: Optional[np.ndarray] = None

    def __call__(self, x: np.ndarray, module: Any = None) -> np.ndarray:
        self.labels = self.predict(x, module)
        return self.labels


def region_calls(document: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
    """Per side and code: involved, involved_by, assessable as the app reported them."""
    return {side: {code: {k: document["regions"][side][code].get(k) for k in ("involved", "involved_by", "assessable")}
                   for code in REGION_CODES} for side in SIDES}


def state_path(npz: Path) -> Path:
    """The pickle next to a dump (``<case>.pkl.gz``)."""
    return npz.with_name(npz.name.replace(".part", "").replace(".npz", ".pkl.gz"))


def dump_case(pipeline: Pipeline, case: Path, out: Path, grab: _Grab, alt: Sequence[int]) -> Dict[str, Any]:
    """One phantom through the app's stages and the alternative mirror SyN; writes ``out`` (npz)
    and :func:`state_path` (pickle; written first, the npz marks a complete dump)."""
    grab.labels = None
    truth, series, pre, infarct, regions = run_stages(pipeline, case)
    if grab.labels is None:
        raise RuntimeError("the infarct model did not run")
    settings = ScoringSettings()
    scored = assess_study(series, pre, infarct, regions, settings)
    hu = sitk.GetArrayFromImage(pre.aligned)
    brain = sitk.GetArrayFromImage(pre.brain_mask) > 0
    ref_iter = tuple(asymmetry.CONTRA_SYN_ITERATIONS)
    t0 = time.perf_counter()
    asymmetry.CONTRA_SYN_ITERATIONS = tuple(alt)
    try:
        maps_alt = asymmetry.asymmetry_maps(hu, brain, grid=pre.aligned)
    finally:
        asymmetry.CONTRA_SYN_ITERATIONS = ref_iter
    alt_s = time.perf_counter() - t0
    raw = (from_model_layout(grab.labels) == 1) & brain
    support_ref, _ = asymmetry.asymmetry_infarct(hu, brain, ALIGNED_SPACING, maps=infarct.asymmetry)
    support_alt, _ = asymmetry.asymmetry_infarct(hu, brain, ALIGNED_SPACING, maps=maps_alt)
    dense = sitk.GetArrayFromImage(pre.dense) > 0 if pre.dense is not None else None
    findings = find(hu, brain, pre.aligned.GetSpacing(), dense)
    truth_img = sitk.Cast(sitk.ReadImage(str(case / "truth" / "infarct.nii.gz")), sitk.sitkUInt8)
    truth_al = sitk.GetArrayFromImage(to_aligned(pre, truth_img, label=True)) > 0
    doc = scored.document
    meta = {"case": case.name, "truth": truth, "calls": region_calls(doc), "aspects": doc.get("aspects"),
            "flags": doc.get("flags"), "thresholds": settings.thresholds(), "spacing_mm": list(pre.aligned.GetSpacing()),
            "iterations_ref": list(ref_iter), "iterations_alt": list(alt), "alt_syn_s": round(alt_s, 2),
            "consensus_info": infarct.info.get("consensus")}
    state = {"pre": dataclasses.replace(pre, source=None), "regions": regions, "method": infarct.method,
             "device": infarct.device, "info": infarct.info}
    with gzip.open(state_path(out), "wb", compresslevel=1) as f:
        pickle.dump(state, f)
    np.savez_compressed(
        out, brain=brain, raw=raw, app_mask=sitk.GetArrayFromImage(infarct.mask) > 0,
        diff_ref=infarct.asymmetry.difference.astype(np.float32), comparable_ref=infarct.asymmetry.comparable,
        support_ref=support_ref, diff_alt=maps_alt.difference.astype(np.float32),
        comparable_alt=maps_alt.comparable, support_alt=support_alt.astype(bool),
        counterpart_ref=np.asarray(infarct.asymmetry.counterpart, np.float32),
        labels=sitk.GetArrayFromImage(regions.labels).astype(np.uint8), blood=findings.blood.astype(bool),
        truth_infarct=truth_al, meta=np.array(json.dumps(meta)))
    return meta


def rule_touch(raw: np.ndarray, diff: np.ndarray, comparable: np.ndarray, support: np.ndarray) -> np.ndarray:
    """The app's consensus: the components touching the asymmetry support
    (:func:`aspects.segmentation.consensus_components`), cut to SUPPORT_REACH_MM around it
    (since session 18; ``trim:inf`` is the rule before)."""
    return trim_to(raw, support, segmentation.SUPPORT_REACH_MM)


def mean_consensus(raw: np.ndarray, diff: np.ndarray, comparable: np.ndarray, min_mean_hu: float = 3.5,
                   min_comparable: float = 0.7, min_voxels: int = 25) -> np.ndarray:
    """The continuous consensus tried on 2026-12-02 (docs/results_v2.md, "Infarct consensus", not
    shipped): a 26-connected component of ``raw`` is kept when at least ``min_comparable`` of its
    voxels are comparable, the mean of ``diff`` over those is >= ``min_mean_hu`` and it has at least
    ``min_voxels`` voxels (a region-level bilateral comparison over the predicted infarct, as the
    refinement step of PAPL, Sun et al., IEEE TMI 2024;43:4146-60)."""
    lab, n = ndi.label(raw, structure=np.ones((3, 3, 3), bool))
    if n == 0:
        return np.zeros(raw.shape, bool)
    idx = np.arange(1, n + 1)
    voxels = ndi.sum_labels(np.ones(lab.shape, np.float64), lab, idx)
    n_ok = ndi.sum_labels(comparable, lab, idx)
    diff_sum = ndi.sum_labels(np.where(comparable, diff, 0.0).astype(np.float64), lab, idx)
    mean = np.divide(diff_sum, n_ok, out=np.zeros(n), where=n_ok > 0)
    keep = (voxels >= min_voxels) & (n_ok >= min_comparable * voxels) & (n_ok > 0) & (mean >= min_mean_hu)
    return np.isin(lab, idx[keep])


def rule_union(raw: np.ndarray, diff: np.ndarray, comparable: np.ndarray, support: np.ndarray) -> np.ndarray:
    """The app's consensus plus the support's components that touch it, before the exclusions
    (the asymmetry's extent of a lesion the model found in part)."""
    return segmentation.grow_into_support(rule_touch(raw, diff, comparable, support), support, 0.0)


def trim_to(raw: np.ndarray, support: np.ndarray, reach_mm: float) -> np.ndarray:
    """The consensus with the kept components cut to ``reach_mm`` around the support
    (:func:`aspects.segmentation.trim_to_support`; the app's reach is SUPPORT_REACH_MM)."""
    return segmentation.trim_to_support(segmentation.consensus_components(raw, support)[0], support, reach_mm)


RULES: Dict[str, Callable[..., np.ndarray]] = {
    "touch": rule_touch, "grow": rule_touch, "union": rule_union, "raw": lambda raw, diff, comparable, support: raw.astype(bool)}


def rule_function(rule: str) -> Callable[..., np.ndarray]:
    """A rule of :data:`RULES`, or ``mean:T:F:N``: :func:`mean_consensus` with mean difference
    >= T HU, comparable fraction >= F and at least N voxels."""
    if rule in RULES:
        return RULES[rule]
    if rule.startswith("grow:"):  # grow:MIN_SHARE, scored by the app's scorer (see rescore_case)
        return rule_touch
    if rule.startswith("trim:"):  # trim:MM (inf: no cut), then grown by the scorer as the app does
        mm = float(rule.split(":")[1])
        return lambda raw, diff, comparable, support: trim_to(raw, support, mm)
    _, t, f, n = rule.split(":")
    return lambda raw, diff, comparable, support: mean_consensus(raw, diff, comparable, float(t), float(f), int(n))


def model_run(meta: Dict[str, Any], info: Dict[str, Any]) -> Dict[str, Any]:
    """How the dumped raw mask was made, as the infarct stage's info records it (aspects.json
    ``methods.infarct_model``): what checkpoint_rescore wrote into the dump's meta when it replaced
    the mask, else the dumping app's own record; a dump made before the app recorded them holds
    what the app then did: one pass (no mirror pass before session 30) on the plain mirror (no
    "contra" model before 0.5.0)."""
    run = meta.get("infarct_model")
    if run:
        return {"model_version": run["version"], "second_channel": run["second_channel"], "mirror_tta": run["mirror_tta"]}
    tta, second = info.get("mirror_tta"), info.get("second_channel")
    return {"mirror_tta": tta if tta in MIRROR_TTA_MODES else MirrorTTA.OFF.value,
            "second_channel": second if second in SECOND_CHANNELS else "mirror"}


def rescore_case(pipeline: Pipeline, case: Path, dump: Path, run: Path, rule: str, syn: str) -> Dict[str, Any]:
    """aspects.json and nifti/ of one dumped study with the infarct mask of ``rule`` at ``syn``."""
    d = load_cached(dump)
    with gzip.open(state_path(dump), "rb") as f:
        state = pickle.load(f)
    series = load_series(choose_series(scan_folder(case / "dicom"), pipeline.rules))
    pre = dataclasses.replace(state["pre"], source=series.volume.image)
    maps = asymmetry.AsymmetryMaps(d[f"diff_{syn}"], d[f"comparable_{syn}"],
                                   d["counterpart_ref"] if syn == "ref" and "counterpart_ref" in d else None)
    mask = rule_function(rule)(d["raw"], maps.difference, maps.comparable, d[f"support_{syn}"])
    info = {**state["info"], **model_run(d["meta"], state["info"]), "consensus": {"rule": rule}}
    # "grow": the touch consensus grown by the scorer (ScoringSettings.grow_into_asymmetry, the app's
    # default); every other rule is scored as it masks
    infarct = InfarctSegmentation(_on_aligned(mask, pre), state["method"], state["device"], info, maps,
                                  d[f"support_{syn}"])
    settings = ScoringSettings(grow_into_asymmetry=rule == "grow" or rule.startswith(("grow:", "trim:")))
    if rule.startswith("grow:"):
        settings = dataclasses.replace(settings, grow_min_share=float(rule.split(":")[1]))
    regions = state["regions"]
    if regions.levels is None:  # dumped before the regions carried the atlas's levels (session 27)
        regions = dataclasses.replace(regions, levels=dict(pipeline.atlas().levels))
    scored = assess_study(series, pre, infarct, regions, settings)
    run.mkdir(parents=True, exist_ok=True)
    written = WrittenOutputs(nifti=nifti_outputs(scored, run))
    result_json_output(scored, run, written)
    return scored.document


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = cache_parser(__doc__.split("\n\n")[0], "dump folder (<case>.npz)")
    ap.add_argument("--alt-iterations", type=int, nargs=2, default=(30, 5), help="the other mirror SyN (default 30 5)")
    ap.add_argument("--rescore", help=f"score the dumped studies with this consensus rule ({', '.join(RULES)}, grow:SHARE, trim:MM or mean:T:F:N)")
    ap.add_argument("--syn", choices=("ref", "alt"), default="ref", help="with --rescore: which dumped SyN maps")
    ap.add_argument("--runs", type=Path, help="with --rescore: output root (<case>/aspects.json, nifti/)")
    ap.add_argument("--resume", action="store_true", help="with --rescore: skip cases with an aspects.json in --runs")
    args = ap.parse_args(argv)
    try:
        cases = phantom_cases(args.cases)
    except InputError as exc:
        print(exc.one_line(), file=sys.stderr)
        return exc.code
    pipeline = Pipeline(args.models, parallel=False)
    if args.rescore:
        if args.runs is None:
            print(f"error[{EXIT_USAGE}]: --rescore needs --runs", file=sys.stderr)
            return EXIT_USAGE
        for i, case in enumerate(cases, 1):
            dump = args.out / f"{case.name}.npz"
            if not dump.is_file():
                print(f"[{i}/{len(cases)}] {case.name}: not dumped, skipped", flush=True)
                continue
            if args.resume and (args.runs / case.name / "aspects.json").is_file():
                continue
            doc = rescore_case(pipeline, case, dump, args.runs / case.name, args.rescore, args.syn)
            print(f"[{i}/{len(cases)}] {case.name}: ASPECTS {doc.get('aspects')}, {doc.get('infarct_volume_ml')} ml",
                  flush=True)
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    if pipeline.models.infarct is None:
        print(f"error[{EXIT_USAGE}]: no infarct model in {args.models}", file=sys.stderr)
        return EXIT_USAGE
    grab = _Grab(pipeline.models.infarct)
    pipeline.models.infarct.predict = grab  # type: ignore[method-assign]
    try:
        for i, case, part in pending_cases(cases, args.out):
            t0 = time.perf_counter()
            meta = dump_case(pipeline, case, part, grab, args.alt_iterations)
            print(f"[{i}/{len(cases)}] {case.name} {time.perf_counter() - t0:.1f} s (alt SyN {meta['alt_syn_s']} s); "
                  f"ASPECTS {meta['aspects']}; consensus {meta['consensus_info']}", flush=True)
    finally:
        del pipeline.models.infarct.predict
    return 0


if __name__ == "__main__":
    sys.exit(main())
