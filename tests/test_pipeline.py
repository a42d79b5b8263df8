"""The in-process pipeline (aspects.pipeline): the same result as the app's command line, a warm
pipeline reusable study after study, and the typed pieces between the stages."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from aspects.errors import EXIT_BUSY, EXIT_NO_DICOM, EXIT_USAGE, InputError
from aspects.inference import DeviceKind, device_kind
from aspects.methods import InfarctMethod, RegionMethod
from aspects.result_json import to_builtin
from aspects.run_folder import ERROR_JSON, OutputFolder
from aspects.segmentation import INFARCT_MIRROR_TTA, declared_second_channel, declared_version
from tests.support.app_runs import run_app, run_pipeline


def _same_result(a: dict, b: dict) -> None:
    a, b = dict(a), dict(b)
    a.pop("timings_s"), b.pop("timings_s")
    assert a == b


@pytest.fixture(scope="module")
def normal_case(phantom_case) -> Path:
    return phantom_case(31, kind="normal", thickness=5.0)


@pytest.mark.slow
@pytest.mark.e2e
def test_in_process_run_equals_the_command_line_run(normal_case, pipeline, tmp_path):
    """One implementation of every stage: the operators' graph and the plain chain give the same
    aspects.json and masks."""
    cli = run_app(normal_case / "dicom", tmp_path / "cli")
    assert cli.returncode == 0, cli.stderr[-1500:]
    run = run_pipeline(pipeline, normal_case / "dicom", tmp_path / "inproc")
    assert run.returncode == 0, run.stderr
    _same_result(json.loads((tmp_path / "cli" / "aspects.json").read_text()), run.result)
    for name in ("infarct", "regions"):
        a, b = (sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / d / "nifti" / f"{name}.nii.gz"))) for d in ("cli", "inproc"))
        np.testing.assert_array_equal(a, b)
    names = lambda d: sorted(p.relative_to(d).as_posix() for p in d.rglob("*") if p.is_file() and p.name != ".aspects.lock")  # noqa: E731
    assert names(tmp_path / "cli") == names(tmp_path / "inproc")


@pytest.mark.slow
@pytest.mark.e2e
def test_a_warm_pipeline_gives_the_same_result_study_after_study(normal_case, pipeline, tmp_path):
    first = pipeline.run(normal_case / "dicom", tmp_path / "first")
    second = pipeline.run(normal_case / "dicom", tmp_path / "second")
    _same_result(first, second)
    assert set(first["timings_s"]) == set(second["timings_s"])  # timings are per run, not accumulated
    shipped = pipeline.models.infarct.path  # a warm model names its version and settings as a cold one does
    assert first["methods"] == {"regions": "atlas", "infarct": "model",
                                "infarct_model": {"version": declared_version(shipped), "mirror_tta": INFARCT_MIRROR_TTA.value,
                                                  "second_channel": declared_second_channel(shipped)}}
    assert pipeline.models.infarct is not None and pipeline.models.infarct._module is not None  # kept loaded
    assert pipeline.atlas() is pipeline.atlas()  # read once


def test_bad_input_raises_the_apps_exit_code_and_writes_error_json(tmp_path):
    from aspects.pipeline import Pipeline

    (tmp_path / "empty").mkdir()
    pipeline = Pipeline(models_dir=tmp_path / "no_models")
    with pytest.raises(InputError) as err:
        pipeline.run(tmp_path / "empty", tmp_path / "out")
    assert err.value.code == EXIT_NO_DICOM
    assert json.loads((tmp_path / "out" / ERROR_JSON).read_text())["exit_code"] == EXIT_NO_DICOM
    with pytest.raises(InputError) as err:
        pipeline.run(tmp_path / "empty", tmp_path / "empty" / "out")
    assert err.value.code == EXIT_USAGE and "inside the input" in err.value.message
    assert not (tmp_path / "empty" / "out").exists()  # the input is never written


def test_output_folder_lock_is_released_for_the_next_run(tmp_path):
    first = OutputFolder(tmp_path / "out")
    first.open()
    with pytest.raises(InputError) as err:
        OutputFolder(tmp_path / "out").lock()
    assert err.value.code == EXIT_BUSY
    first.release()
    second = OutputFolder(tmp_path / "out")
    second.open()
    assert second.locked
    second.release()


def test_enums_are_the_strings_aspects_json_carries():
    assert to_builtin({"methods": {"regions": RegionMethod.ATLAS, "infarct": InfarctMethod.MODEL}}) == \
        {"methods": {"regions": "atlas", "infarct": "model"}}
    assert json.dumps(RegionMethod.MODEL) == '"model"'
    assert device_kind("cpu") is DeviceKind.CPU and device_kind("cuda:1") is DeviceKind.CUDA
    for bad in ("cuda", "gpu", "cuda:x"):
        with pytest.raises(ValueError):
            device_kind(bad)


def test_the_input_folder_is_read_once_and_only_the_chosen_series_pixels_again(tmp_path, monkeypatch):
    """The scan reads every file's header once; loading reads the chosen series' files once more for
    their pixels; no other file is opened again (the app's loader and selector share that one scan)."""
    import pydicom
    from pydicom.uid import generate_uid

    import aspects.dicom_input as dicom_input
    from aspects.dicom_input import scan_folder
    from aspects.series import choose_series, load_series
    from tests.support.ct_series import make_ct_series

    thin, thick = make_ct_series(n=20), make_ct_series(n=10)
    other = generate_uid()
    for ds in thick:  # a second, thicker series of the same study: not chosen
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = thin[0].StudyInstanceUID, other, generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.SliceThickness = 7.0
        ds.SeriesNumber = 3
    folder = tmp_path / "study"
    folder.mkdir()
    for i, ds in enumerate(thin + thick):
        ds.save_as(folder / f"{i:03d}.dcm", enforce_file_format=True)
    reads: dict = {}
    real = pydicom.dcmread

    def counting(fp, *args, **kwargs):
        name = getattr(fp, "name", fp)
        reads[str(name)] = reads.get(str(name), 0) + 1
        return real(fp, *args, **kwargs)

    monkeypatch.setattr(dicom_input, "dcmread", counting)
    series = load_series(choose_series(scan_folder(folder)))
    chosen = {str(ds.filename) for ds in series.datasets}
    assert len(chosen) == 20 and series.series_uid == str(thin[0].SeriesInstanceUID)
    assert series.volume.image.GetSize()[2] == 20 and series.datasets[0].pixel_array.shape == (128, 128)
    for path in sorted(str(p) for p in folder.iterdir()):
        assert reads[path] == (2 if path in chosen else 1), path
