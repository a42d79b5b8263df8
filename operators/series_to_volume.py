"""The selected series as the SDK's volumetric ``Image`` (HU); pixels that cannot be decoded are input errors."""

from __future__ import annotations

import os
from typing import List

from monai.deploy.core import Operator, OperatorSpec
from monai.deploy.core.domain.dicom_series_selection import StudySelectedSeries
from monai.deploy.core.domain.image import Image

from aspects.dicom_geometry import sort_slices
from aspects.errors import EXIT_UNDECODABLE, InputError
from aspects.volume import hu_stack


class DecodingSeriesToVolumeOperator(Operator):
    """Named input: "study_selected_series_list" (List[StudySelectedSeries], the first selected
    series is used); named output: "image" (SDK ``Image``, float32 HU, (N, rows, cols) with the
    slices in :func:`aspects.dicom_geometry.sort_slices` order, as the "source_datasets" port).

    The voxels are those of the SDK's ``DICOMSeriesToVolumeOperator`` (modality rescale, then the
    presentation LUT), which it replaces so that the app never imports ``monai.deploy.operators``
    (docs/performance.md). A slice whose pixel data no decoder can read (corrupt JPEG stream,
    unsupported compression) ends the run with exit 8 naming that file, not with an internal error.
    """

    def setup(self, spec: OperatorSpec):
        spec.input("study_selected_series_list")
        spec.output("image")

    def compute(self, op_input, op_output, context):
        selected: List[StudySelectedSeries] = op_input.receive("study_selected_series_list")
        if not selected or not selected[0].selected_series:
            raise ValueError("no selected series on 'study_selected_series_list'")
        series = selected[0].selected_series[0].series
        op_output.emit(Image(self.generate_voxel_data(series), {"selection_name": selected[0].selected_series[0].selection_name}),
                       "image")

    @staticmethod
    def generate_voxel_data(series):
        """(N, rows, cols) float32 HU of ``series`` (SDK ``DICOMSeries``), slices sorted."""
        datasets = sort_slices([sop.get_native_sop_instance() for sop in series.get_sop_instances()])
        try:
            return hu_stack(datasets)
        except Exception as exc:
            for ds in datasets:
                try:
                    ds.pixel_array
                except Exception as bad:  # the decoder's own error says why
                    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
                    what = f"{syntax.name} " if syntax is not None else ""
                    raise InputError(
                        EXIT_UNDECODABLE,
                        f"the {what}pixel data of {os.path.basename(str(getattr(ds, 'filename', '?')))} cannot be "
                        f"decoded ({type(bad).__name__}: {bad})",
                    ) from exc
            raise
