"""MONAI Deploy operators that write the app's outputs; thin wrappers over aspects.* writers.

Port contract (all Python objects):
    source   list[pydicom.Dataset]  the selected CT series, sorted (aspects.dicom_geometry.sort_slices)
    infarct  np.ndarray bool (z, y, x) on the source grid
    regions  np.ndarray uint8 (z, y, x) on the source grid, aspects.labels table
    result   dict, the aspects.json content (aspects.result_json)
Outputs: ``seg_path`` / ``sr_path`` / ``kos_path`` (Path), ``key_images`` (dict level -> {"slice",
"dcm", "png"}), ``json_path`` (Path). Files go to OUT/dicom, OUT/png and OUT/aspects.json.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import pydicom
from monai.deploy.core import ConditionType, Fragment, Operator, OperatorSpec

from aspects.dicom_kos import write_kos
from aspects.dicom_seg import write_seg
from aspects.dicom_sr import write_sr
from aspects.key_images import key_slices, write_key_images
from aspects.result_json import relative_outputs, write_result

logger = logging.getLogger(__name__)


class _WriterOperator(Operator):
    """Common constructor: where the outputs go."""

    def __init__(self, fragment: Fragment, *args, output_folder: Path, **kwargs):
        self.output_folder = Path(output_folder)
        super().__init__(fragment, *args, **kwargs)


class SegWriterOperator(_WriterOperator):
    """DICOM SEG (infarct + 20 regions) to OUT/dicom/seg.dcm; emits ``seg_path``."""

    def setup(self, spec: OperatorSpec):
        for name in ("source", "infarct", "regions", "result"):
            spec.input(name)
        spec.output("seg_path").condition(ConditionType.NONE)

    def compute(self, op_input, op_output, context):
        source, result = op_input.receive("source"), op_input.receive("result")
        path = write_seg(
            source, op_input.receive("infarct"), op_input.receive("regions"), result, self.output_folder / "dicom" / "seg.dcm"
        )
        logger.info("wrote %s", path)
        op_output.emit(path, "seg_path")


class SRWriterOperator(_WriterOperator):
    """DICOM SR (TID 1500) to OUT/dicom/sr.dcm; emits ``sr_path``.

    ``regions`` picks the key slices the hemisphere groups reference (same rule as the key images).
    With ``reference_seg=True`` an input ``seg_path`` (from SegWriterOperator) is declared and the
    infarct/region groups reference their SEG segments.
    """

    def __init__(self, fragment: Fragment, *args, output_folder: Path, reference_seg: bool = False, **kwargs):
        self.reference_seg = reference_seg
        super().__init__(fragment, *args, output_folder=output_folder, **kwargs)

    def setup(self, spec: OperatorSpec):
        for name in ("source", "regions", "result") + (("seg_path",) if self.reference_seg else ()):
            spec.input(name)
        spec.output("sr_path").condition(ConditionType.NONE)

    def compute(self, op_input, op_output, context):
        source, regions, result = (op_input.receive(n) for n in ("source", "regions", "result"))
        seg = pydicom.dcmread(op_input.receive("seg_path"), stop_before_pixels=True) if self.reference_seg else None
        keys = [source[k] for k in key_slices(result, regions).values()]
        path = write_sr(source, result, self.output_folder / "dicom" / "sr.dcm", key_sources=keys, seg=seg)
        logger.info("wrote %s", path)
        op_output.emit(path, "sr_path")


class KeyImageWriterOperator(_WriterOperator):
    """BG/SG key images to OUT/dicom/key_*.dcm and OUT/png/key_*.png; emits ``key_images``."""

    def setup(self, spec: OperatorSpec):
        for name in ("source", "infarct", "regions", "result"):
            spec.input(name)
        spec.output("key_images").condition(ConditionType.NONE)

    def compute(self, op_input, op_output, context):
        written = write_key_images(
            op_input.receive("source"),
            op_input.receive("infarct"),
            op_input.receive("regions"),
            op_input.receive("result"),
            self.output_folder,
        )
        for level, item in written.items():
            logger.info("key image %s: slice %d -> %s, %s", level, item["slice"], item["dcm"], item["png"])
        op_output.emit(written, "key_images")


class KOSWriterOperator(_WriterOperator):
    """Key Object Selection document to OUT/dicom/kos.dcm; emits ``kos_path``.

    Waits for the key images, the SR and the SEG, and flags them (with the source slices of the
    two ASPECTS levels) as the study's key objects.
    """

    def setup(self, spec: OperatorSpec):
        for name in ("source", "result", "key_images", "sr_path", "seg_path"):
            spec.input(name)
        spec.output("kos_path").condition(ConditionType.NONE)

    def compute(self, op_input, op_output, context):
        source, result, keys = (op_input.receive(n) for n in ("source", "result", "key_images"))
        sr, seg = (pydicom.dcmread(op_input.receive(n), stop_before_pixels=True) for n in ("sr_path", "seg_path"))
        path = write_kos(
            [source[k["slice"]] for k in keys.values()],
            [pydicom.dcmread(k["dcm"], stop_before_pixels=True) for k in keys.values()],
            sr,
            self.output_folder / "dicom" / "kos.dcm",
            seg=seg,
            result=result,
        )
        logger.info("wrote %s", path)
        op_output.emit(path, "kos_path")


class JSONWriterOperator(_WriterOperator):
    """aspects.json, written last: ``result`` plus the relative paths of the files written upstream.

    ``wait_for`` names the upstream ports to wait for: any of ``seg_path``, ``sr_path``,
    ``key_images`` (the default), ``kos_path`` and ``nifti_paths`` (dict name -> Path, for a NIfTI writer that
    emits what it wrote). ``result["outputs"]`` entries already present are kept.
    """

    PORTS = ("seg_path", "sr_path", "key_images", "kos_path", "nifti_paths")
    DEFAULT_PORTS = ("seg_path", "sr_path", "key_images")

    def __init__(self, fragment: Fragment, *args, output_folder: Path, wait_for: Sequence[str] = DEFAULT_PORTS, **kwargs):
        unknown = set(wait_for) - set(self.PORTS)
        if unknown:
            raise ValueError(f"JSONWriterOperator: unknown ports {sorted(unknown)}; known: {self.PORTS}")
        self.wait_for = tuple(wait_for)
        super().__init__(fragment, *args, output_folder=output_folder, **kwargs)

    def setup(self, spec: OperatorSpec):
        spec.input("result")
        for name in self.wait_for:
            spec.input(name)
        spec.output("json_path").condition(ConditionType.NONE)

    def compute(self, op_input, op_output, context):
        result = dict(op_input.receive("result"))
        got = {name: op_input.receive(name) for name in self.wait_for}
        keys = list((got.get("key_images") or {}).values())
        outputs = dict(result.get("outputs") or {})
        outputs.update(
            relative_outputs(
                self.output_folder,
                seg=got.get("seg_path"),
                sr=got.get("sr_path"),
                kos=got.get("kos_path"),
                key_images=[k["dcm"] for k in keys],
                png=[k["png"] for k in keys],
                nifti=got.get("nifti_paths"),
            )
        )
        result["outputs"] = outputs
        path = write_result(result, self.output_folder / "aspects.json")
        logger.info("wrote %s", path)
        op_output.emit(path, "json_path")
