"""Score infarct-model checkpoints as the whole app would, from stages dumped once.

    python -m aspects_research.tools.checkpoint_rescore --cases CASEROOT --dumps DUMPS \\
        --ckpt A.pt [B.ts ...] --out OUT [--config train.json contra.json] [--rule trim:16]

Choosing a checkpoint by the bundle's validation Dice chose badly here (the model card: the
best-Dice epoch lost more ASPECTS points than others), and running the whole app per checkpoint
costs ~15 s a study. The app's stages other than the infarct model do not depend on it: DUMPS is a
:mod:`aspects_research.tools.consensus_study` dump of the studies (any model; the aligned study,
the asymmetry maps, the deformed mirror, the region labels), and for each checkpoint (a state
dict of the bundle's ``network_def``, or a TorchScript export of it such as the shipped
``models/infarct_seg/infarct_seg.ts``) this tool runs the network on the dumped aligned study with
the input its metadata declares (the bundle configs given: ``contra.json`` among them means
channel 1 is the deformed mirror, ``aspects.model_io.infarct_input``; otherwise the plain mirror),
puts its raw mask in a copy of the dump (``OUT/<ckpt>/dumps``) and re-scores with the app's rule
(``consensus_study --rescore``; ``trim:16`` is the shipped rule). Then ``aspects-evaluate`` reads
``OUT/<ckpt>/runs`` (report ``OUT/<ckpt>/report``), and one line per checkpoint prints the sum of
absolute hemisphere ASPECTS errors, exact and within-1 agreement and the points lost on controls:
what the app's users see. The re-scoring equals the whole app with that model installed (checked
study by study on the v2 test split in session 19, docs/results_v2.md).
"""

from __future__ import annotations

import argparse
import gzip
import json
import pickle
import sys
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import numpy as np
import SimpleITK as sitk

from aspects.errors import EXIT_USAGE, InputError
from aspects.inference import MIRROR_TTA_MODES, MirrorTTA
from aspects.segmentation import INFARCT_MIRROR_TTA, declared_version
from aspects_research.tools import consensus_study, evaluate
from aspects_research.tools.evidence_cache import load_cached, phantom_cases
from aspects_research.tools.weight_average import load_state

BUNDLE = Path(__file__).resolve().parents[2] / "train" / "infarct_seg"


def load_network(state: Dict[str, Any], configs: Sequence[Path]):
    """The bundle's ``network_def`` with the weights ``state`` (``weight_average.load_state`` of a
    ``.pt`` state dict or a ``.ts`` export), in eval mode on the CPU."""
    from monai.bundle import ConfigParser

    if str(BUNDLE) not in sys.path:  # the bundle's scripts/, as `monai.bundle run` has it
        sys.path.insert(0, str(BUNDLE))
    parser = ConfigParser()
    parser.read_config([str(c) for c in configs])
    net = parser.get_parsed_content("network_def")
    net.load_state_dict(state)
    return net.eval()


def raw_mask(net, hu: np.ndarray, brain: np.ndarray, counterpart: Optional[np.ndarray],
             mirror_tta: MirrorTTA = INFARCT_MIRROR_TTA) -> np.ndarray:
    """The model's raw mask on the aligned grid (z, y, x), as :func:`aspects.segmentation.segment_infarct`
    makes it: label 1 (with the app's use of the mirror pass unless ``mirror_tta`` says otherwise),
    inside the brain."""
    from aspects.inference import predict_labels
    from aspects.model_io import from_model_layout, infarct_input

    labels, _ = predict_labels(net, infarct_input(hu, counterpart), "cpu", mirror_tta=mirror_tta)
    return (from_model_layout(labels) == 1) & brain


def sum_abs_errors(report: Dict[str, Any]) -> Dict[str, Any]:
    """Sum of absolute hemisphere ASPECTS errors, exact / within-1 counts and the points lost on
    controls, from an ``aspects-evaluate`` report (JSON)."""
    e = evaluate.hemisphere_errors(report["cases"])
    return {"hemispheres": int(e.size), "sum_abs_error": int(e.sum()), "exact": int((e == 0).sum()),
            "within_1": int((e <= 1).sum()), "control_points": int(report["controls_points_lost"])}


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=Path, required=True, help="phantom root (<case>/dicom, truth.json)")
    ap.add_argument("--dumps", type=Path, required=True, help="consensus_study dump folder of these cases")
    ap.add_argument("--ckpt", type=Path, nargs="+", required=True, help="state dicts (.pt) or TorchScript exports (.ts) of the bundle's network_def")
    ap.add_argument("--out", type=Path, required=True, help="output root (<ckpt stem>/dumps, runs, report)")
    ap.add_argument("--config", type=Path, nargs="+", default=[BUNDLE / "configs" / "train.json"],
                    help="bundle configs, merged in order (contra.json among them: channel 1 is the deformed mirror)")
    ap.add_argument("--rule", default="trim:16", help="consensus rule (default trim:16, the app's)")
    ap.add_argument("--models", type=Path, default=Path("models"), help="models folder for the region stage (default models)")
    ap.add_argument("--mirror-tta", choices=MIRROR_TTA_MODES, default=INFARCT_MIRROR_TTA.value,
                    help=f"the second pass on the left-right mirror image: off, mean or agree (default {INFARCT_MIRROR_TTA.value}, the app's)")
    args = ap.parse_args(argv)
    try:
        cases = phantom_cases([args.cases])
        states = {ckpt: load_state(ckpt) for ckpt in args.ckpt}  # every checkpoint read before the long work
    except InputError as exc:
        print(exc.one_line(), file=sys.stderr)
        return exc.code
    contra = any(c.name == "contra.json" for c in args.config)
    summaries = {}
    for ckpt, state in states.items():
        net = load_network(state, args.config)
        model_run = {"version": declared_version(ckpt) if ckpt.suffix == ".ts" else None,
                     "second_channel": "contra" if contra else "mirror", "mirror_tta": args.mirror_tta}
        root = args.out / ckpt.stem
        dumps = root / "dumps"
        dumps.mkdir(parents=True, exist_ok=True)
        for case in cases:
            src = args.dumps / f"{case.name}.npz"
            dst = dumps / src.name
            if not src.is_file() or dst.is_file():
                continue
            d = load_cached(src)
            if contra and "counterpart_ref" not in d:
                print(f"error[{EXIT_USAGE}]: {src} has no deformed mirror (dumped before it was kept); dump again",
                      file=sys.stderr)
                return EXIT_USAGE
            with gzip.open(consensus_study.state_path(src), "rb") as f:
                state = pickle.load(f)
            hu = sitk.GetArrayFromImage(state["pre"].aligned)
            d["raw"] = raw_mask(net, hu, d["brain"], d["counterpart_ref"] if contra else None,
                                mirror_tta=MirrorTTA(args.mirror_tta))
            meta = {**d.pop("meta"), "infarct_model": model_run}  # how this raw mask was made, for aspects.json
            part = dst.with_suffix(".part.npz")
            np.savez_compressed(part, **d, meta=np.array(json.dumps(meta)))
            link = consensus_study.state_path(dst)
            if not link.exists():
                link.symlink_to(consensus_study.state_path(src).resolve())
            part.rename(dst)
        runs = root / "runs"
        rc = consensus_study.main(["--cases", str(args.cases), "--out", str(dumps), "--models", str(args.models),
                                   "--rescore", args.rule, "--runs", str(runs), "--resume"])
        if rc:
            return rc
        rc = evaluate.main(["--cases", str(args.cases), "--runs", str(runs), "--report", str(root / "report")])
        if rc:
            return rc
        summaries[ckpt.stem] = sum_abs_errors(json.loads((root / "report.json").read_text()))
        print(f"{ckpt.stem}: {json.dumps(summaries[ckpt.stem])}", flush=True)
    (args.out / "summary.json").write_text(json.dumps(summaries, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
