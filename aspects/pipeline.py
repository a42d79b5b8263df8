"""The app in-process: the plain chain of the stage functions that the MONAI Deploy operators wrap
one by one (as TotalSegmentator's ``python_api`` does), for evaluation, benchmarks, tests and a
warm server that keeps the atlas and models loaded between studies.

    result = run_study("STUDY_DICOM", "OUT", models_dir="models")    # aspects.json as written
    pipeline = Pipeline(models_dir="models", keep_models_loaded=True)   # then pipeline.run(in, out) per study

Bad input raises :class:`aspects.errors.InputError` (``code`` = the app's exit code) after
writing error.json, as the app does; the output folder follows :mod:`aspects.run_folder`.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Tuple, Union

from aspects import timings
from aspects.assess import ImageFindings, ScoredStudy, ScoringSettings, assess_study, image_findings
from aspects.atlas import LazyAtlas
from aspects.dicom_input import scan_folder
from aspects.errors import EXIT_INTERNAL, InputError
from aspects.outputs import (WrittenOutputs, key_image_outputs, kos_output, nifti_outputs, result_json_output,
                             seg_output, sr_output)
from aspects.preprocess import Preprocessed, preprocess_series
from aspects.result_json import read_result
from aspects.run_folder import OutputFolder
from aspects.segmentation import (InfarctSegmentation, RegionSegmentation, SegmentationModels, segment_infarct,
                                  segment_regions)
from aspects.selection import load_rules
from aspects.series import choose_series, load_series

log = logging.getLogger(__name__)
PathLike = Union[str, Path]
APP_LOG = "app.log"


def write_outputs(scored: ScoredStudy, out_dir: Path) -> Tuple[WrittenOutputs, Path]:
    """Every output file of a scored study (aspects.json last); returns them and aspects.json."""
    seg = seg_output(scored, out_dir)
    sr = sr_output(scored, out_dir, seg)
    keys = key_image_outputs(scored, out_dir)
    kos = kos_output(scored, out_dir, keys, sr, seg)
    written = WrittenOutputs(seg=seg, sr=sr, kos=kos, key_images=keys, nifti=nifti_outputs(scored, out_dir))
    return written, result_json_output(scored, out_dir, written)


@contextmanager
def _app_log(path: Path) -> Iterator[None]:
    """The run's log lines (the ``aspects`` loggers, DEBUG and up) also in ``path``, as app.py writes it."""
    handler = logging.FileHandler(path, mode="w")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.DEBUG)
    logger = logging.getLogger("aspects")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        handler.close()


class Pipeline:
    """Atlas, models and settings of the app, held for any number of studies.

    ``models_dir``: ``MODELS/<name>/<name>.ts`` (None or no model: the atlas and asymmetry
    fallbacks); ``device``: as :func:`aspects.inference.resolve_device` (resolved here when a
    model is installed: a CUDA request on a host without one raises InputError, exit 2);
    ``keep_models_loaded``: keep the weights between studies (a warm server) instead of loading
    them for each study; ``parallel``: run the two segmenters side by side, as the app does.
    """

    def __init__(self, models_dir: Optional[PathLike] = None, atlas_dir: Optional[PathLike] = None,
                 device: Optional[str] = None, *, settings: Optional[ScoringSettings] = None,
                 rules_file: Optional[PathLike] = None, keep_models_loaded: bool = False, parallel: bool = True):
        self.models = SegmentationModels.from_folder(Path(models_dir) if models_dir else None, device,
                                                     keep_models_loaded)
        self.atlas = LazyAtlas(atlas_dir)
        self.settings = settings if settings is not None else ScoringSettings()
        self.rules = load_rules(Path(rules_file) if rules_file else None)
        self.parallel = parallel

    @property
    def device(self) -> str:
        return self.models.device

    def segment(self, pre: Preprocessed) -> Tuple[InfarctSegmentation, RegionSegmentation, ImageFindings]:
        """The two segmenters (independent of each other) on the aligned study, and the image
        findings, which need the regions only (in the regions' thread, as the app's graph runs them)."""
        atlas = self.atlas()

        def regions_and_findings() -> Tuple[RegionSegmentation, ImageFindings]:
            regions = segment_regions(pre, atlas, self.models.regions)
            return regions, image_findings(pre, regions)

        if not self.parallel:
            return (segment_infarct(pre, self.models.infarct), *regions_and_findings())
        with ThreadPoolExecutor(2, thread_name_prefix="segmenter") as pool:
            infarct = pool.submit(segment_infarct, pre, self.models.infarct)
            beside = pool.submit(regions_and_findings)
            return (infarct.result(), *beside.result())

    def assess(self, input_dir: PathLike) -> ScoredStudy:
        """Scan, select, load, preprocess, segment and score one study (nothing written)."""
        timings.reset()
        with timings.timed("scan"):
            scan = scan_folder(Path(input_dir))
        series = load_series(choose_series(scan, self.rules))
        pre = preprocess_series(series, self.atlas())
        infarct, regions, image = self.segment(pre)
        return assess_study(series, pre, infarct, regions, self.settings, image)

    def run(self, input_dir: PathLike, output_dir: PathLike) -> Dict[str, Any]:
        """Process one study into ``output_dir`` as the app does; returns aspects.json as written."""
        input_dir, output_dir = Path(input_dir), Path(output_dir)
        folder = OutputFolder(output_dir)
        try:
            folder.open(input_dir)
            with _app_log(output_dir / APP_LOG):
                scored = self.assess(input_dir)
                _, result_path = write_outputs(scored, folder.start_partial())
                document = read_result(result_path)
                folder.commit()
            return document
        except InputError as exc:
            if folder.locked:
                folder.fail(exc.code, exc.one_line())
            raise
        except Exception as exc:
            if folder.locked:
                folder.fail(EXIT_INTERNAL, f"error[{EXIT_INTERNAL}]: internal error: {type(exc).__name__}: {exc}")
            raise
        finally:
            folder.release()


def run_study(input_dir: PathLike, output_dir: PathLike, models_dir: Optional[PathLike] = None,
              atlas_dir: Optional[PathLike] = None, device: Optional[str] = None, **options: Any) -> Dict[str, Any]:
    """One study through the app's stages into ``output_dir`` (see :class:`Pipeline` for the
    arguments); returns the aspects.json document."""
    return Pipeline(models_dir, atlas_dir, device, **options).run(input_dir, output_dir)
