"""Age-related brain atrophy for the v2 phantoms: sulci and ventricles widened.

Stroke patients are mostly old, and an old brain has lost volume: its sulci are wider (cortical
atrophy) and its lateral ventricles larger (central atrophy), roughly symmetrically. Brain
parenchymal fraction falls from about 0.86 at 40 to 0.76 at 80 (Fotenos et al. 2005, Neurology
64:1032); ventricular volume grows faster than sulcal CSF after 60. None of the anatomy sources is
an old brain (two templates of adults and two real heads with narrow CSF spaces), and the app's
left-right comparisons and region evidence were calibrated on them: this puts the missing age in.

The model: tissue next to CSF (sulci, cisterns, the subarachnoid rim) becomes CSF over a depth of
``sulcal_mm`` and tissue around the lateral ventricles over ``ventricle_mm``, both modulated by a
smooth field (+-30 %) that is 90 % symmetric about the mid-sagittal plane (atrophy is bilateral,
not equal); a voxel's CSF share is the fraction of its 1 mm depth inside the widening, so sub-
millimetre widenings act through partial volume, as they do on a scan. The lesion painted after it
sees the shrunken tissue (an infarct does not darken CSF). ``severity`` 0..1 scales both depths:
1 is a brain of about 80 years with marked atrophy (:data:`SULCAL_MM`, :data:`VENTRICLE_MM`).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Dict, Tuple

import numpy as np
from scipy import ndimage as ndi

if TYPE_CHECKING:
    from aspects_research.phantoms import Anatomy

# Widening at severity 1 (mm on the 1 mm crop, before the case's scale): sulci and rim, ventricles.
SULCAL_MM = 1.0
VENTRICLE_MM = 3.0
MODULATION = 0.3  # relative spatial variation of the depth
ASYMMETRY = 0.1  # share of the modulation that is not mirrored
CSF_SEED_HU = 16.0  # brain voxels below this are CSF the widening starts from (the templates' tissue floor)
CALCIFIED_HU = 60.0  # calcifications above this stay
MIN_CSF_SPACE_VOXELS = 500  # 0.5 ml on the 1 mm crop


def widening_weight(dist_mm: np.ndarray, depth_mm: np.ndarray) -> np.ndarray:
    """CSF share (0..1) of a tissue voxel whose centre lies ``dist_mm`` from the nearest CSF voxel
    centre (>= 1 on a 1 mm grid) when the CSF widens by ``depth_mm``: the part of its 1 mm depth
    (from dist - 1 to dist) inside the widening."""
    return np.clip(depth_mm - (dist_mm - 1.0), 0.0, 1.0).astype(np.float32)


def paint_atrophy(hu: np.ndarray, anat: Anatomy, rng: np.random.Generator, severity: float,
                  csf_hu: float) -> Tuple[Anatomy, Dict[str, float]]:
    """Widen ``anat``'s sulci and ventricles in the head ``hu`` (crop grid, in place) for
    ``severity`` (0..1); the new CSF has the density of the head's ventricles (``csf_hu`` if it
    has none to speak of). Returns the anatomy with its tissue and ventricle masks shrunk / grown
    accordingly (for the lesion painted next) and a record: the depths and the parenchyma lost."""
    from aspects_research.phantoms import smooth_field

    if severity <= 0.0:
        return anat, {"severity": 0.0, "sulcal_mm": 0.0, "ventricle_mm": 0.0, "tissue_lost_fraction": 0.0, "csf_hu": csf_hu}
    intracranial = anat.shell_dist <= 0
    vent = anat.ventricles if anat.ventricles is not None else np.zeros(hu.shape, bool)
    # CSF by its smoothed density (a real head's own noise puts single voxels below the floor).
    csf = intracranial & ~anat.tissue & ~vent & (ndi.gaussian_filter(anat.brain_hu, 0.7) < CSF_SEED_HU)
    # Only CSF spaces of some size (sulci open onto the subarachnoid space): isolated dark specks in
    # a real head's white matter would otherwise grow into holes.
    lab, n = ndi.label(csf)
    if n:
        sizes = np.bincount(lab.ravel())
        sizes[0] = 0
        csf = sizes[lab] >= MIN_CSF_SPACE_VOXELS
    f, a = smooth_field(rng, hu.shape, 30.0), smooth_field(rng, hu.shape, 30.0)
    # The crop is symmetric about its central column: the mirror is a flip of x.
    sym = f + f[:, :, ::-1]
    sym /= max(float(sym.std()), 1e-9)
    mod = 1.0 + MODULATION * np.clip((1.0 - ASYMMETRY) * sym + ASYMMETRY * a, -2.0, 2.0)
    sulcal, ventricle = SULCAL_MM * severity, VENTRICLE_MM * severity
    w = np.zeros(hu.shape, np.float32)
    if csf.any():
        w = widening_weight(ndi.distance_transform_edt(~csf), sulcal * mod)
    wv = np.zeros(hu.shape, np.float32)
    if vent.any():
        wv = widening_weight(ndi.distance_transform_edt(~vent), ventricle * mod)
    # The new CSF at the head's own CSF density (its ventricles' core: -2 to 7 HU on the sources).
    core = ndi.binary_erosion(vent, iterations=2)
    if core.sum() > 1000:
        csf_hu = float(np.clip(np.median(anat.brain_hu[core]), -5.0, 12.0))
    # Sulci widen into tissue; the ventricles also take their own partial-volume wall (brighter than
    # CSF, not tissue), which would otherwise stay as a ring inside the widened ventricle.
    # Calcifications (choroid plexus, > CALCIFIED_HU) stay.
    wall = intracranial & (hu > csf_hu) & (hu < CALCIFIED_HU)
    w = np.maximum(w * anat.tissue, wv * (anat.tissue | wall))
    hu[...] = hu * (1.0 - w) + w * np.float32(csf_hu)
    tissue = anat.tissue & (w < 0.5)
    lost = float((w * anat.tissue).sum()) / max(1.0, float(anat.tissue.sum()))
    # The ventricles grown (for leukoaraiosis and ex-vacuo change painted next).
    out = dataclasses.replace(anat, tissue=tissue, ventricles=vent | (anat.tissue & (wv >= 0.5)))
    return out, {"severity": float(severity), "sulcal_mm": float(sulcal), "ventricle_mm": float(ventricle),
                 "tissue_lost_fraction": lost, "csf_hu": csf_hu}
