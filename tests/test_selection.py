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
    for z in pos:
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


# Descriptions as scanners and protocol builders write them: words joined by '_' ('CTA_Head_Neck')
# must be excluded as well as 'CTA Head'; 'w/o contrast' is a plain scan.
@pytest.mark.parametrize("desc, verdict", [
    ("CTA_Head_Neck", "excluded"), ("Head_Neck_CTA 0.6 Hv36", "excluded"), ("MIP_Axial", "excluded"),
    ("CTP_4D", "excluded"), ("NeuroVPCT", "excluded"), ("COW 0.625", "excluded"), ("CTV head", "excluded"),
    ("Arterial Phase 0.625", "excluded"), ("AngioHead", "excluded"), ("Iodine map", "excluded"),
    ("Head C+", "contrast-enhanced"), ("HEAD W/ CONTRAST", "contrast-enhanced"), ("CT Head Post Con", "contrast-enhanced"),
    ("CT HEAD W/O CONTRAST", None), ("Non-Contrast Head 5mm", None), ("HEAD WO CONTRAST", None),
    ("Brain_Stroke 5.0 J40s", None), ("Head 0.625 STD", None), ("Cortex", None), ("NCCT", None),
])
def test_series_descriptions_of_angiography_perfusion_and_contrast_are_skipped(desc, verdict):
    plain = series(30, 5.0, number=2, desc="Head 5mm")
    thin = series(150, 0.625, number=3, desc=desc)  # thin soft-tissue: preferred unless skipped
    sel = select_series(as_input(plain, thin))
    if verdict is None:
        assert sel.chosen.series_uid == thin[0], sel.reasons
    else:
        assert sel.chosen.series_uid == plain[0]
        assert any(f"'{desc}'" in r and verdict in r for r in sel.reasons), sel.reasons


@pytest.mark.parametrize("attrs, skipped", [
    (dict(ContrastBolusAgent="NONE"), False), (dict(ContrastBolusAgent="No"), False),
    (dict(ContrastBolusRoute="IV"), True), (dict(ContrastFlowRate="4.5"), True),
])
def test_contrast_attributes_with_a_none_value_are_a_plain_scan(attrs, skipped):
    plain = series(30, 5.0, number=2)
    thin = series(150, 1.0, number=3, **attrs)
    sel = select_series(as_input(plain, thin))
    assert (sel.chosen.series_uid == plain[0]) == skipped, sel.reasons


def test_a_coded_contrast_agent_is_named():
    item = Dataset()
    item.CodeMeaning = "Iohexol"
    with pytest.raises(InputError) as err:
        select_series(as_input(series(ContrastBolusAgentSequence=[item])))
    assert "contrast-enhanced (ContrastBolusAgentSequence = Iohexol)" in err.value.message


def test_two_studies_are_refused():
    with pytest.raises(InputError) as err:
        select_series(as_input(series(), series(study=generate_uid())))
    assert err.value.code == EXIT_MULTIPLE_STUDIES and "2 studies" in err.value.message


def test_missing_slices_are_refused_and_named_but_tilt_and_two_part_spacing_are_accepted():
    rules = load_rules()
    _, gap = series(positions=[0, 5, 10, 20, 25, 30, 35, 40, 45, 50])
    problem = geometry_problem(gap, rules)
    assert "missing slices: about 1 slice(s) absent between" in problem and "10.0 mm and" in problem
    assert "at 20.0 mm" in problem
    # A two-part acquisition (4 mm then 7 mm with a short overlap step, as the real GE series)
    two_part = [4.0 * i for i in range(14)] + [53.08 + 7.0 * i for i in range(14)]
    _, mixed = series(positions=two_part, thickness=4.0)
    assert geometry_problem(mixed, rules) is None
    for tilt in (-25.0, -10.0, 15.0, 25.0):
        _, tilted = series(tilt=tilt)
        assert geometry_problem(tilted, rules) is None, tilt
    _, too_tilted = series(tilt=40.0)
    assert "gantry tilt of 40.0 deg" in geometry_problem(too_tilted, rules)
    _, ok = series()
    assert geometry_problem(ok, rules) is None


def _named(datasets):
    for i, ds in enumerate(datasets):
        ds.filename = f"IM{i:04d}.dcm"
    return datasets


@pytest.mark.parametrize("damage, words", [
    (lambda ds: delattr(ds[7], "ImagePositionPatient"), "image IM0007.dcm has no ImagePositionPatient"),
    (lambda ds: setattr(ds[3], "PixelSpacing", [0, 0]), "image IM0003.dcm has PixelSpacing 0/0"),
    (lambda ds: setattr(ds[5], "SOPInstanceUID", ds[6].SOPInstanceUID), "is used by 2 different images (IM0005.dcm, IM0006.dcm)"),
])
def test_broken_slice_attributes_are_named(damage, words):
    uid, ds = series()
    damage(_named(ds))
    with pytest.raises(InputError) as err:
        select_series(as_input((uid, ds)))
    assert err.value.code == EXIT_BAD_SERIES and words in err.value.message, err.value.message


def test_interleaved_acquisitions_are_named_not_called_tilt():
    # Two acquisitions of one series, the second shifted 8 mm in-plane (patient moved), interleaved.
    uid, ds = series(positions=[2.5 * i for i in range(24)], thickness=5.0)
    for i, d in enumerate(ds):
        d.AcquisitionNumber = 1 + i % 2
        if i % 2:
            d.ImagePositionPatient = [d.ImagePositionPatient[0] + 8.0, d.ImagePositionPatient[1], d.ImagePositionPatient[2]]
    problem = geometry_problem(ds, load_rules())
    assert "2 interleaved acquisitions in one series (AcquisitionNumber 1: 12 images" in problem
    assert "tilt" not in problem


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


def test_lossy_compressed_originals_are_accepted_but_other_derived_images_are_not():
    lossy = series(image_type=("DERIVED ", "PRIMARY", "AXIAL"), LossyImageCompression="01")  # padded, as GDCM writes it
    sel = select_series(as_input(lossy))
    assert sel.chosen.series_uid == lossy[0] and any("lossy-compressed original" in r for r in sel.reasons)
    with pytest.raises(InputError) as err:
        select_series(as_input(series(image_type=("DERIVED", "PRIMARY", "AXIAL"))))
    assert err.value.code == EXIT_NO_SERIES and "is not ORIGINAL/PRIMARY" in err.value.message


def _write_study(folder, named):
    """Two series of one study on disk: the 5 mm helper series and a copy of it as ``named``
    (thinner, so the ranking prefers it unless a rule skips it)."""
    from pydicom.uid import generate_uid as uid

    from tests.support.ct_series import make_ct_series

    plain = make_ct_series()
    other_uid = uid()
    folder.mkdir()
    for k, ds in enumerate(plain):
        ds.save_as(folder / f"plain{k:02d}.dcm", enforce_file_format=True)
        copy = ds.copy()
        copy.SeriesInstanceUID, copy.SeriesNumber, copy.SeriesDescription = other_uid, 3, named
        copy.SOPInstanceUID = copy.file_meta.MediaStorageSOPInstanceUID = uid()
        copy.SliceThickness = 1.0
        copy.save_as(folder / f"other{k:02d}.dcm", enforce_file_format=True)


def test_which_series_names_the_choice_and_each_skip(tmp_path, capsys):
    from aspects.which_series import main

    _write_study(tmp_path / "study", "CTA_Head_Neck 1.0")
    assert main([str(tmp_path / "study")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("series 3 'CTA_Head_Neck 1.0'") and "skipped" in line and "excluded" in line for line in lines)
    assert any(line.startswith("series 2 'HEAD 5mm'") and "chosen" in line for line in lines)


def test_which_series_ends_as_the_app_on_an_empty_folder(tmp_path, capsys):
    from aspects.which_series import main

    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty")]) == 3
    assert capsys.readouterr().err.startswith("error[3]: ")


@pytest.mark.parametrize("sop_class, name", [("1.2.840.10008.5.1.4.1.1.2.1", "Enhanced CT Image Storage"),
                                             ("1.2.840.10008.5.1.4.1.1.2.2", "Legacy Converted Enhanced CT Image Storage")])
def test_multiframe_ct_is_refused_with_what_to_send_instead(sop_class, name):
    uid, one = series(n=1)
    one[0].SOPClassUID, one[0].NumberOfFrames = sop_class, 40
    with pytest.raises(InputError) as err:
        select_series(as_input((uid, one)))
    assert err.value.code == EXIT_NO_SERIES
    assert f"multi-frame CT ({name}, 40 frames in one file) is not supported: send the series as single-frame CT Image Storage" \
        in err.value.message
