"""The symmetry-aware input during training: the aligned image plus its contralateral mirror
(Ostmeier et al. 2022; Sun et al. 2024), added after the spatial augmentation by
``aspects.model_io.add_mirror``, the function the app's model input uses too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Hashable, Mapping, Optional, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, RandomizableTransform

from aspects.model_io import HU_WINDOW, add_mirror


def _array(x) -> np.ndarray:
    """A tensor or array as a NumPy array on the host."""
    return np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x)


def _like(template, out: torch.Tensor):
    """``out`` with ``template``'s geometry when that is a MetaTensor (the grid stays; the channel
    count or values change)."""
    return MetaTensor(out, meta=template.meta) if isinstance(template, MetaTensor) else out


def to_hu(x) -> np.ndarray:
    """A normalised ``(1, X, Y, Z)`` image (``aspects.model_io.normalise``) back to HU, ``(X, Y, Z)``."""
    lo, hi = HU_WINDOW
    return _array(x)[0] * (hi - lo) + lo


def from_hu(hu: np.ndarray) -> torch.Tensor:
    """HU ``(X, Y, Z)`` -> the normalised ``(1, X, Y, Z)`` float32 tensor (not clipped again)."""
    lo, hi = HU_WINDOW
    return torch.as_tensor(((hu - lo) / (hi - lo)).astype(np.float32)[None])


def with_mirror(image_cxyz) -> np.ndarray:
    """``(1, X, Y, Z)`` -> ``(2, X, Y, Z)``: channel 0 the image, channel 1 its mirror."""
    return add_mirror(_array(image_cxyz))


class MirrorChanneld(MapTransform):
    """Dictionary transform: replace ``keys`` by ``[image, mirror]`` two-channel arrays (full volume).

    ``contra_key``: the second channel is that entry instead (the contralateral counterpart the
    app's asymmetry stage deforms onto the image, written by ``aspects-make-datalist --contra``
    and augmented with the image), which is then removed from the dictionary."""

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False, contra_key: Optional[str] = None):
        super().__init__(keys, allow_missing_keys)
        self.contra_key = contra_key

    def __call__(self, data: Mapping[Hashable, np.ndarray]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            if self.contra_key is not None:
                pair = [_array(d[key]), _array(d.pop(self.contra_key))]
                out = torch.as_tensor(np.concatenate(pair).astype(np.float32))
            else:
                out = torch.as_tensor(with_mirror(d[key]))
            d[key] = _like(d[key], out)
        return d


def asymmetry_field(shape, rng: np.random.Generator, sigma_vox: float, peak_hu: float) -> np.ndarray:
    """A smooth random field (HU) over ``shape``: white noise blurred at ``sigma_vox`` (periodic
    edges) and scaled so that its largest absolute value is ``peak_hu``."""
    from scipy import ndimage as ndi

    f = ndi.gaussian_filter(rng.standard_normal(shape), sigma_vox, mode="wrap")
    return _to_peak(f, peak_hu)


def _to_peak(f: np.ndarray, peak_hu: float) -> np.ndarray:
    """``f`` scaled so that its largest absolute value is ``|peak_hu|`` (the sign of ``peak_hu`` applied), float32."""
    return (f * (peak_hu / max(float(np.abs(f).max()), 1e-12))).astype(np.float32)


def lateral_field(shape, rng: np.random.Generator, centre_vox: Sequence[float], envelope_vox: float,
                  sigma_vox: float, peak_hu: float, texture: float = 0.5) -> np.ndarray:
    """A one-signed broad bump (HU) over ``shape``: a Gaussian envelope of ``envelope_vox`` around
    ``centre_vox`` times ``1 + texture * g`` (``g`` white noise blurred at ``sigma_vox``, unit SD;
    negative values cut to 0), scaled so that its largest value is ``peak_hu`` (negative for a
    darkening). The natural asymmetry of a real head is of this kind: the InVesalius head's right
    MCA cortex is darker than the left by 0.3-0.9 HU in every cortical region at once (one sign
    over a territory, texture within it; docs/results_v2.md, session 33), which a zero-mean random
    field of the same peak does not give at the scale of a region."""
    from scipy import ndimage as ndi

    grids = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij")
    r2 = sum(((g - c) / envelope_vox) ** 2 for g, c in zip(grids, centre_vox))
    g = ndi.gaussian_filter(rng.standard_normal(shape), sigma_vox, mode="wrap")
    g /= max(float(g.std()), 1e-12)
    return _to_peak(np.exp(-0.5 * r2) * np.clip(1.0 + texture * g, 0.0, None), peak_hu)


class RandHemisphericAsymmetryd(RandomizableTransform, MapTransform):
    """With probability ``prob``, add a smooth random HU field to the parenchyma of the (normalised,
    ``(1, X, Y, Z)``, x the left-right axis of the symmetric aligned grid) image, and its mirror image
    to ``contra_key``'s counterpart when given; the label is unchanged.

    Real normal heads are not symmetric in density: the InVesalius head is ~1 HU darker over the
    whole right MCA territory, the GE head's left cortex 2-4 HU (docs/data.md), and the v2 generator
    balances its real heads, so training never showed such a head as normal (model 0.4.0 lost points
    on them; docs/results_v2.md). The field is broad (``sigma_mm``, larger than a gyrus, about a
    lobe) and faint (``peak_hu``): the natural asymmetry of normal heads, which the model should not
    call infarct. Parenchyma only (HU within ``tissue_hu``, faded in over ``ramp_hu`` at both ends):
    CSF, calcification and bone keep their values. The counterpart gets the mirrored field (its
    deformation onto the image is negligible at this scale), so the image-minus-counterpart
    difference is the field's antisymmetric part, as for a real head.

    ``lateral_share``: the share of the drawn fields that are one-signed lateral bumps
    (:func:`lateral_field`: a Gaussian envelope of ``lateral_mm`` centred on a tissue voxel at
    least ``min_offset_mm`` from the midline, darker or brighter at random, peak from
    ``lateral_peak_hu``: 1-3 HU gives region means of up to 0.9 HU in a median draw over about four
    regions, as the InVesalius head has)
    instead of the zero-mean random field; 0 (default): the random field only, as before.

    ``label_key`` (None: off): the field is faded to 0 over the labelled lesion and its mirror
    image, widened by ``keep_mm``, so that a lesion keeps its contrast against its counterpart. A
    field of up to 3 HU over a labelled 2-4 HU lesion, brightening it or darkening its counterpart,
    would otherwise teach the model to mark a change of a fraction of a HU (session 33: a fine-tune
    without it marked 17-42 ml on normal heads as scanned)."""

    def __init__(self, keys: KeysCollection = ("image",), prob: float = 0.0, contra_key: Optional[str] = None,
                 peak_hu: Sequence[float] = (0.5, 2.0), sigma_mm: Sequence[float] = (12.0, 30.0),
                 spacing_mm: float = 2.0, tissue_hu: Sequence[float] = (15.0, 50.0), ramp_hu: float = 10.0,
                 lateral_share: float = 0.0, lateral_mm: Sequence[float] = (25.0, 45.0), min_offset_mm: float = 20.0,
                 lateral_peak_hu: Sequence[float] = (1.0, 3.0), label_key: Optional[str] = None, keep_mm: float = 6.0):
        MapTransform.__init__(self, keys)
        RandomizableTransform.__init__(self, prob)
        self.contra_key = contra_key
        self.peak_hu, self.sigma_mm = tuple(peak_hu), tuple(sigma_mm)
        self.spacing_mm, self.tissue_hu, self.ramp_hu = spacing_mm, tuple(tissue_hu), ramp_hu
        self.lateral_share, self.lateral_mm, self.min_offset_mm = float(lateral_share), tuple(lateral_mm), float(min_offset_mm)
        self.lateral_peak_hu = tuple(lateral_peak_hu)
        self.label_key, self.keep_mm = label_key, float(keep_mm)

    def _lesion_fade(self, label) -> Optional[np.ndarray]:
        """1 - (the label and its mirror, widened by ``keep_mm`` and softened): the field's weight."""
        from scipy import ndimage as ndi

        lesion = _array(label)[0] > 0
        if not lesion.any():
            return None
        both = lesion | lesion[::-1]
        reach = max(1, int(round(self.keep_mm / self.spacing_mm)))
        wide = ndi.binary_dilation(both, iterations=reach)
        soft = np.maximum(ndi.gaussian_filter(wide.astype(np.float32), reach / 2.0), wide)
        return (1.0 - np.clip(soft, 0.0, 1.0)).astype(np.float32)

    def _field(self, hu: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        peak = float(rng.uniform(*self.peak_hu))
        sigma = float(rng.uniform(*self.sigma_mm)) / self.spacing_mm
        if self.lateral_share <= 0 or rng.uniform() >= self.lateral_share:
            return asymmetry_field(hu.shape, rng, sigma, peak)
        lo, hi = self.tissue_hu
        # x (axis 0) is the left-right axis of the symmetric aligned grid, its midline the centre
        offset = np.abs(np.arange(hu.shape[0]) - (hu.shape[0] - 1) / 2.0) * self.spacing_mm
        candidates = np.argwhere(((hu > lo) & (hu < hi)) & (offset >= self.min_offset_mm)[:, None, None])
        if candidates.size == 0:
            return asymmetry_field(hu.shape, rng, sigma, peak)
        centre = candidates[int(rng.integers(len(candidates)))]
        envelope = float(rng.uniform(*self.lateral_mm)) / self.spacing_mm
        peak = float(rng.uniform(*self.lateral_peak_hu)) * (1.0 if rng.uniform() < 0.5 else -1.0)
        return lateral_field(hu.shape, rng, centre, envelope, sigma, peak)

    def _tissue(self, hu: np.ndarray) -> np.ndarray:
        lo, hi = self.tissue_hu
        r = self.ramp_hu
        return (np.clip((hu - (lo - r)) / r, 0, 1) * np.clip(((hi + r) - hu) / r, 0, 1)).astype(np.float32)

    def __call__(self, data: Mapping[Hashable, np.ndarray]) -> dict:
        d = dict(data)
        self.randomize(None)
        if not self._do_transform:
            return d
        rng = np.random.default_rng(int(self.R.randint(0, 2**31 - 1)))
        field = None
        for key in list(self.key_iterator(d)) + ([self.contra_key] if self.contra_key in d else []):
            x = d[key]
            hu = to_hu(x)
            if field is None:
                field = self._field(hu, rng)
                fade = self._lesion_fade(d[self.label_key]) if self.label_key in d else None
                if fade is not None:
                    field = field * fade
            f = field if key != self.contra_key else np.ascontiguousarray(field[::-1])
            out = from_hu(hu + f * self._tissue(hu))
            d[key] = _like(x, out)
        return d


class SyntheticInfarctd(RandomizableTransform, MapTransform):
    """With probability ``prob``, paint a real SOOP lesion shape of the training split into the
    (normalised, ``(1, X, Y, Z)``) aligned image with the v2 generator's model of early ischaemic
    change and add it to the label (``aspects_research.synthetic_infarct``). The study's slice
    thickness comes from the datalist entry's ``slice_mm`` when present. The lesion bank is built
    on first use (~0.1 s a shape: the 744 training shapes in ~75 s) and cached in ``bank_cache``.
    ``contrast_loss``: ``aspects_research.phantoms.CONTRAST_LOSS`` ("darken": tissue never brightens)."""

    def __init__(self, keys: KeysCollection = ("image", "label"), prob: float = 0.0, bank_cache: Optional[str] = None,
                 bank_limit: Optional[int] = None, atlas_dir: Optional[str] = None, contrast_loss: str = "darken"):
        MapTransform.__init__(self, keys)
        RandomizableTransform.__init__(self, prob)
        self.bank_cache, self.bank_limit, self.atlas_dir = bank_cache, bank_limit, atlas_dir
        self.contrast_loss = contrast_loss
        self._bank = None

    def bank(self):
        if self._bank is None:
            from aspects_research.synthetic_infarct import lesion_bank

            self._bank = lesion_bank("train", limit=self.bank_limit, atlas_dir=self.atlas_dir,
                                     cache=Path(self.bank_cache) if self.bank_cache else None)
        return self._bank

    def __call__(self, data: Mapping[Hashable, np.ndarray]) -> dict:
        from aspects_research.synthetic_infarct import synthesise

        d = dict(data)
        self.randomize(None)
        if not self._do_transform:
            return d
        image_key, label_key = self.keys
        img, lab = d[image_key], d[label_key]
        hu = to_hu(img)
        label = _array(lab)[0]
        rng = np.random.default_rng(int(self.R.randint(0, 2**31 - 1)))
        painted, truth, _ = synthesise(hu, label, self.bank(), rng, d.get("slice_mm"), self.contrast_loss)
        new_img = from_hu(painted)
        new_lab = torch.as_tensor(truth.astype(np.asarray(label).dtype)[None])
        d[image_key], d[label_key] = _like(img, new_img), _like(lab, new_lab)
        return d
