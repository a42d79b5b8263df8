"""MONAI Deploy operators that write the app's outputs, one file kind each (aspects.outputs).

Every writer receives "scored" (:class:`aspects.assess.ScoredStudy`) and writes under its
``output_folder``: OUT/dicom (SEG, SR, KOS, key images), OUT/png, OUT/nifti and OUT/aspects.json,
which is written last and names the others.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from monai.deploy.core import ConditionType, Fragment, Operator, OperatorSpec

from aspects.outputs import (WrittenOutputs, key_image_outputs, kos_output, nifti_outputs, result_json_output,
                             seg_output, sr_output)

SCORED = "scored"
SEG_PATH = "seg_path"
SR_PATH = "sr_path"
KEY_IMAGES = "key_images"
KOS_PATH = "kos_path"
NIFTI_PATHS = "nifti_paths"
JSON_PATH = "json_path"


class _WriterOperator(Operator):
    """Common constructor: where the outputs go."""

    IN_SCORED = SCORED

    def __init__(self, fragment: Fragment, *args, output_folder: Path, **kwargs):
        self.output_folder = Path(output_folder)
        super().__init__(fragment, *args, **kwargs)


class SegWriterOperator(_WriterOperator):
    """DICOM SEG (infarct + 20 regions) to OUT/dicom/seg.dcm. Named output: "seg_path" (Path)."""

    OUT_SEG = SEG_PATH

    def setup(self, spec: OperatorSpec):
        spec.input(self.IN_SCORED)
        spec.output(self.OUT_SEG).condition(ConditionType.NONE)

    def compute(self, op_input, op_output, context):
        op_output.emit(seg_output(op_input.receive(self.IN_SCORED), self.output_folder), self.OUT_SEG)


class SRWriterOperator(_WriterOperator):
    """DICOM SR (TID 1500) to OUT/dicom/sr.dcm. Named output: "sr_path" (Path).

    With ``reference_seg=True`` the input "seg_path" (from SegWriterOperator) is declared and the
    infarct/region groups reference their SEG segments.
    """

    IN_SEG = SEG_PATH
    OUT_SR = SR_PATH

    def __init__(self, fragment: Fragment, *args, output_folder: Path, reference_seg: bool = False, **kwargs):
        self.reference_seg = reference_seg
        super().__init__(fragment, *args, output_folder=output_folder, **kwargs)

    def setup(self, spec: OperatorSpec):
        spec.input(self.IN_SCORED)
        if self.reference_seg:
            spec.input(self.IN_SEG)
        spec.output(self.OUT_SR).condition(ConditionType.NONE)

    def compute(self, op_input, op_output, context):
        seg = op_input.receive(self.IN_SEG) if self.reference_seg else None
        op_output.emit(sr_output(op_input.receive(self.IN_SCORED), self.output_folder, seg), self.OUT_SR)


class KeyImageWriterOperator(_WriterOperator):
    """BG/SG key images to OUT/dicom/key_*.dcm and OUT/png/key_*.png.
    Named output: "key_images" (tuple of :class:`aspects.outputs.KeyImage`)."""

    OUT_KEY_IMAGES = KEY_IMAGES

    def setup(self, spec: OperatorSpec):
        spec.input(self.IN_SCORED)
        spec.output(self.OUT_KEY_IMAGES).condition(ConditionType.NONE)

    def compute(self, op_input, op_output, context):
        op_output.emit(key_image_outputs(op_input.receive(self.IN_SCORED), self.output_folder), self.OUT_KEY_IMAGES)


class KOSWriterOperator(_WriterOperator):
    """Key Object Selection document to OUT/dicom/kos.dcm. Named output: "kos_path" (Path).

    Waits for the key images, the SR and the SEG, and flags them (with the source slices of the
    two ASPECTS levels) as the study's key objects.
    """

    IN_KEY_IMAGES = KEY_IMAGES
    IN_SR = SR_PATH
    IN_SEG = SEG_PATH
    OUT_KOS = KOS_PATH

    def setup(self, spec: OperatorSpec):
        for name in (self.IN_SCORED, self.IN_KEY_IMAGES, self.IN_SR, self.IN_SEG):
            spec.input(name)
        spec.output(self.OUT_KOS).condition(ConditionType.NONE)

    def compute(self, op_input, op_output, context):
        scored, keys, sr, seg = (op_input.receive(n) for n in (self.IN_SCORED, self.IN_KEY_IMAGES, self.IN_SR, self.IN_SEG))
        op_output.emit(kos_output(scored, self.output_folder, keys, sr, seg), self.OUT_KOS)


class NiftiWriterOperator(_WriterOperator):
    """The source-grid masks as OUT/nifti/infarct.nii.gz and regions.nii.gz (evaluation and research).
    Named output: "nifti_paths" (name -> Path)."""

    OUT_NIFTI = NIFTI_PATHS

    def setup(self, spec: OperatorSpec):
        spec.input(self.IN_SCORED)
        spec.output(self.OUT_NIFTI).condition(ConditionType.NONE)

    def compute(self, op_input, op_output, context):
        op_output.emit(nifti_outputs(op_input.receive(self.IN_SCORED), self.output_folder), self.OUT_NIFTI)


class JSONWriterOperator(_WriterOperator):
    """aspects.json, written last: the scored document plus the relative paths of the files
    written upstream. Named output: "json_path" (Path).

    ``wait_for`` names the upstream ports to wait for: any of :attr:`PORTS` (default
    :attr:`DEFAULT_PORTS`).
    """

    IN_SEG, IN_SR, IN_KEY_IMAGES, IN_KOS, IN_NIFTI = SEG_PATH, SR_PATH, KEY_IMAGES, KOS_PATH, NIFTI_PATHS
    PORTS = (SEG_PATH, SR_PATH, KEY_IMAGES, KOS_PATH, NIFTI_PATHS)
    DEFAULT_PORTS = (SEG_PATH, SR_PATH, KEY_IMAGES)
    OUT_JSON = JSON_PATH

    def __init__(self, fragment: Fragment, *args, output_folder: Path, wait_for: Sequence[str] = DEFAULT_PORTS, **kwargs):
        unknown = set(wait_for) - set(self.PORTS)
        if unknown:
            raise ValueError(f"JSONWriterOperator: unknown ports {sorted(unknown)}; known: {self.PORTS}")
        self.wait_for = tuple(wait_for)
        super().__init__(fragment, *args, output_folder=output_folder, **kwargs)

    def setup(self, spec: OperatorSpec):
        spec.input(self.IN_SCORED)
        for name in self.wait_for:
            spec.input(name)
        spec.output(self.OUT_JSON).condition(ConditionType.NONE)

    def compute(self, op_input, op_output, context):
        scored = op_input.receive(self.IN_SCORED)
        got = {name: op_input.receive(name) for name in self.wait_for}
        written = WrittenOutputs(seg=got.get(SEG_PATH), sr=got.get(SR_PATH), kos=got.get(KOS_PATH),
                                 key_images=tuple(got.get(KEY_IMAGES) or ()), nifti=got.get(NIFTI_PATHS) or {})
        op_output.emit(result_json_output(scored, self.output_folder, written), self.OUT_JSON)
