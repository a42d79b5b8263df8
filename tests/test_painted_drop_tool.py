"""aspects_research.tools.painted_drop: the drop the generator paints, per region and model of
grey-white contrast loss (docs/data.md). Needs the shared real data (SOOP masks)."""

from __future__ import annotations

import pytest

from aspects_research import phantom_lesions as PL
from aspects_research.tools import painted_drop

pytestmark = pytest.mark.skipif(not (PL.default_real_data() / "soop_lesions_mni" / "masks").is_dir(),
                                reason="shared real data (SOOP masks) not present")


def test_the_caudate_keeps_more_of_its_drop_when_tissue_never_brightens(tmp_path, capsys):
    # Fresh-draw study 4020 (template head, 5 mm, 2.4 HU, 71 % of the left caudate infarcted) at a
    # 128 matrix: "compress" raised some voxels by up to 1.2 HU and left the caudate 0.42 of the
    # drop; "darken" raises none and leaves it 0.54; the cortex keeps more than the nominal drop.
    made = painted_drop.make_set(4020, "test", matrix=128)
    old = painted_drop.region_drops(made["compress"], made["normal"])
    new = painted_drop.region_drops(made["darken"], made["normal"])
    assert set(old) == set(new) and "lC" in new and new["lC"]["fraction"] > 0.5
    assert new["lC"]["drop_ratio"] > old["lC"]["drop_ratio"] + 0.08
    assert float((made["normal"].hu - made["compress"].hu).min()) < -0.5
    assert float((made["normal"].hu - made["darken"].hu).min()) >= -1e-4
    assert all(new[c]["drop_ratio"] > 1.0 for c in ("lM2", "lM3", "lM6"))
    png = tmp_path / "fig.png"
    assert painted_drop.main(["--seed", "4020", "--matrix", "128", "--png", str(png)]) == 0
    assert png.stat().st_size > 10_000 and "lC " in capsys.readouterr().out
