"""The SDK's series-to-volume operator, with pixels that cannot be decoded reported as input errors."""

from __future__ import annotations

import os

from monai.deploy.operators.dicom_series_to_volume_operator import DICOMSeriesToVolumeOperator

from aspects.errors import EXIT_UNDECODABLE, InputError


class DecodingSeriesToVolumeOperator(DICOMSeriesToVolumeOperator):
    """Like the SDK operator (same ports); a slice whose pixel data no decoder can read (corrupt
    JPEG stream, unsupported compression) ends the run with exit 8 naming that file, not with an
    internal error."""

    def generate_voxel_data(self, series):
        try:
            return super().generate_voxel_data(series)
        except Exception as exc:
            for sop in series.get_sop_instances():
                try:
                    sop.get_pixel_array()
                except Exception as bad:  # the decoder's own error says why
                    ds = sop.get_native_sop_instance()
                    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
                    what = f"{syntax.name} " if syntax is not None else ""
                    raise InputError(
                        EXIT_UNDECODABLE,
                        f"the {what}pixel data of {os.path.basename(str(getattr(ds, 'filename', '?')))} cannot be "
                        f"decoded ({type(bad).__name__}: {bad})",
                    ) from exc
            raise
