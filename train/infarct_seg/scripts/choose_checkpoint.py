"""Choose among saved checkpoints by HU-balanced validation Dice.

    python train/infarct_seg/scripts/choose_checkpoint.py --dataset_dir ALIGNED --phantoms PH_VAL \
        --ckpt RUN/models/epochs/*.pt [RUN/models/model.pt ...] [--json OUT.json] [--config configs/contra.json]

The bundle's own key metric (mean Dice over the validation studies) is dominated by whichever HU
drop the validation set holds most of; the ship rule weighs infarcts of >= 4 HU as well as the
early change below it. Here each checkpoint is scored on the validation acute studies by the mean
Dice of each HU stratum (< 4 HU, >= 4 HU), and the checkpoint with the best mean of the two
strata is chosen (ties: the earlier file in the list). The volume each checkpoint marks on the
validation controls (studies without an acute infarct) is reported beside it, not used in the
choice (a model that gains Dice by marking more tissue shows there). Cases' HU drop and kind come from the
phantoms' ``params.json``; studies with an empty truth do not enter a Dice. The network, the
datalist and the validation preprocessing are the bundle's (``configs/train.json``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np
import torch

from aspects_research import metrics

BUNDLE = Path(__file__).resolve().parents[1]
STRATA = (("< 4 HU", -math.inf, 4.0), (">= 4 HU", 4.0, math.inf))
VOXEL_ML = 2.0 ** 3 / 1000.0  # the aligned grid's 2 mm voxels


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Dice of two masks, :func:`aspects_research.metrics.dice` (only acute studies, whose truth is
    never empty, enter it; 0.0 if both were empty)."""
    value = metrics.dice(metrics.counts(pred, truth))
    return 0.0 if value is None else value


def balanced(per_case: Dict[str, float], hu: Dict[str, float]) -> Dict[str, float]:
    """Mean Dice per stratum and their mean (``"balanced"``); a stratum without cases is left out."""
    out: Dict[str, float] = {}
    for name, lo, hi in STRATA:
        vals = [d for c, d in per_case.items() if lo <= hu[c] < hi]
        if vals:
            out[name] = float(np.mean(vals))
    out["balanced"] = float(np.mean([out[n] for n, _, _ in STRATA if n in out])) if out else float("nan")
    out["all"] = float(np.mean(list(per_case.values()))) if per_case else float("nan")
    return out


def _state_dict(path: Path) -> dict:
    sd = torch.load(path, map_location="cpu", weights_only=True)
    return sd["model"] if isinstance(sd, dict) and "model" in sd and isinstance(sd["model"], dict) else sd


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset_dir", required=True, help="folder of infarct.json (its validation list is scored)")
    ap.add_argument("--phantoms", required=True, type=Path, action="append", help="phantom folder(s) holding the cases' params.json")
    ap.add_argument("--ckpt", required=True, nargs="+", type=Path)
    ap.add_argument("--json", type=Path, help="write every checkpoint's figures here")
    ap.add_argument("--config", type=Path, action="append", default=[],
                    help="a config merged after configs/train.json, as in training (e.g. configs/contra.json)")
    args = ap.parse_args(argv)

    from monai.bundle import ConfigParser
    from monai.data import load_decathlon_datalist

    sys.path.insert(0, str(BUNDLE))  # the bundle's scripts/ (as `monai.bundle run` does)
    torch.set_num_threads(1)
    parser = ConfigParser()
    parser.read_config([str(BUNDLE / "configs" / "train.json"), *map(str, args.config)])
    parser["dataset_dir"] = str(args.dataset_dir)
    net = parser.get_parsed_content("network_def")
    transform = parser.get_parsed_content("validate#preprocessing")
    datalist = str(Path(args.dataset_dir) / "infarct.json")
    items = load_decathlon_datalist(datalist, True, "validation", str(Path(datalist).parent))
    cases: List[tuple] = []
    controls: List[tuple] = []  # no acute infarct: what the model marks there is false
    hu: Dict[str, float] = {}
    for it in items:
        name = Path(it["image"]).name.replace(".nii.gz", "")
        params = next((p / name / "params.json" for p in args.phantoms if (p / name / "params.json").is_file()), None)
        if params is None:
            print(f"error[2]: no params.json for {name} under {', '.join(map(str, args.phantoms))}", file=sys.stderr)
            return 2
        p = json.loads(params.read_text())
        d = transform(it)
        label = np.asarray(d["label"])[0] > 0
        x = torch.as_tensor(np.asarray(d["image"]))[None]
        if p["kind"] != "acute":
            if not label.any():
                controls.append((name, x))
            continue
        if not label.any():
            continue
        cases.append((name, x, label))
        hu[name] = float(p["hu_drop"])
    print(f"{len(cases)} acute validation studies ({sum(v < 4 for v in hu.values())} below 4 HU), {len(controls)} controls")
    results = []
    net.eval()
    for ck in args.ckpt:
        net.load_state_dict(_state_dict(ck))
        per_case = {}
        with torch.no_grad():
            for name, x, label in cases:
                pred = net(x).argmax(1)[0].numpy() > 0
                per_case[name] = dice(pred, label)
            false_ml = {name: float((net(x).argmax(1)[0].numpy() > 0).sum()) * VOXEL_ML for name, x in controls}
        figs = balanced(per_case, hu)
        figs["controls_false_ml"] = float(np.mean(list(false_ml.values()))) if false_ml else float("nan")
        results.append({"ckpt": str(ck), **figs, "per_case": per_case, "false_ml": false_ml})
        print(f"{ck}: balanced {figs['balanced']:.3f}  " + "  ".join(f"{n} {figs[n]:.3f}" for n, _, _ in STRATA if n in figs)
              + f"  all {figs['all']:.3f}  controls: {figs['controls_false_ml']:.1f} ml marked (mean)", flush=True)
    best = max(range(len(results)), key=lambda i: (results[i]["balanced"], -i))
    print(f"chosen: {results[best]['ckpt']} (balanced validation Dice {results[best]['balanced']:.3f})")
    if args.json:
        args.json.write_text(json.dumps({"chosen": results[best]["ckpt"], "results": results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
