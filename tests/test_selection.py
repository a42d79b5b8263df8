"""Series selection rules and series geometry checks on header-only datasets."""

import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from aspects.errors import EXIT_BAD_SERIES, EXIT_MULTIPLE_STUDIES, EXIT_NO_SERIES, InputError
from aspects.selection import geometry_problem, load_rules, select_series

CT = "1.2.840.10008.5.1.4.1.1.2"
STUDY = generate_uid()


def series(n=30, thickness=5.0, number=2, desc="Head NCCT", kernel="H40s", modality="CT",
           image_type=("ORIGINAL", "PRIMARY", "AXIAL"), study=STUDY, positions=None, tilt=0.0, **extra):
    uid = generate_uid()
    pos = positions if positions is not None else [i * thickness for i in range(n)]
    out = []
    for i, z in enumerate(pos):
        ds = Dataset()
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = study, uid, generate_uid()
        ds.SOPClassUID = CT if modality == "CT" else "1.2.840.10008.5.1.4.1.1.4"
        ds.Modality, ds.SeriesNumber, ds.SeriesDescription = modality, number, desc
        ds.ConvolutionKernel, ds.ImageType, ds.SliceThickness = kernel, list(image_type), thickness
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [-120.0, -120.0 + np.tan(np.radians(tilt)) * z, float(z)]
        ds.Rows = ds.Columns = 512
        ds.PixelSpacing = [0.45, 0.45]
        if tilt:
            ds.GantryDetectorTilt = tilt
        for k, v in extra.items():
            setattr(ds, k, v)
        out.append(ds)
    return uid, out


def as_input(*many):
    return {(s[0].StudyInstanceUID, uid): s for uid, s in many}


def test_prefers_thin_soft_tissue_series():
    thick = series(30, 5.0, number=2)
    thin = series(150, 1.0, number=3)
    bone = series(150, 1.0, number=4, kernel="H70h")
    sel = select_series(as_input(thick, bone, thin))
    assert sel.chosen.series_uid == thin[0]
    assert any("chosen" in r for r in sel.reasons)


def test_falls_back_to_thinnest_up_to_5mm_and_is_order_independent():
    a = series(30, 5.0, number=2)
    b = series(60, 2.5, number=5)
    c = series(20, 7.0, number=6)  # too thick
    assert select_series(as_input(a, b, c)).chosen.series_uid == b[0]
    assert select_series(as_input(c, b, a)).chosen.series_uid == b[0]


@pytest.mark.parametrize("kwargs, reason", [
    (dict(modality="MR"), "modality MR"),
    (dict(ContrastBolusAgent="Iomeprol"), "contrast-enhanced"),
    (dict(image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"), n=2), "localizer"),
    (dict(image_type=("DERIVED", "SECONDARY", "REFORMATTED")), "ImageType"),
    (dict(desc="Scout"), "excluded"),
])
def test_rejects_non_ncct_series_with_a_reason(kwargs, reason):
    with pytest.raises(InputError) as err:
        select_series(as_input(series(**kwargs)))
    assert err.value.code == EXIT_NO_SERIES and reason in err.value.message


def test_contrast_series_skipped_when_plain_series_exists():
    plain = series(30, 5.0, number=2)
    contrast = series(150, 1.0, number=3, ContrastBolusAgent="Omnipaque")
    assert select_series(as_input(contrast, plain)).chosen.series_uid == plain[0]


def test_two_studies_are_refused():
    with pytest.raises(InputError) as err:
        select_series(as_input(series(), series(study=generate_uid())))
    assert err.value.code == EXIT_MULTIPLE_STUDIES and "2 studies" in err.value.message


def test_missing_slices_and_mixed_spacing_and_tilt():
    rules = load_rules()
    _, gap = series(positions=[0, 5, 10, 20, 25, 30, 35, 40, 45, 50])
    assert "missing slices: 1 slice" in geometry_problem(gap, rules)
    _, mixed = series(positions=[0, 5, 10, 12.5, 15, 17.5, 20, 25, 30])
    assert "mixed slice spacing" in geometry_problem(mixed, rules)
    _, tilted = series(tilt=15.0)
    assert "gantry tilt of 15.0 deg" in geometry_problem(tilted, rules)
    _, ok = series()
    assert geometry_problem(ok, rules) is None


def test_unusable_only_candidate_gives_bad_series_error():
    with pytest.raises(InputError) as err:
        select_series(as_input(series(positions=[0, 5, 10, 20, 25, 30, 35, 40, 45, 50])))
    assert err.value.code == EXIT_BAD_SERIES and "missing slices" in err.value.one_line()
    assert "\n" not in err.value.one_line()


def test_bad_candidate_falls_back_to_next_usable_series():
    thin_gap = series(positions=[i * 1.0 for i in range(60)] + [70.0 + i for i in range(60)], thickness=1.0, number=3)
    good = series(30, 5.0, number=2)
    sel = select_series(as_input(thin_gap, good))
    assert sel.chosen.series_uid == good[0]
    assert any("missing slices" in r for r in sel.reasons)
