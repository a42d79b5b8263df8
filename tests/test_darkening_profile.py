"""The darkening profile of a region call (aspects_research.tools.darkening_profile): an additive
drop has no slope, lost grey-white contrast a positive one, a wider sulcus's partial volume a
negative one; the tool finds a false call's profile in a consensus_study dump and says what a veto
would withdraw."""

from __future__ import annotations

import gzip
import json
import pickle
from types import SimpleNamespace

import numpy as np
import pytest
import SimpleITK as sitk

from aspects.labels import label_value
from aspects_research.tools import one_line_errors
from aspects_research.tools.darkening_profile import dark_minus_bright, main, tissue_slope, vetoed


def _tissue(rng, n=20000):
    """Grey (~38 HU) and white (~27 HU) matter, and the same tissue seen with independent noise."""
    level = np.where(rng.random(n) < 0.5, 38.0, 27.0)
    return level + rng.normal(0, 2.0, n), level + rng.normal(0, 2.0, n)


def test_the_slope_tells_an_offset_from_lost_contrast_and_from_partial_volume():
    rng = np.random.default_rng(0)
    image, mirror = _tissue(rng)
    everywhere = np.ones(image.shape, bool)
    offset = tissue_slope(image - 3.0, mirror, everywhere)  # a smooth left-right offset of 3 HU
    grey_sinks = tissue_slope(image - 1.0 - 0.3 * (image - 27.0), mirror, everywhere)  # grey towards white
    csf_partial = tissue_slope(image - 0.3 * (40.0 - image), mirror, everywhere)  # the darker voxels lose more
    assert abs(offset) < 0.05
    assert grey_sinks > 0.15
    assert csf_partial < -0.15
    level = mirror  # (noise-free ranking is not needed for the sign)
    assert dark_minus_bright(image - 1.0 - 0.3 * (image - 27.0), mirror, level, everywhere) < -1.0
    assert dark_minus_bright(image - 0.3 * (40.0 - image), mirror, level, everywhere) > 1.0


def test_the_slope_leaves_out_csf_and_bone_and_needs_voxels():
    rng = np.random.default_rng(1)
    image, mirror = _tissue(rng)
    with_csf = np.concatenate([image - 3.0, np.full(500, 5.0)])  # CSF on the image's side only
    mirror_csf = np.concatenate([mirror, np.full(500, 30.0)])
    slope = tissue_slope(with_csf, mirror_csf, np.ones(with_csf.shape, bool))
    assert abs(slope) < 0.05  # the CSF voxels are not parenchyma on both sides: left out
    assert tissue_slope(image, mirror, np.arange(image.size) < 10) is None


def _dump(folder, rng, kind="normal"):
    """A consensus_study dump of one study whose right M2 the app called on a wider sulcus."""
    shape = (6, 30, 40)  # (z, y, x); x mirrors at the midline
    level = np.where(rng.random(shape) < 0.5, 38.0, 27.0)
    image = level + rng.normal(0, 1.0, shape)
    mirror = level + rng.normal(0, 1.0, shape)
    labels = np.zeros(shape, np.uint8)
    labels[:, 5:25, 2:18] = label_value("right", "M2")
    labels[:, 5:25, 22:38] = label_value("left", "M2")
    mask = np.zeros(shape, bool)
    mask[:, 8:20, 4:14] = True
    image[mask] -= 0.8 * (40.0 - image[mask])  # darkening that follows the darker voxels
    calls = {side: {code: {"involved": False, "involved_by": [], "assessable": True}
                    for code in ("C", "L", "IC", "I", "M1", "M2", "M3", "M4", "M5", "M6")} for side in ("right", "left")}
    calls["right"]["M2"] = {"involved": True, "involved_by": ["mask"], "assessable": True}
    truth = {"kind": kind, "involved": {"right": [], "left": []}, "hu_drop": 0.0, "anatomy": "invesalius",
             "slice_thickness_mm": 5.0}
    meta = {"case": "phantom_000001", "truth": truth, "calls": calls}
    np.savez_compressed(folder / "phantom_000001.npz", brain=np.ones(shape, bool), app_mask=mask, labels=labels,
                        counterpart_ref=mirror.astype(np.float32), meta=np.array(json.dumps(meta)))
    with gzip.open(folder / "phantom_000001.pkl.gz", "wb") as f:
        pickle.dump({"pre": SimpleNamespace(aligned=sitk.GetImageFromArray(image.astype(np.float32)))}, f)


def test_the_tool_finds_the_false_call_and_what_a_veto_withdraws(tmp_path, capsys):
    dumps = tmp_path / "dumps"
    dumps.mkdir()
    _dump(dumps, np.random.default_rng(2))
    out = tmp_path / "profile.json"
    assert main(["--dumps", str(dumps), "--out", str(out), "--below", "-0.45"]) == 0
    records = json.loads(out.read_text())
    assert [(r["side"], r["code"], r["group"]) for r in records] == [("right", "M2", "false call")]
    record = records[0]
    assert record["masked_slope"] < -0.45 and record["masked_delta_hu"] > 3.0
    assert vetoed(record, -0.45) and not vetoed(record, -0.45, max_delta=3.0)
    assert record["study_slope"] is not None and abs(record["study_slope"]) < 0.1  # equal noise both sides
    assert vetoed(record, -0.45, statistic="relative_slope")
    assert "masked slope < -0.45: 1 of 1" in capsys.readouterr().out


def test_a_folder_without_dumps_is_a_one_line_error(tmp_path, capsys):
    assert one_line_errors(lambda: main(["--dumps", str(tmp_path)])) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error[2]: no consensus_study dumps") and "\n" not in err


@pytest.mark.parametrize("called,involved,drop,group", [
    (True, False, 0.0, "false call"), (True, True, 3.0, "true call < 4 HU"), (True, True, 5.0, "true call 4-6 HU"),
    (True, True, 8.0, "true call >= 6 HU"), (False, True, 3.0, "missed"), (False, False, 0.0, None)])
def test_groups(called, involved, drop, group):
    from aspects_research.tools.darkening_profile import group_of

    assert group_of(called, involved, drop) == group
