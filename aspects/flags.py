"""Findings that change what ASPECTS means: suspected haemorrhage, old (chronic) infarct, and
acute infarct outside the MCA territory.

All run on the template-aligned grid (z, y, x), whose mid-sagittal plane is the grid's central
column, so ``np.flip(arr, axis=2)`` is the contralateral mirror.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from scipy import ndimage

from aspects.atlas import outside_mca
from aspects.labels import OUTSIDE_MCA

# Acute blood is 50-90 HU; grey matter tops out near 45 HU. Calcification (> 100 HU after
# smoothing, e.g. pineal, choroid plexus) and bone at the brain edge are excluded.
BLOOD_HU = (52.0, 95.0)
# CSF-like tissue (0-15 HU) in parenchyma whose mirror is brain tissue (>= 22 HU): the sharply
# marginated, volume-losing lesion of an old infarct. Ventricles and sulci are symmetric, so the
# mirror test leaves them out.
OLD_INFARCT_HU = 16.0
OLD_MIRROR_HU = 22.0
# "Tissue" for the mirror test of the cavity seen on the source slices (aspects.source_cavity) is
# relative to the study's own white matter where that reads low:
# OLD_MIRROR_HU is 4 HU below the white matter of a calibrated head (the lower quartile of the
# brain's 15-50 HU tissue: 26-27 HU on the symmetric and scct templates, 25.8 on the GE head's
# phantoms, 25.0 on the real GE series with its large infarct),
# and a scanner that reads tissue lower keeps the same 4 HU. The real InVesalius head's white
# matter reads 21.3 HU (its tissue median 23.6 against 32 on the templates, its CSF the same
# 7 HU): at 22 HU the mirror of a lacune's cavity failed the test on a third of its voxels, so a
# 1.5-1.9 ml old lacune was read as 2.9-4.6 ml of acute infarct, one point lost
# (docs/results_v2.md, "An old lacune on a head that reads low").
MIRROR_BELOW_WHITE_HU = 4.0
TISSUE_RANGE_HU = (15.0, 50.0)
MIN_BLOOD_ML = 0.3
MIN_OLD_ML = 1.0
# The flag (and the region evidence's exclusion) needs a CSF-density core (< OLD_CAVITY_HU) of at
# least MIN_OLD_CAVITY_ML and MIN_OLD_CAVITY_SHARE of the component: 12-16 HU tissue whose mirror
# is >= 22 HU is also a strong acute infarct in white matter (with a few ml of sulcal CSF inside
# it on a real head: 2.8 of 63 ml on the val split) or an asymmetric sulcus; an encephalomalacic
# old infarct is mostly CSF (core 42-80 % of the finding on the val and test old-infarct controls).
MIN_OLD_CAVITY_ML = 1.0
MIN_OLD_CAVITY_SHARE = 0.25
# ... and the cavity must be a compact hole, not a sheet: at least MIN_OLD_CAVITY_BULK_ML of it
# survives a morphological opening with a box OLD_CAVITY_THICKNESS_MM wide (the encephalomalacia of
# a territorial infarct is a cavity, a sulcus or fissure is a CSF sheet of 1-5 mm however
# asymmetric). Without it the sulcal asymmetry of a real head, resolved by thin slices, was
# flagged (1.7-3.6 ml, 1.1-1.5 ml "cavity") on 8 of 48 acute single-region early-change studies
# and 4 of 28 acute test studies, and its rim rule took part of a deep acute lesion beside an
# asymmetric ventricle (docs/results.md, "Compact cavities"). Measured after the opening on 27
# components: the old infarcts of the val and test controls keep 0.85-43 ml, a thin cortical
# (M3-pattern) old infarct 0.43 ml, the sulci and fissures 0-0.29 ml.
MIN_OLD_CAVITY_BULK_ML = 0.35
OLD_CAVITY_THICKNESS_MM = 6.0
# An old infarct's cavity reaches CSF density (0-10 HU); hyperacute ischaemia does not: each 1 %
# of net water uptake lowers attenuation by ~2.5 HU and the first 6 h bring a few percent
# (Dzialowski et al., Stroke 2004;35:2067; Kucinski et al., Radiology 2002), i.e. tissue of
# 25-40 HU stays above ~15 HU. A component of the acute mask with such a cavity beside it (within
# OLD_CAVITY_REACH_MM) amounting to OLD_CAVITY_FRACTION of its volume is the gliotic rim of an old
# infarct: its tissue within OLD_RIM_MM of the cavity is not scored. The 16 HU finding
# (old_infarct_mask) is too wide for that: strong (10-12 HU) acute infarcts in white matter reach
# it (docs/results.md, "Mask check").
OLD_CAVITY_HU = 10.0
# A cavity counts for the rim rule from this size (26-connected): an encephalomalacic old infarct's
# cavity is several ml, and an old lacune large enough to have a gliotic rim is ~10 mm across
# (0.5 ml). Smaller CSF-density pieces whose mirror is tissue are mostly asymmetric ventricle
# or sulcus beside a deep acute infarct (a 2.4 ml caudate / capsule infarct at 6.6 HU lost half its
# mask and its region to 0.44 ml of frontal horn: docs/results.md, "Small cavities").
MIN_RIM_CAVITY_ML = 0.5
OLD_CAVITY_REACH_MM = 4.0
OLD_CAVITY_FRACTION = 0.05
OLD_RIM_MM = 8.0
EDGE_EROSION_MM = 6.0  # keep away from the skull/brain border where partial volume mimics both
# Calcium / bone (>= DENSE_HU in the unstripped series) smears into blood-like values around itself
# (a pineal calcification of 560 HU read 50-100 HU over 0.6 ml on the real 4 / 7 mm GE series;
# bone at the skull base on thick slices); fresh blood stays below 100 HU.
DENSE_HU = 120.0
# Blood is hyperdense against the mirror; the dural venous sinuses, the falx and bilateral
# calcifications (midline or paired, 50-70 HU on a template with real anatomy) are not.
BLOOD_MIRROR_EXCESS_HU = 12.0
DENSE_MARGIN_MM = 5.0
# A haematoma is a blob; the partial volume of the skull base (the middle cranial fossa's floor on
# thick or obliquely cut slices, the scct template's blurred floor) is a sheet a few mm thick
# along the bone. A component counts only if it holds a voxel whose face and edge neighbours
# within BLOOD_CORE_MM are blood-like too (one erosion by the 18-neighbourhood on the 2 mm aligned
# grid: an in-radius over 2.8 mm, ~6 mm thick every way): on the val and test splits every false
# blood component (bone partial volume, a 75 HU calcification) had an in-radius of <= 2.8 mm,
# every haematoma >= 3.5 mm (docs/results.md).
BLOOD_CORE_MM = 2.0
# The flag's component is the part of a haematoma that passes every test above: its partial-volume
# rim, its > 95 HU core and its part near bone are left out (0.5-4.1 ml of 2-5 ml phantom
# haematomas). What the haematoma explains (the hypodense-looking tissue opposite it, for the
# infarct mask and the region evidence) is measured from its extent: hyperdense (>= BLOOD_EXTENT_HU)
# brain within BLOOD_EXTENT_MM of the component.
BLOOD_EXTENT_HU = 48.0
BLOOD_EXTENT_MM = 10.0
# ASPECTS scores the MCA territory only: acute infarct in the ACA, PCA or vertebrobasilar territory
# (outside every ASPECTS region) costs no point but must be reported. Per connected lesion: voxels
# within OUTSIDE_MCA_MARGIN_MM of an ASPECTS region do not count (registration error), at least
# MIN_OUTSIDE_MCA_ML must remain, and they must be at least OUTSIDE_MCA_MIN_FRACTION of the lesion:
# the segmented edge of a large MCA infarct reaches a few ml past its regions (3-6 ml of 33-63 ml
# infarcts, 9 % at most, on the held-out phantoms of docs/results.md), an ACA / PCA / posterior
# circulation infarct lies there almost whole.
MIN_OUTSIDE_MCA_ML = 1.0
# A haematoma brightens its mirror-registered counterpart further out than 8 mm: the mirror SyN
# and the maps' smoothing spread 60-75 HU over the tissue opposite it (a GE-anatomy haemorrhage
# control read 3.8 HU "darker" 7-18 mm from the mirror of the blood, where the plain mirror is
# 1.2 HU brighter). Whatever reads that counterpart keeps this far from blood and its mirror: the
# region evidence, the growth of acute lesions into the asymmetry (:func:`growable`) and, since
# the infarct model takes the counterpart as its second channel (0.5.0), the infarct mask
# (:func:`acute_only`; 8 mm before: a template-head control's model mask reached 11 mm from the
# blood's mirror and cost a point, docs/results_v2.md, session 22). ASPECTS is not read beside a
# haemorrhage anyway.
BLOOD_EXCLUSION_MARGIN_MM = 16.0
OUTSIDE_MCA_MARGIN_MM = 4.0
OUTSIDE_MCA_MIN_FRACTION = 0.25


@dataclass(frozen=True)
class Flag:
    name: str
    volume_ml: float


def components_over(mask: np.ndarray, voxel_ml: float, min_ml: float,
                    structure: Optional[np.ndarray] = None) -> np.ndarray:
    """The connected components of ``mask`` (face-connected unless ``structure``) of at least ``min_ml``."""
    labels, n = ndimage.label(mask, structure=structure)
    if n == 0:
        return np.zeros_like(mask, dtype=bool)
    sizes = np.bincount(labels.ravel()) * voxel_ml
    keep = np.flatnonzero(sizes >= min_ml)
    return np.isin(labels, keep[keep > 0])


def voxel_volume_ml(spacing_mm: Sequence[float]) -> float:
    return float(np.prod(spacing_mm)) / 1000.0


def _steps(mm: float, spacing_mm: Sequence[float]) -> int:
    """Morphological iterations (>= 1) that reach ``mm`` on the finest axis of the grid."""
    return max(1, int(round(mm / float(min(spacing_mm)))))


def near_or_mirror(mask: np.ndarray, mm: float, spacing_mm: Sequence[float]) -> np.ndarray:
    """Voxels within ``mm`` (``_steps`` dilations) of ``mask`` or of its contralateral mirror:
    the tissue a finding explains on either side."""
    return ndimage.binary_dilation(mask | np.flip(mask, axis=2), iterations=_steps(mm, spacing_mm))


def inner_brain(brain: np.ndarray, spacing_mm: Sequence[float]) -> np.ndarray:
    """The brain more than EDGE_EROSION_MM from its edge."""
    return ndimage.binary_erosion(brain > 0, iterations=_steps(EDGE_EROSION_MM, spacing_mm))


def white_matter_hu(hu: np.ndarray, inner: np.ndarray) -> Optional[float]:
    """The study's white-matter level: the lower quartile of its tissue (TISSUE_RANGE_HU, no CSF,
    blood or calcium) inside ``inner`` (bool); None without tissue."""
    values = hu[inner]
    tissue = values[(values >= TISSUE_RANGE_HU[0]) & (values <= TISSUE_RANGE_HU[1])]
    return float(np.percentile(tissue, 25)) if tissue.size else None


def mirror_tissue_hu(white_hu: Optional[float]) -> float:
    """The least HU of a mirror that counts as brain tissue for the cavity seen on the source
    slices (:mod:`aspects.source_cavity`): OLD_MIRROR_HU, or MIRROR_BELOW_WHITE_HU below the
    study's white matter where that is lower, never below OLD_INFARCT_HU (what is CSF-like for
    the finding is never tissue for its mirror)."""
    if white_hu is None:
        return OLD_MIRROR_HU
    return max(OLD_INFARCT_HU, min(OLD_MIRROR_HU, white_hu - MIRROR_BELOW_WHITE_HU))


def blood_mask(hu: np.ndarray, brain: np.ndarray, spacing_mm: Sequence[float],
               dense: Optional[np.ndarray] = None) -> np.ndarray:
    """Hyperdense, blood-like parenchyma in components >= MIN_BLOOD_ML that are blobs, not sheets
    (a core >= BLOOD_CORE_MM from their edge every way).

    ``dense``: voxels of calcium or bone density in the unstripped series (see
    :func:`aspects.preprocess.dense_tissue`); blood-like voxels within DENSE_MARGIN_MM of them are
    the partial volume of a calcification (pineal, choroid plexus, basal ganglia) or of the skull,
    not blood. Voxels less than BLOOD_MIRROR_EXCESS_HU above their mirror are symmetric anatomy.
    """
    return _blood_and_smooth(hu, brain, spacing_mm, dense)[0]


@dataclass(frozen=True)
class BloodGround:
    """What the blood findings of the aligned grid and of the source slices
    (:mod:`aspects.source_blood`) share, computed once: ``smooth``, the 3-voxel median of the
    image; ``searchable``, the brain's core (:func:`inner_brain`) farther than DENSE_MARGIN_MM
    from calcium or bone."""

    smooth: np.ndarray
    searchable: np.ndarray


def blood_ground(hu: np.ndarray, brain: np.ndarray, spacing_mm: Sequence[float],
                 dense: Optional[np.ndarray] = None) -> BloodGround:
    """:class:`BloodGround` of one aligned study (``dense``: see :func:`blood_mask`)."""
    searchable = inner_brain(brain, spacing_mm)
    if dense is not None and dense.any():
        searchable &= ndimage.distance_transform_edt(~dense.astype(bool), sampling=spacing_mm) > DENSE_MARGIN_MM
    return BloodGround(ndimage.median_filter(hu, size=3), searchable)


def _blood_and_smooth(hu: np.ndarray, brain: np.ndarray, spacing_mm: Sequence[float],
                      dense: Optional[np.ndarray] = None,
                      ground: Optional[BloodGround] = None) -> Tuple[np.ndarray, np.ndarray]:
    """:func:`blood_mask` and the 3-voxel median of ``hu`` it was found on."""
    ground = ground if ground is not None else blood_ground(hu, brain, spacing_mm, dense)
    smooth = ground.smooth
    hyper = (smooth >= BLOOD_HU[0]) & ground.searchable
    hyper &= smooth - np.flip(smooth, axis=2) >= BLOOD_MIRROR_EXCESS_HU
    mask = components_over(hyper & (smooth <= BLOOD_HU[1]), voxel_volume_ml(spacing_mm), MIN_BLOOD_ML)
    if not mask.any():
        return mask, smooth
    # the blob test on the hyperdense region with its > BLOOD_HU[1] part: a clot denser than that
    # (retraction) leaves a blood-like shell that is still one blob
    core = ndimage.binary_erosion(hyper, structure=ndimage.generate_binary_structure(3, 2),
                                  iterations=_steps(BLOOD_CORE_MM, spacing_mm))
    labels, _ = ndimage.label(hyper)
    return mask & np.isin(labels, np.unique(labels[core & (labels > 0)])), smooth


def old_infarct_mask(hu: np.ndarray, brain: np.ndarray, spacing_mm: Sequence[float]) -> np.ndarray:
    """CSF-like parenchyma whose mirror is tissue, in components >= MIN_OLD_ML with a CSF-density
    core of >= MIN_OLD_CAVITY_ML and >= MIN_OLD_CAVITY_SHARE of the component, a compact one (at
    least MIN_OLD_CAVITY_BULK_ML of it thicker than OLD_CAVITY_THICKNESS_MM)."""
    return _old_infarct_and_cavity(hu, brain, spacing_mm)[0]


def _old_infarct_and_cavity(hu: np.ndarray, brain: np.ndarray,
                            spacing_mm: Sequence[float]) -> Tuple[np.ndarray, np.ndarray]:
    """:func:`old_infarct_mask` and, where there is one, the CSF-density part (3-voxel mean <
    OLD_CAVITY_HU) of every component >= MIN_OLD_ML of the < OLD_INFARCT_HU finding, cored or not: the rim rule
    (:func:`old_rim`) weighs each cavity against the acute component beside it (chosen on the val
    split, docs/results.md). From one smoothing and erosion. Its mirror test keeps OLD_MIRROR_HU on
    every head: a floor lowered to the study's white matter (:func:`mirror_tissue_hu`) took in the
    asymmetric sulci of a head that reads low (docs/results_v2.md, "An old lacune on a head that
    reads low")."""
    smooth = ndimage.uniform_filter(hu, size=3)
    mirror = np.flip(smooth, axis=2)
    inner = inner_brain(brain, spacing_mm)
    mask = (smooth < OLD_INFARCT_HU) & (mirror >= OLD_MIRROR_HU) & inner & np.flip(inner, axis=2)
    vml = voxel_volume_ml(spacing_mm)
    labels, n = ndimage.label(mask)
    if n == 0:
        return np.zeros(mask.shape, bool), np.zeros(mask.shape, bool)
    size = np.bincount(labels.ravel(), minlength=n + 1) * vml
    csf = (smooth < OLD_CAVITY_HU) & (labels > 0)
    core = np.bincount(labels[csf], minlength=n + 1) * vml
    box = tuple(max(1, int(round(OLD_CAVITY_THICKNESS_MM / float(s)))) for s in spacing_mm)
    bulk = np.bincount(labels[ndimage.binary_opening(csf, structure=np.ones(box, bool))], minlength=n + 1) * vml
    size[0] = core[0] = bulk[0] = 0.0
    big = size >= MIN_OLD_ML
    old = big & (core >= MIN_OLD_CAVITY_ML) & (core >= MIN_OLD_CAVITY_SHARE * size) & (bulk >= MIN_OLD_CAVITY_BULK_ML)
    if not old.any():  # no old infarct: CSF sheets whose mirror is tissue are sulci, not a cavity
        return np.zeros(mask.shape, bool), np.zeros(mask.shape, bool)
    # beside an old infarct its ex-vacuo sulci and ventricle count as cavity too, compact or not
    cavity = components_over(big[labels] & csf, vml, MIN_RIM_CAVITY_ML, np.ones((3, 3, 3), bool))
    return old[labels], cavity


@dataclass(frozen=True)
class Findings:
    """Blood and old-infarct masks of one aligned study, found once for the flags, the acute
    infarct and the region evidence."""

    blood: np.ndarray
    old_infarct: np.ndarray
    spacing_mm: Tuple[float, ...]
    # CSF-density part (< OLD_CAVITY_HU) of every >= MIN_OLD_ML component of the < 16 HU finding,
    # cored or not: the cavity acute_only (old_rim) tests against; empty without an old infarct
    old_cavity: Optional[np.ndarray] = None
    # blood with its hyperdense surroundings (:func:`blood_extent`): what the haematoma explains
    blood_extent: Optional[np.ndarray] = None
    # the study's white-matter level (:func:`white_matter_hu`; None: not measured)
    white_matter_hu: Optional[float] = None
    # the part of ``blood`` between the brain and the skull (aspects.extra_axial); None: not looked for
    extra_axial: Optional[np.ndarray] = None

    @property
    def blood_explains(self) -> np.ndarray:
        """The haematoma tissue whose mirror looks hypodense: ``blood_extent`` or ``blood``."""
        return self.blood if self.blood_extent is None else self.blood_extent

    @property
    def mirror_floor_hu(self) -> float:
        """The least HU of a mirror that is brain tissue for this study (:func:`mirror_tissue_hu`):
        the mirror test of the cavity looked for on the source slices (aspects.source_cavity)."""
        return mirror_tissue_hu(self.white_matter_hu)

    @property
    def haemorrhage_ml(self) -> float:
        return float(self.blood.sum()) * voxel_volume_ml(self.spacing_mm)

    @property
    def extra_axial_ml(self) -> float:
        return 0.0 if self.extra_axial is None else float(self.extra_axial.sum()) * voxel_volume_ml(self.spacing_mm)

    @property
    def old_infarct_ml(self) -> float:
        return float(self.old_infarct.sum()) * voxel_volume_ml(self.spacing_mm)


def find(hu: np.ndarray, brain: np.ndarray, spacing_mm: Sequence[float],
         dense: Optional[np.ndarray] = None, source_blood: Optional[np.ndarray] = None,
         ground: Optional[BloodGround] = None, extra_axial: Optional[np.ndarray] = None) -> Findings:
    """Blood (away from dense tissue) and old infarct, with its CSF-density cavity, on the aligned
    grid; ``source_blood``: blood seen on the source slices (:mod:`aspects.source_blood`), added to
    the blood found here; ``ground``: :func:`blood_ground` when the caller has it already;
    ``extra_axial``: blood between the brain and the skull (:mod:`aspects.extra_axial`), added too."""
    white = white_matter_hu(hu, inner_brain(brain, spacing_mm))
    old, cavity = _old_infarct_and_cavity(hu, brain, spacing_mm)
    blood, smooth = _blood_and_smooth(hu, brain, spacing_mm, dense, ground)
    if source_blood is not None:
        blood = blood | source_blood.astype(bool)
    extra = None if extra_axial is None else extra_axial.astype(bool)
    if extra is not None:
        blood = blood | extra
    return Findings(blood, old, tuple(float(s) for s in spacing_mm), cavity,
                    blood_extent(smooth, brain, spacing_mm, blood), white, extra)


def blood_extent(smooth_hu: np.ndarray, brain: np.ndarray, spacing_mm: Sequence[float],
                 blood: np.ndarray) -> np.ndarray:
    """``blood`` with the hyperdense (>= BLOOD_EXTENT_HU in ``smooth_hu``, the 3-voxel median the
    blood was found on) brain within BLOOD_EXTENT_MM of it: the haematoma's whole extent, rim and
    core included."""
    if not blood.any():
        return blood
    near = ndimage.distance_transform_edt(~blood, sampling=spacing_mm) <= BLOOD_EXTENT_MM
    return blood | (near & (brain > 0) & (smooth_hu >= BLOOD_EXTENT_HU))


def mask_flag(name: str, mask: np.ndarray, spacing_mm: Sequence[float]) -> Optional[Flag]:
    """``name`` with the volume (ml) of ``mask``; None when the mask is empty."""
    return Flag(name, float(mask.sum()) * voxel_volume_ml(spacing_mm)) if mask.any() else None


def flagged_masks(found: Findings) -> Dict[str, np.ndarray]:
    """The masks behind :func:`image_flags`, by flag name (the flagged ones only): what the
    writers show where it is (aspects.labels.FINDINGS)."""
    masks = {"haemorrhage_suspected": found.blood, "old_infarct_suspected": found.old_infarct}
    return {name: mask for name, mask in masks.items() if mask.any()}


def image_flags(found: Findings) -> List[Flag]:
    """Flags with their volumes (haemorrhage, then old infarct); empty when neither is present."""
    return [Flag(name, float(mask.sum()) * voxel_volume_ml(found.spacing_mm)) for name, mask in flagged_masks(found).items()]


def acute_only(infarct: np.ndarray, found: Findings,
               blood_margin_mm: float = BLOOD_EXCLUSION_MARGIN_MM) -> np.ndarray:
    """The infarct mask without hypodensity that blood or an old infarct explains.

    A haematoma makes its contralateral counterpart look hypodense to a symmetry-based method
    (blurred further by thick slices), so tissue within ``blood_margin_mm`` of blood or of the
    MIRROR of blood is not scored. An old infarct's rim (:func:`old_rim`) is not scored either.
    Leftovers below MIN_OLD_ML are dropped.
    """
    mask = infarct.astype(bool)
    blood = found.blood_explains
    rim = old_rim(mask, found)
    if not blood.any() and not rim.any():
        return mask
    mask &= ~rim
    if blood.any():
        mask &= ~near_or_mirror(blood, blood_margin_mm, found.spacing_mm)
    return components_over(mask, voxel_volume_ml(found.spacing_mm), MIN_OLD_ML)


def growable(support: np.ndarray, found: Findings,
             blood_margin_mm: float = BLOOD_EXCLUSION_MARGIN_MM) -> np.ndarray:
    """The part of the asymmetry baseline's mask an acute lesion may be grown into
    (``aspects.segmentation.grow_into_support``): not within ``blood_margin_mm`` of blood or its
    mirror (as the region evidence), and none of the components (26-connected) that come within
    OLD_RIM_MM of an old infarct, whose ex-vacuo and gliotic surroundings the comparison also sees."""
    out = support.astype(bool)
    if found.blood_explains.any():
        out &= ~near_or_mirror(found.blood_explains, blood_margin_mm, found.spacing_mm)
    if found.old_infarct.any() and out.any():
        lab, _ = ndimage.label(out, structure=np.ones((3, 3, 3), bool))
        near_old = ndimage.binary_dilation(found.old_infarct, iterations=_steps(OLD_RIM_MM, found.spacing_mm))
        out &= ~np.isin(lab, np.unique(lab[near_old & out]))
    return out


def old_rim(infarct: np.ndarray, found: Findings) -> np.ndarray:
    """The voxels of ``infarct`` that are an old infarct's rim: in the 26-connected components
    with CSF-density cavity (``found.old_cavity``) within OLD_CAVITY_REACH_MM amounting to at least
    OLD_CAVITY_FRACTION of their volume, those within OLD_RIM_MM of the cavity. A component
    without such a cavity beside it (every acute infarct of the synthetic sets, strong ones
    included) is untouched; an acute infarct next to an old one keeps its part beyond the rim."""
    mask = infarct.astype(bool)
    cavity = found.old_cavity
    if cavity is None or not cavity.any() or not mask.any():
        return np.zeros(mask.shape, bool)
    lesions, n = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
    size = np.bincount(lesions.ravel(), minlength=n + 1)
    it = _steps(OLD_CAVITY_REACH_MM, found.spacing_mm)
    reach = ndimage.binary_dilation(cavity, iterations=it)
    old = np.zeros(n + 1, bool)
    for k in np.unique(lesions[reach & mask]):  # only components with cavity within reach
        if k == 0:
            continue
        grown = ndimage.binary_dilation(lesions == k, iterations=it)
        old[k] = (grown & cavity).sum() >= OLD_CAVITY_FRACTION * size[k]
    if not old.any():
        return np.zeros(mask.shape, bool)
    return old[lesions] & (ndimage.distance_transform_edt(~cavity, sampling=found.spacing_mm) <= OLD_RIM_MM)


def with_cavity(found: Findings, cavity: np.ndarray, infarct: np.ndarray) -> Findings:
    """``found`` with the components of ``cavity`` (aligned grid; e.g. measured on the source
    slices, :mod:`aspects.source_cavity`) that make a component of ``infarct`` an old infarct's
    rim (:func:`old_rim`) added to its old infarct and cavity: the rim is then not scored, the
    flag is raised, and the growth and the region evidence keep away from it, as for a cavity
    found on the aligned grid. A cavity beside no rim changes nothing."""
    cavity = cavity.astype(bool)
    if not cavity.any() or not infarct.any():
        return found
    before = found.old_cavity if found.old_cavity is not None else np.zeros(cavity.shape, bool)
    rim = old_rim(infarct, dataclasses.replace(found, old_cavity=before | cavity))
    if not rim.any():
        return found
    labels, _ = ndimage.label(cavity, structure=np.ones((3, 3, 3), bool))
    within = ndimage.binary_dilation(rim, iterations=_steps(OLD_CAVITY_REACH_MM, found.spacing_mm))
    used = np.isin(labels, np.unique(labels[within & cavity]))
    if not used.any():
        return found
    return dataclasses.replace(found, old_infarct=found.old_infarct | used, old_cavity=before | used)


def outside_mca_mask(infarct: np.ndarray, regions: np.ndarray, territories: np.ndarray,
                     spacing_mm: Sequence[float]) -> np.ndarray:
    """The acute infarct outside every ASPECTS region and inside the ACA, PCA or vertebrobasilar
    territory, of the lesions (connected components) that lie mostly there (see
    OUTSIDE_MCA_MIN_FRACTION): what ``infarct_outside_mca`` measures; empty when there is none."""
    mask = infarct.astype(bool)
    outside = mask & (regions == 0) & outside_mca(territories)
    if not outside.any():
        return outside
    vml = voxel_volume_ml(spacing_mm)
    far = outside & ~ndimage.binary_dilation(regions > 0, iterations=_steps(OUTSIDE_MCA_MARGIN_MM, spacing_mm))
    lesions, n = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
    size = np.bincount(lesions.ravel(), minlength=n + 1)
    far_n = np.bincount(lesions[far], minlength=n + 1)
    keep = [k for k in range(1, n + 1)
            if far_n[k] * vml >= MIN_OUTSIDE_MCA_ML and far_n[k] >= OUTSIDE_MCA_MIN_FRACTION * size[k]]
    return outside & np.isin(lesions, keep)


def outside_mca_flag(infarct: np.ndarray, regions: np.ndarray, territories: np.ndarray,
                     spacing_mm: Sequence[float]) -> Optional[Flag]:
    """``infarct_outside_mca`` with the volume (ml) of :func:`outside_mca_mask`; None when empty."""
    return mask_flag(OUTSIDE_MCA, outside_mca_mask(infarct, regions, territories, spacing_mm), spacing_mm)
