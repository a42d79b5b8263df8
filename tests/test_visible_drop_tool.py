"""aspects_research.tools.visible_drop: the share of a phantom's nominal drop seen per region."""

import numpy as np

from aspects.labels import label_value
from aspects_research.tools.visible_drop import study_ratios, summarise


def _dump():
    shape = (10, 20, 20)
    labels = np.zeros(shape, np.uint8)
    labels[:, :10, :10] = label_value("right", "C")  # 1000 voxels
    labels[:, 10:, 10:] = label_value("left", "M2")  # 1000 voxels
    truth = np.zeros(shape, bool)
    truth[:, :10, :5] = True  # half of right C
    truth[:2, 10:12, 10:12] = True  # 8 voxels of left M2: below 10 % and 30 voxels
    comparable = np.ones(shape, bool)
    comparable[:, :10, :1] = False  # a fifth of right C's infarct is not comparable (the ventricle's margin)
    diff = np.zeros(shape, np.float32)
    diff[truth] = 1.0  # 1 HU darker than the counterpart where the truth says 4 HU
    return {"labels": labels, "truth_infarct": truth, "comparable_ref": comparable, "diff_ref": diff}


def test_a_region_shows_its_measured_share_of_the_nominal_drop():
    rows = list(study_ratios(_dump(), hu_drop=4.0))
    assert [r[0] for r in rows] == ["C"]  # left M2 is barely infarcted: not reported
    code, ratio, share = rows[0]
    assert abs(ratio - 0.25) < 1e-6
    assert abs(share - 0.8) < 1e-6


def test_the_summary_is_per_code_over_studies():
    rows = [("C", 0.2, 0.7), ("C", 0.4, 0.9), ("C", float("nan"), 0.5), ("M3", 0.9, 0.8)]
    s = summarise(rows)
    assert s["C"]["n"] == 2 and abs(s["C"]["median"] - 0.3) < 1e-9 and abs(s["C"]["comparable"] - 0.7) < 1e-9
    assert s["M3"]["median"] == 0.9 and "M1" not in s
