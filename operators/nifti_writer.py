"""Write the source-grid masks as NIfTI (for evaluation and research use)."""

from __future__ import annotations

from pathlib import Path

import SimpleITK as sitk
from monai.deploy.core import ConditionType, Fragment, Operator, OperatorSpec


class MaskNiftiWriterOperator(Operator):
    """Named input: "masks" ({"infarct", "regions"}: SimpleITK images on the source grid).
    Writes OUT/nifti/infarct.nii.gz and OUT/nifti/regions.nii.gz; emits "nifti_paths"
    (name -> Path) so that aspects.json is written after them."""

    def __init__(self, fragment: Fragment, *args, output_folder: Path, **kwargs):
        self.output_folder = Path(output_folder)
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec):
        spec.input("masks")
        spec.output("nifti_paths").condition(ConditionType.NONE)

    def compute(self, op_input, op_output, context):
        masks = op_input.receive("masks")
        folder = self.output_folder / "nifti"
        folder.mkdir(parents=True, exist_ok=True)
        paths = {}
        for name, image in masks.items():
            paths[name] = folder / f"{name}.nii.gz"
            sitk.WriteImage(image, str(paths[name]), useCompression=True)
        op_output.emit(paths, "nifti_paths")
