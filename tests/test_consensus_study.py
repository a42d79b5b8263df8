"""The consensus rules of the research tool aspects_research.tools.consensus_study: the continuous
rule tried on 2026-12-02 (docs/results_v2.md, "Infarct consensus") and the app's rule."""

from __future__ import annotations

import numpy as np
import pytest

from aspects_research.tools.consensus_study import mean_consensus, rule_function


def _two_cubes(shape=(20, 20, 20)):
    model = np.zeros(shape, bool)
    model[2:6, 2:6, 2:6] = True  # 64 voxels
    model[12:16, 12:16, 12:16] = True
    return model


def test_mean_rule_keeps_a_component_darker_than_its_counterpart_and_drops_a_weak_one():
    model = _two_cubes()
    diff = np.zeros(model.shape, np.float32)
    diff[2:6, 2:6, 2:6] = 5.0
    diff[12:16, 12:16, 12:16] = 1.0
    diff[0, 0, 0] = 9.0  # asymmetry outside the model's mask is never added
    kept = mean_consensus(model, diff, np.ones(model.shape, bool))
    assert kept[2:6, 2:6, 2:6].all() and kept.sum() == 64
    assert not mean_consensus(np.zeros_like(model), diff, np.ones(model.shape, bool)).any()


def test_mean_rule_judges_the_whole_component_not_single_voxels():
    model = _two_cubes()
    diff = np.full(model.shape, 1.0, np.float32)
    diff[12:16, 12:16, 12:14] = 7.0  # half the second cube: mean 4 HU
    diff[3, 3, 3] = 15.0  # one bright voxel: enough for the app's "touches the support" rule
    kept = mean_consensus(model, diff, np.ones(model.shape, bool))
    assert not kept[2:6, 2:6, 2:6].any() and kept[12:16, 12:16, 12:16].all()


def test_mean_rule_drops_a_component_mostly_outside_comparable_parenchyma():
    model = _two_cubes()
    diff = np.where(model, 7.0, 0.0).astype(np.float32)
    comparable = np.ones(model.shape, bool)
    comparable[2:6, 2:6, 2:5] = False  # 25 % of the first cube comparable (a CSF-dense old infarct)
    kept = mean_consensus(model, diff, comparable)
    assert not kept[2:6, 2:6, 2:6].any() and kept[12:16, 12:16, 12:16].all()
    small = np.zeros(model.shape, bool)
    small[1:3, 1:3, 1:3] = True  # 8 voxels < 25
    assert not mean_consensus(small, np.full(model.shape, 10.0, np.float32), np.ones(model.shape, bool)).any()


def test_mean_rule_does_not_flip_with_a_small_change_of_the_map_far_from_its_threshold():
    rng = np.random.default_rng(7)
    model = _two_cubes()
    base = np.zeros(model.shape, np.float32)
    base[2:6, 2:6, 2:6] = 5.0
    base[12:16, 12:16, 12:16] = 2.0
    calls = set()
    for k in range(20):
        noisy = base + 0.8 * (k / 19.0 - 0.5) + rng.normal(0.0, 1.0, model.shape).astype(np.float32)
        kept = mean_consensus(model, noisy, np.ones(model.shape, bool))
        calls.add((bool(kept[3, 3, 3]), bool(kept[13, 13, 13])))
    assert calls == {(True, False)}


def test_touch_rule_is_the_apps_consensus():
    model = _two_cubes()
    support = np.zeros(model.shape, bool)
    support[3, 3, 3] = True
    kept = rule_function("touch")(model, None, None, support)
    assert kept[2:6, 2:6, 2:6].all() and kept.sum() == 64
    assert rule_function("mean:3.5:0.7:25") is not rule_function("touch")


def test_sweep_counts_kept_true_and_moving_volume(tmp_path):
    import json

    from aspects_research.tools.consensus_sweep import study_rows, summary

    model = _two_cubes()
    truth = np.zeros_like(model)
    truth[2:6, 2:6, 2:6] = True
    ref = np.where(model, 5.0, 0.0).astype(np.float32)
    ref[12:16, 12:16, 12:16] = 3.4  # a false component just under 3.5 HU ...
    alt = ref.copy()
    alt[12:16, 12:16, 12:16] = 3.6  # ... and just over it with the other SyN
    ok = np.ones(model.shape, bool)
    meta = {"case": "c1", "truth": {"kind": "acute", "hu_drop": 5.0}}
    np.savez_compressed(tmp_path / "c1.npz", raw=model, truth_infarct=truth, diff_ref=ref, diff_alt=alt, comparable_ref=ok,
                        comparable_alt=ok, support_ref=truth, support_alt=truth, meta=np.array(json.dumps(meta)))
    row = study_rows(tmp_path / "c1.npz", ["mean:3.5:0.7:25", "touch"])
    assert row["n_components"] == 2
    assert row["rules"]["mean:3.5:0.7:25"] == {"dice": 1.0, "kept": 64, "tp": 64, "stable": 2 * 64 / (64 + 128)}
    assert row["rules"]["touch"]["stable"] == 1.0 and row["rules"]["touch"]["dice"] == 1.0
    assert "differ (Dice < 0.99) on 1 of 1" in summary([row], "mean:3.5:0.7:25")


def test_trim_rule_cuts_a_kept_component_back_to_where_the_asymmetry_is():
    raw = np.zeros((10, 10, 40), bool)
    raw[3:7, 3:7, 2:38] = True  # one long model component
    support = np.zeros_like(raw)
    support[3:7, 3:7, 2:6] = True  # the comparison sees its first 4 columns only
    other = np.zeros_like(raw)
    other[0, 0, 20] = True  # a component touching no support: dropped as by the app's consensus
    trimmed = rule_function("trim:4")(raw | other, None, None, support)
    cols = np.nonzero(trimmed.any(axis=(0, 1)))[0]
    assert cols.min() == 2 and cols.max() == 7  # 4 mm = two 2 mm voxels beyond the support
    assert not trimmed[0, 0, 20]
    assert rule_function("trim:inf")(raw, None, None, support).sum() == raw.sum()  # the rule before session 18
    assert (rule_function("touch")(raw, None, None, support) == rule_function("trim:16")(raw, None, None, support)).all()
    assert not rule_function("trim:4")(raw, None, None, np.zeros_like(raw)).any()


def test_a_rescored_dump_says_how_its_mask_was_made():
    """consensus_study.model_run: checkpoint_rescore's record in the dump wins; a dump made before
    the app recorded its mirror pass or second channel was one pass on the plain mirror."""
    from aspects_research.tools.consensus_study import model_run

    record = {"version": None, "second_channel": "contra", "mirror_tta": "off"}
    assert model_run({"infarct_model": record}, {"mirror_tta": "agree", "second_channel": "contra"}) == \
        {"model_version": None, "second_channel": "contra", "mirror_tta": "off"}
    assert model_run({}, {"mirror_tta": "agree", "second_channel": "contra"}) == {"mirror_tta": "agree", "second_channel": "contra"}
    assert model_run({}, {}) == {"mirror_tta": "off", "second_channel": "mirror"}


@pytest.mark.slow
@pytest.mark.e2e
def test_checkpoint_rescore_of_the_shipped_weights_reproduces_the_apps_aspects(phantom_case, tmp_path):
    """aspects_research.tools.checkpoint_rescore: the shipped model's own weights, run on a dumped
    study and re-scored with the app's rule, give the app's ASPECTS, regions and volume; the summary
    counts the hemisphere errors against the truth."""
    import json

    import torch

    from aspects.segmentation import INFARCT_MIRROR_TTA, declared_second_channel, declared_version
    from aspects_research.tools import checkpoint_rescore, consensus_study
    from tests.support import REPO

    root = tmp_path / "cases"
    root.mkdir()
    case = phantom_case(61, kind="acute", thickness=5.0, hu_drop=10.0, side="left", pattern="M2")
    (root / case.name).symlink_to(case)
    dumps = tmp_path / "dumps"
    assert consensus_study.main(["--cases", str(root), "--out", str(dumps), "--models", str(REPO / "models")]) == 0
    dumped = np.load(dumps / f"{case.name}.npz")
    meta = json.loads(str(dumped["meta"]))
    assert dumped["counterpart_ref"].shape == dumped["brain"].shape  # what a "contra" checkpoint reads
    shipped = REPO / "models" / "infarct_seg" / "infarct_seg.ts"
    ckpt = tmp_path / "shipped.pt"  # the same weights as a bundle state dict
    torch.save(torch.jit.load(str(shipped)).state_dict(), ckpt)
    # the bundle configs that build the input the shipped model declares (contra.json: the deformed
    # mirror), and the other input
    plain = [str(checkpoint_rescore.BUNDLE / "configs" / "train.json")]
    contra = plain + [str(checkpoint_rescore.BUNDLE / "configs" / "contra.json")]
    own, other = (contra, plain) if declared_second_channel(shipped) == "contra" else (plain, contra)
    out = tmp_path / "out"
    # the TorchScript export itself is read as a checkpoint
    assert checkpoint_rescore.main(["--cases", str(root), "--dumps", str(dumps), "--ckpt", str(shipped),
                                    "--out", str(out), "--models", str(REPO / "models"), "--config", *own]) == 0
    np.testing.assert_array_equal(np.load(out / "infarct_seg" / "dumps" / f"{case.name}.npz")["raw"], dumped["raw"])
    doc = json.loads((out / "infarct_seg" / "runs" / case.name / "aspects.json").read_text())
    assert doc["aspects"] == meta["aspects"]
    assert {s: {c: doc["regions"][s][c]["involved"] for c in doc["regions"][s]} for s in ("left", "right")} == \
        {s: {c: v["involved"] for c, v in meta["calls"][s].items()} for s in ("left", "right")}
    truth = json.loads((case / "truth.json").read_text())["aspects"]
    errors = [abs(int(meta["aspects"][s]) - int(truth[s])) for s in ("left", "right")]
    summary = json.loads((out / "summary.json").read_text())["infarct_seg"]
    assert summary["hemispheres"] == 2 and summary["sum_abs_error"] == sum(errors)
    assert summary["exact"] == sum(e == 0 for e in errors)
    # the same weights given the other second channel (the plain mirror, or the dump's deformed
    # counterpart) get it, and score
    # aspects.json says how the rescored mask was made: the export's version, its input, the app's mirror pass
    assert doc["methods"]["infarct_model"] == {"version": declared_version(shipped), "second_channel": declared_second_channel(shipped),
                                               "mirror_tta": INFARCT_MIRROR_TTA.value}
    assert checkpoint_rescore.main(["--cases", str(root), "--dumps", str(dumps), "--ckpt", str(ckpt), "--out",
                                    str(tmp_path / "out2"), "--models", str(REPO / "models"), "--config", *other,
                                    "--mirror-tta", "off"]) == 0
    doc2 = json.loads((tmp_path / "out2" / "shipped" / "runs" / case.name / "aspects.json").read_text())
    assert doc2["methods"]["infarct_model"] == {"version": None, "mirror_tta": "off",  # a state dict declares no version
                                                "second_channel": "contra" if other is contra else "mirror"}
