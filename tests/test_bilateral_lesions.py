"""aspects_research.tools.bilateral_lesions: the share of a lesion a mirror comparison sees
lesion against lesion, and its run over the real SOOP masks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from aspects_research.phantom_lesions import default_real_data
from aspects_research.tools import bilateral_lesions as bl


def _blank() -> np.ndarray:
    return np.zeros((12, 14, 21), bool)  # odd x: the centre column is its own mirror


def test_a_one_sided_lesion_has_no_mirrored_share_and_its_mirror_image_pair_has_all():
    one = _blank()
    one[4:8, 5:9, 2:6] = True
    assert bl.mirrored_share(one) == 0.0
    pair = one | np.flip(one, axis=-1)
    assert bl.mirrored_share(pair) == 1.0
    assert bl.mirrored_share(_blank()) == 0.0


def test_the_tolerance_reaches_a_mirror_lesion_that_is_a_little_off():
    m = _blank()
    m[4:8, 5:9, 2:6] = True  # columns 2-5; mirror columns 15-18
    m[4:8, 5:9, 13:17] = True  # the other side two columns nearer the midline
    exact = bl.mirrored_share(m)
    assert 0.0 < exact < 1.0  # columns 15, 16 face each other exactly, 2-3 and 13-14 do not
    assert bl.mirrored_share(m, tolerance_vox=2) == 1.0


def test_a_lesion_across_the_midline_is_seen_against_itself():
    m = _blank()
    m[4:8, 5:9, 8:13] = True  # centred on column 10
    assert bl.mirrored_share(m) == 1.0
    sides = bl.side_volumes_ml(m, voxel_ml=1.0)
    assert sides["low_index"] == sides["high_index"] == 4 * 4 * 2


@pytest.mark.skipif(not (default_real_data() / "soop_lesions_mni").is_dir(), reason="shared SOOP masks not present")
def test_the_tool_reads_real_masks_and_writes_per_mask_figures(tmp_path, capsys):
    out = tmp_path / "rows.json"
    assert bl.main(["--limit", "5", "--tolerance", "0", "3", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert len(rows) == 5
    for r in rows:
        assert 0.0 <= r["share_0mm"] <= r["share_3mm"] <= 1.0  # slack only adds
        # the two sides hold the mask's voxels but its centre column (index volume: template grid)
        assert r["left_ml"] + r["right_ml"] > 0
    assert "mirrored share within 3 mm" in capsys.readouterr().out
