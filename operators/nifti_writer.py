"""Write the source-grid masks as NIfTI (for evaluation and research use)."""

from __future__ import annotations

from pathlib import Path

import SimpleITK as sitk
from monai.deploy.core import Fragment, Operator, OperatorSpec


class MaskNiftiWriterOperator(Operator):
    """Named input: "masks" ({"infarct", "regions"}: SimpleITK images on the source grid).
    Writes OUT/nifti/infarct.nii.gz and OUT/nifti/regions.nii.gz."""

    def __init__(self, fragment: Fragment, *args, output_folder: Path, **kwargs):
        self.output_folder = Path(output_folder)
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec):
        spec.input("masks")

    def compute(self, op_input, op_output, context):
        masks = op_input.receive("masks")
        folder = self.output_folder / "nifti"
        folder.mkdir(parents=True, exist_ok=True)
        for name, image in masks.items():
            sitk.WriteImage(image, str(folder / f"{name}.nii.gz"), useCompression=True)
