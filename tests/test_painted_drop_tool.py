"""aspects_research.tools.painted_drop: the drop the generator paints, per region and model of
grey-white contrast loss (docs/data.md). Needs the shared real data (SOOP masks)."""

from __future__ import annotations

import pytest

from aspects_research import phantom_lesions as PL
from aspects_research.tools import painted_drop

pytestmark = pytest.mark.skipif(not (PL.default_real_data() / "soop_lesions_mni" / "masks").is_dir(),
                                reason="shared real data (SOOP masks) not present")


def test_the_caudate_keeps_its_drop_only_when_tissue_never_brightens(tmp_path, capsys):
    # Fresh-draw study 4020 (template head, 5 mm, 2.4 HU, 71 % of the left caudate infarcted),
    # at a 128 matrix: under the old "compress" the caudate kept 0.42 of the drop and the cortex
    # got up to 1.4x; under "darken" the caudate keeps 0.78 and no region exceeds 1.25x.
    made = painted_drop.make_set(4020, "test", matrix=128)
    old = painted_drop.region_drops(made["compress"], made["normal"])
    new = painted_drop.region_drops(made["darken"], made["normal"])
    assert set(old) == set(new) and "lC" in new and new["lC"]["fraction"] > 0.5
    assert old["lC"]["drop_ratio"] < 0.55 and new["lC"]["drop_ratio"] > 0.7
    assert max(v["drop_ratio"] for v in old.values()) > 1.35
    assert max(v["drop_ratio"] for v in new.values()) < 1.25
    png = tmp_path / "fig.png"
    assert painted_drop.main(["--seed", "4020", "--matrix", "128", "--png", str(png)]) == 0
    assert png.stat().st_size > 10_000 and "lC " in capsys.readouterr().out
