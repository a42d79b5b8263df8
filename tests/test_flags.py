"""Haemorrhage and old-infarct flags on a symmetric synthetic aligned volume."""

import dataclasses

import numpy as np
from scipy import ndimage
import pytest

from aspects.flags import find, image_flags

SPACING = (2.0, 2.0, 2.0)
z, y, x = np.mgrid[:48, :64, :64]  # the test grid (z, y, x), 2 mm voxels


def brain(seed=0):
    """A symmetric ellipsoid 'brain' of 32 HU with a 3 HU noise, central ventricles of 8 HU."""
    rng = np.random.default_rng(seed)
    mask = ((z - 24) / 20) ** 2 + ((y - 32) / 28) ** 2 + ((x - 31.5) / 26) ** 2 <= 1
    hu = np.where(mask, 32.0, 0.0) + rng.normal(0, 3, mask.shape) * mask
    vent = ((z - 24) / 6) ** 2 + ((y - 32) / 10) ** 2 + ((x - 31.5) / 5) ** 2 <= 1
    hu[vent] = 8.0
    return hu.astype(np.float32), mask.astype(np.uint8)


def ball(cz, cy, cx, r2):
    """Voxels of the test grid within sqrt(r2) voxels of (cz, cy, cx)."""
    return ((z - cz) ** 2 + (y - cy) ** 2 + (x - cx) ** 2) <= r2


def flags_of(hu, mask, dense=None):
    return [f.name for f in image_flags(find(hu, mask, SPACING, dense))]


def test_normal_symmetric_brain_has_no_flags():
    hu, mask = brain()
    assert flags_of(hu, mask) == []


def test_haematoma_is_flagged_with_its_volume():
    hu, mask = brain()
    blob = ball(24, 30, 18, 9)  # r = 3 voxels (6 mm): ~0.9 ml
    hu[blob] = 70.0
    ml = find(hu, mask, SPACING).haemorrhage_ml
    assert ml == pytest.approx(blob.sum() * 8e-3, rel=0.35)
    assert flags_of(hu, mask) == ["haemorrhage_suspected"]


def test_partial_volume_of_a_calcification_or_bone_is_not_blood_but_a_haematoma_beside_bone_is():
    hu, mask = brain()
    # a one-sided basal ganglia calcification smeared by thick slices: a blood-like halo of ~1 ml
    halo = ball(24, 44, 44, 9)
    hu[halo] = 75.0
    dense = ball(24, 44, 44, 1)
    assert flags_of(hu, mask) == ["haemorrhage_suspected"]  # what the flag said without the dense map
    assert flags_of(hu, mask, dense) == []
    # a real haematoma 14 mm from the calcification keeps its flag and most of its volume
    blob = ball(24, 30, 18, 9)
    hu[blob] = 70.0
    found = find(hu, mask, SPACING, dense)
    assert image_flags(found)[0].name == "haemorrhage_suspected"
    assert found.haemorrhage_ml == pytest.approx(blob.sum() * 8e-3, rel=0.35)


def test_a_bright_sheet_along_the_skull_base_is_not_blood_but_a_haematoma_of_its_volume_is():
    hu, mask = brain()
    inner = ndimage.binary_erosion(mask, iterations=3)  # the flag's 6 mm edge erosion
    # bone partial volume: a 4 mm (2-voxel) thick, 62 HU sheet just inside the eroded edge, on one
    # side (lower left), as the middle cranial fossa's floor gives on thick slices
    shell = inner & ~ndimage.binary_erosion(inner, iterations=2)
    sheet = shell & (z < 18) & (x < 26) & (y > 20) & (y < 44)
    hu[sheet] = 62.0
    assert sheet.sum() * 8e-3 > 1.0
    assert flags_of(hu, mask) == []
    # a haematoma of about the same volume, as a blob, is flagged
    blob = ball(24, 30, 18, 16)
    hu[blob] = 62.0
    assert blob.sum() * 8e-3 < sheet.sum() * 8e-3 * 1.5
    found = find(hu, mask, SPACING)
    assert [f.name for f in image_flags(found)] == ["haemorrhage_suspected"]
    assert not (found.blood & sheet).any()


def test_symmetric_hyperdense_anatomy_is_not_blood():
    hu, mask = brain()
    sinus = ((z - 24) ** 2 + (y - 50) ** 2) <= 9
    sinus &= np.abs(x - 31.5) <= 3  # a midline venous sinus / falx of 60 HU, ~1 ml
    hu[sinus] = 60.0
    pair = ball(20, 36, 20, 4)
    hu[pair | np.flip(pair, axis=2)] = 65.0  # paired, symmetric hyperdensities
    assert flags_of(hu, mask) == []


def test_old_infarct_is_flagged_but_symmetric_csf_is_not():
    hu, mask = brain()
    lesion = ball(24, 20, 15, 25)  # r = 5 voxels: ~4 ml, one side only
    hu[lesion] = 6.0  # CSF density
    assert find(hu, mask, SPACING).old_infarct_ml > 1.0
    assert "old_infarct_suspected" in flags_of(hu, mask)
    hu_sym = hu.copy()
    hu_sym[np.flip(lesion, axis=2)] = 6.0  # the same lesion on both sides reads as symmetric CSF
    assert find(hu_sym, mask, SPACING).old_infarct_ml == 0.0


def test_acute_hypodensity_is_not_an_old_infarct():
    hu, mask = brain()
    lesion = ball(24, 20, 14, 25)
    hu[lesion] -= 6.0  # acute: 26 HU, still tissue
    assert flags_of(hu, mask) == []
    # a strong (18 HU) drop in 32 HU tissue reaches 14 HU, under the 16 HU finding, over ~4 ml but
    # has no CSF-density (< 10 HU) core: still not an old infarct
    hu[lesion] -= 12.0
    assert flags_of(hu, mask) == []
    hu[ball(24, 20, 14, 9)] = 4.0  # a CSF-density core under the 1 ml a flag needs
    assert flags_of(hu, mask) == []
    hu[lesion] = 4.0  # all CSF density: an old infarct
    assert flags_of(hu, mask) == ["old_infarct_suspected"]
    # a large strong infarct (14 HU, ~17 ml) with ~2 ml of CSF-density sulcus inside it: the
    # core is over 1 ml but under a quarter of the < 16 HU finding (~11 ml)
    hu, mask = brain()
    big = ball(24, 26, 20, 64)
    hu[big] = 14.0 + (hu[big] - 32.0)
    hu[ball(24, 26, 20, 16)] = 4.0
    found = find(hu, mask, SPACING)
    assert flags_of(hu, mask) == [] and not found.old_infarct.any()
    # and with no old infarct in the study its CSF is no cavity for the rim rule either
    assert found.old_cavity is not None and not found.old_cavity.any()


def test_acute_only_removes_mirror_of_blood_but_keeps_acute_lesions():
    from aspects.flags import acute_only
    hu, mask = brain()
    old = ball(24, 20, 15, 25)
    hu[old] = 10.0
    blood = ball(24, 44, 48, 9)
    hu[blood] = 70.0
    acute = ball(14, 30, 44, 25)
    hu[acute] -= 6.0
    # what a symmetry-based segmenter reports: the old lesion with a rim, the blood's mirror, the acute lesion
    found = ndimage.binary_dilation(old, iterations=1) | np.flip(ndimage.binary_dilation(blood, iterations=2), axis=2) | acute
    kept = acute_only(found, find(hu, mask, SPACING))
    assert not (kept & np.flip(blood, axis=2)).any()
    assert kept[acute].mean() > 0.9


def test_old_infarct_rim_is_not_scored_but_strong_acute_white_matter_infarcts_are():
    from aspects.flags import acute_only, find, old_rim
    hu, mask = brain()
    cavity = ball(24, 18, 14, 16)  # r = 4 voxels: CSF-density cavity of an old infarct
    rim = ndimage.binary_dilation(cavity, iterations=2) & ~cavity
    hu[rim] = 20.0  # gliosis
    hu[cavity] = 4.0
    strong = ball(24, 44, 46, 25)  # r = 5 voxels on the other side, far from the cavity
    hu[strong] = 14.0  # a 12 HU drop of 26 HU white matter: below the 16 HU old-infarct finding
    # what a segmenter reports: the old infarct's rim (and a little of its cavity), the acute lesion
    segmented = ndimage.binary_dilation(cavity, iterations=2) & ~ndimage.binary_erosion(cavity, iterations=2) | strong
    found = find(hu, mask, SPACING)
    assert not (found.old_infarct & strong).any()  # below 16 HU but no CSF-density core: not an old infarct
    assert found.old_cavity is not None and not (found.old_cavity & strong).any()
    kept = acute_only(segmented, found)
    assert not (kept & rim).any() and not old_rim(segmented, found)[strong].any()
    assert np.array_equal(kept, strong)
    # an acute infarct grown into the old one's rim keeps its part beyond the rim (8 mm)
    touching = segmented | (ball(24, 18, 26, 36) & mask)  # r = 6 voxels, reaching the rim
    kept = acute_only(touching, found)
    far = ball(24, 18, 26, 36) & (ndimage.distance_transform_edt(~found.old_cavity, sampling=SPACING) > 8.0)
    assert far.sum() > 100 and np.array_equal(kept & far, far) and not (kept & rim).any()


def test_a_deep_acute_infarct_beside_an_asymmetric_ventricle_is_not_an_old_infarct_rim():
    from aspects.flags import MIN_RIM_CAVITY_ML, acute_only
    hu, mask = brain()
    # an old infarct far away in the other hemisphere, so that the rim rule is on in this study
    old = ball(24, 40, 18, 25)
    hu[old] = 4.0
    # a frontal horn wider on one side: 0.74 ml of CSF whose mirror is tissue, under the 0.5 ml of
    # CSF density (3-voxel mean < 10 HU) a cavity needs once its partial volume is smoothed
    pocket = ball(24, 30, 39, 8)
    hu[pocket] = 4.0
    lesion = ball(24, 30, 43, 16) & ~pocket  # a 1.8 ml caudate / capsule infarct at 16 HU beside it
    hu[lesion] = 16.0 + (hu[lesion] - 32.0)
    found = find(hu, mask, SPACING)
    assert found.old_infarct.any() and found.old_cavity is not None and not (found.old_cavity & pocket).any()
    assert np.array_equal(acute_only(lesion, found), lesion)
    # what the rule saw before the cavity had a least size: the pocket as an old infarct's cavity,
    # the whole acute lesion as its rim
    small = _find_with(hu, mask, MIN_RIM_CAVITY_ML=0.0).old_cavity & ~ndimage.binary_dilation(old, iterations=2)
    assert 0 < small.sum() * 8e-3 < MIN_RIM_CAVITY_ML
    assert not acute_only(lesion, dataclasses.replace(found, old_cavity=small)).any()


def _find_with(hu, mask, **constants):
    """``find`` with some of aspects.flags' constants set otherwise (the rule as it was)."""
    import aspects.flags as flags
    saved = {k: getattr(flags, k) for k in constants}
    try:
        for k, v in constants.items():
            setattr(flags, k, v)
        return flags.find(hu, mask, SPACING)
    finally:
        for k, v in saved.items():
            setattr(flags, k, v)


def test_a_widened_sulcus_is_not_an_old_infarct_and_leaves_the_acute_lesion_beside_it():
    from aspects.flags import MIN_RIM_CAVITY_ML, acute_only
    hu, mask = brain()
    # a sulcus or fissure wider on one side, as a real head shows it on 1 mm slices: a 6 mm sheet of
    # CSF (3 voxels) over 22 x 14 voxels whose mirror is tissue, its middle plane of CSF density
    # (3-voxel mean < 10 HU) over 1 ml
    sheet = (np.abs(x - 14) <= 1) & (np.abs(z - 24) < 11) & (np.abs(y - 24) < 7) & mask.astype(bool)
    hu[sheet] = 4.0
    lesion = ball(24, 24, 18, 16) & ~sheet  # a 2 ml cortical acute infarct at 24 HU beside it
    hu[lesion] -= 8.0
    found = find(hu, mask, SPACING)
    assert flags_of(hu, mask) == [] and not found.old_infarct.any()
    assert np.array_equal(acute_only(lesion, found), lesion)
    # what the flag saw before a cavity had to be compact: an old infarct whose rim took the lesion
    before = _find_with(hu, mask, MIN_OLD_CAVITY_BULK_ML=0.0)
    assert before.old_infarct.any() and before.old_cavity.sum() * 8e-3 > MIN_RIM_CAVITY_ML
    assert not acute_only(lesion, before).any()
    # about the same CSF volume as a compact hole (r = 6 voxels) is an old infarct
    hu, mask = brain()
    hole = ball(24, 24, 17, 36) & mask.astype(bool)
    hu[hole] = 4.0
    assert 0.8 < hole.sum() / sheet.sum() < 1.2 and flags_of(hu, mask) == ["old_infarct_suspected"]


def test_acute_lesions_grow_into_asymmetry_but_not_into_what_blood_or_an_old_infarct_explains():
    from aspects.flags import growable
    from aspects.segmentation import grow_into_support
    hu, mask = brain()
    old = ball(24, 20, 15, 25)  # r = 5 voxels of CSF density: an old infarct
    hu[old] = 6.0
    blood = ball(24, 44, 48, 9)
    hu[blood] = 70.0
    found = find(hu, mask, SPACING)
    assert found.old_infarct.any() and found.blood.any()
    # the asymmetry baseline's mask: the old infarct's surroundings, the blood's mirror and beyond, a faint
    # acute lesion of which the model found only the core
    around_old = ndimage.binary_dilation(old, iterations=4) & mask.astype(bool)
    mirror_and_beyond = (ball(24, 44, 15, 49) | ball(24, 44, 9, 49)) & mask.astype(bool)
    faint = ball(12, 30, 44, 36)
    support = around_old | mirror_and_beyond | faint
    core = ball(12, 30, 44, 16)  # r = 4 of the lesion's 6 voxels: 30 % of it
    ok = growable(support, found)
    assert not (ok & around_old).any()  # the old infarct's component is not grown into
    to_mirror = ndimage.distance_transform_edt(~np.flip(found.blood_explains, axis=2), sampling=SPACING)
    assert not (ok & (to_mirror <= 16.0 / np.sqrt(3))).any()  # within 16 mm (8 dilations) of the mirror
    assert (ok & mirror_and_beyond & (to_mirror > 16.0)).any()  # voxel-wise: beyond it, grown into
    assert np.array_equal(ok & faint, faint)
    grown = grow_into_support(core, ok)
    assert np.array_equal(grown, faint)  # the lesion's extent, nothing the core does not touch
    speck = ball(12, 30, 44, 1)  # 7 voxels of a 900-voxel asymmetry: not grown
    assert np.array_equal(grow_into_support(speck, ok), speck)
    assert not grow_into_support(np.zeros_like(core), ok).any()  # the baseline alone never makes a lesion


def test_acute_only_is_identity_without_other_findings():
    from aspects.flags import acute_only
    hu, mask = brain()
    found = np.zeros_like(mask, bool)
    found[20:25, 20:25, 10:15] = True
    assert np.array_equal(acute_only(found, find(hu, mask, SPACING)), found)


def _territory_case():
    """Aligned-like arrays: an MCA region block, ACA territory in front of it, MCA behind."""
    from aspects.atlas import ARTERIAL_RIGHT

    regions = np.zeros((20, 40, 40), np.uint8)
    territories = np.full(regions.shape, ARTERIAL_RIGHT["MCAF"], np.uint8)
    territories[:, :20] = ARTERIAL_RIGHT["ACA"]
    regions[:, 20:30, 5:15] = 5  # right M1
    return regions, territories


def test_infarct_in_the_aca_territory_is_flagged_with_its_volume():
    from aspects.flags import MIN_OUTSIDE_MCA_ML, outside_mca_flag

    regions, territories = _territory_case()
    infarct = np.zeros(regions.shape, bool)
    infarct[5:10, 2:10, 20:30] = True  # 400 voxels of 8 mm^3 = 3.2 ml, all in ACA territory, far from M1
    flag = outside_mca_flag(infarct, regions, territories, SPACING)
    assert flag is not None and flag.name == "infarct_outside_mca"
    assert flag.volume_ml == pytest.approx(3.2) and flag.volume_ml >= MIN_OUTSIDE_MCA_ML


def test_mca_infarct_and_its_soft_edge_do_not_raise_the_outside_flag():
    from aspects.flags import outside_mca_flag

    regions, territories = _territory_case()
    infarct = np.zeros(regions.shape, bool)
    infarct[:, 20:30, 5:15] = True  # the M1 block itself
    infarct[:, 18:20, 5:15] = True  # its soft edge: 2 voxels (4 mm) into the ACA territory
    assert outside_mca_flag(infarct, regions, territories, SPACING) is None
    infarct[:, 22:30, 20:30] = True  # MCA territory outside the regions: still not ACA / PCA / VB
    assert outside_mca_flag(infarct, regions, territories, SPACING) is None
    # an MCA lesion whose edge spills 8 mm into the ACA territory: 3.2 ml beyond the margin, 14 % of it
    infarct[:, 16:20, 5:15] = True
    assert outside_mca_flag(infarct, regions, territories, SPACING) is None


def test_separate_aca_lesion_beside_an_mca_infarct_is_flagged():
    from aspects.flags import outside_mca_flag

    regions, territories = _territory_case()
    infarct = np.zeros(regions.shape, bool)
    infarct[:, 20:30, 5:15] = True  # M1 infarct, 16 ml
    infarct[5:10, 2:10, 20:30] = True  # and an ACA one, 3.2 ml, not touching it
    flag = outside_mca_flag(infarct, regions, territories, SPACING)
    assert flag is not None and flag.volume_ml == pytest.approx(3.2)
    # the mask behind the flag (the key image shows it): the ACA lesion, not the M1 infarct
    from aspects.flags import outside_mca_mask
    shown = outside_mca_mask(infarct, regions, territories, SPACING)
    assert shown.sum() == 400 and shown[5:10, 2:10, 20:30].all() and not shown[:, 20:30, 5:15].any()


def test_what_a_haematoma_explains_is_its_whole_extent_and_wider_for_the_region_evidence():
    from aspects.flags import acute_only
    from aspects.region_evidence import explained_tissue
    hu, mask = brain()
    c = (24, 30, 18)
    core, rim, halo = ball(*c, 4), ball(*c, 16), ball(*c, 36)  # r = 2, 4, 6 voxels (4, 8, 12 mm)
    hu[halo] = 50.0  # partial volume around the clot: under the flag's 52 HU
    hu[rim] = 62.0
    hu[core] = 110.0  # a retracted clot: over the flag's 95 HU
    found = find(hu, mask, SPACING)
    assert [f.name for f in image_flags(found)] == ["haemorrhage_suspected"]
    assert not found.blood[c] and found.blood_extent is not None  # the clot's centre is over 95 HU
    assert found.blood_extent[core].all() and found.blood_extent[halo].mean() > 0.9
    # the tissue opposite the halo looks hypodense too: a false mask 18-28 mm from the mirrored
    # centre (along x) loses its voxels within a margin of the halo's mirror; at 8 mm (12 + 8 =
    # 20 mm) those the flag's component alone (8 + 8 = 16 mm) would have kept
    import dataclasses
    xm = 63 - c[2]
    slab = np.zeros_like(mask, bool)
    slab[c[0] - 5:c[0] + 6, c[1] - 5:c[1] + 6, xm - 14:xm - 8] = True  # 5.8 ml, medial to the mirror
    assert slab[c[0], c[1], xm - 9] and (mask[slab] > 0).all()
    assert not acute_only(slab, found, blood_margin_mm=8.0)[c[0], c[1], xm - 9]
    assert acute_only(slab, dataclasses.replace(found, blood_extent=None), blood_margin_mm=8.0)[c[0], c[1], xm - 9]
    # the mask's default margin is the region evidence's 16 mm (the infarct model reads the
    # mirror-registered counterpart too): 24 mm from the centre is explained, at 8 mm it was not
    assert not acute_only(slab, found)[c[0], c[1], xm - 12]
    assert acute_only(slab, found, blood_margin_mm=8.0)[c[0], c[1], xm - 12]
    # the region evidence leaves out 16 mm around the extent's mirror: 24 mm from its centre
    assert explained_tissue(found)[c[0], c[1], xm - 12]
    assert not explained_tissue(found, blood_margin_mm=8.0)[c[0], c[1], xm - 12]
