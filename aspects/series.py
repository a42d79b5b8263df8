"""The series to analyse: chosen from the scanned input folder, then loaded once as a HU volume.

One path from DICOM to Hounsfield units for the app, the in-process pipeline and the tools:
Modality LUT / rescale (PS3.3 C.11.1) and the presentation LUT, as the MONAI Deploy SDK's
series-to-volume operator applies them, on the slices sorted by ``sort_slices``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk
from pydicom.dataset import Dataset
from pydicom.pixels import apply_presentation_lut, apply_rescale, pixel_array

from aspects.dicom_geometry import sort_slices
from aspects.dicom_input import Scan, check_decodable, complete_type2, read_dataset, scan_folder
from aspects.errors import EXIT_UNDECODABLE, InputError
from aspects.selection import Selection, group_series, select_series
from aspects.timings import timed
from aspects.volume import SeriesVolume, float_image, series_volume

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SourceSeries:
    """The chosen series, loaded: the source grid every output goes back to.

    ``datasets``: the instances with their pixel data, sorted along the slice normal (index k is
    axis 0 of every source-grid array; Type 2 patient/study attributes the files lack are added
    empty, in memory); ``volume``: their HU image on a regular grid and the slices' geometry.
    """

    datasets: Tuple[Dataset, ...]
    volume: SeriesVolume
    selection: Selection

    @property
    def study_uid(self) -> str:
        return str(self.datasets[0].StudyInstanceUID)

    @property
    def series_uid(self) -> str:
        return str(self.datasets[0].SeriesInstanceUID)


def choose_series(scan: Scan, rules: Optional[dict] = None) -> Selection:
    """The head NCCT series of the scanned study (``aspects.selection`` rules), checked to be
    decodable by the installed pixel decoders. Raises InputError (exit 4, 5, 6 or 8)."""
    with timed("select"):
        selection = select_series(group_series(scan.datasets), rules)
        check_decodable(sort_slices(selection.chosen.datasets))
    log.info("selected %s", selection.chosen.label)
    return selection


def hu_slice(ds: Dataset) -> np.ndarray:
    """One slice in HU (float32): rescale slope/intercept or Modality LUT, then presentation LUT.

    Decoded with ``pydicom.pixels.pixel_array`` (the decoder behind ``ds.pixel_array``, same
    options), which does not keep the decoded array on the dataset: the datasets stay in memory
    for the writers, and a cached copy of every slice cost a thin study 160 MB."""
    return np.asarray(apply_presentation_lut(apply_rescale(pixel_array(ds), ds), ds), dtype=np.float32)


def hu_stack(datasets: Sequence[Dataset],
             allocate: Callable[[Tuple[int, ...]], np.ndarray] = lambda shape: np.empty(shape, np.float32)) -> np.ndarray:
    """``(N, rows, cols)`` float32 HU of the datasets in their order; a slice no decoder reads is
    an InputError (exit 8) naming the file and the transfer syntax. Filled slice by slice into one
    array from ``allocate(shape)`` (a list of slices then ``np.stack`` held the volume twice)."""
    out: Optional[np.ndarray] = None
    for k, ds in enumerate(datasets):
        try:
            plane = hu_slice(ds)
        except Exception as exc:  # the decoder's own error says why
            syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
            what = f"{syntax.name} " if syntax is not None else ""
            raise InputError(
                EXIT_UNDECODABLE,
                f"the {what}pixel data of {os.path.basename(str(getattr(ds, 'filename', '?')))} cannot be "
                f"decoded ({type(exc).__name__}: {exc})",
            ) from exc
        if out is None:
            out = allocate((len(datasets),) + plane.shape)
        out[k] = plane
    if out is None:
        raise ValueError("no datasets")
    return out


def load_series(selection: Selection) -> SourceSeries:
    """Read the chosen series' files once (pixel data included) and build its HU volume."""
    headers = sort_slices(selection.chosen.datasets)
    images: List[sitk.Image] = []

    def allocate(shape: Tuple[int, ...]) -> np.ndarray:  # the HU volume's own pixels: no copy
        img, pixels = float_image(shape)
        images.append(img)
        return pixels

    with timed("load"):
        datasets = tuple(complete_type2(read_dataset(str(h.filename))[0]) for h in headers)
        stack = hu_stack(datasets, allocate)
    with timed("hu_volume"):
        volume = series_volume(stack, datasets, images[0])
    if volume.resampled:
        g = volume.geometry
        log.info("series resampled onto a regular grid: gantry tilt %.1f deg removed, slice steps %.2f-%.2f mm -> "
                 "%.2f mm (%d planes); results map back onto the %d original slices",
                 g.tilt_deg, g.steps.min(), g.steps.max(), volume.image.GetSpacing()[2], volume.image.GetSize()[2],
                 g.n_slices)
    return SourceSeries(datasets=datasets, volume=volume, selection=selection)


def read_study(folder: Path) -> SourceSeries:
    """Scan ``folder``, choose its head NCCT series and load it: the app's input stages in one call
    (for the tools that need a study's HU volume as the app sees it)."""
    return load_series(choose_series(scan_folder(Path(folder))))
