"""Synthetic head NCCT studies with ground truth.

    aspects-make-phantoms --out DIR --count N --seed S [--kind acute] [--thickness 5] ...

Case i gets seed S + i and the folder DIR/phantom_<seed>/ (dicom/, truth/, truth.json); the
same seed and options always give the same case. Method and truth schema: docs/data.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


from aspects.errors import EXIT_INTERNAL, EXIT_USAGE, InputError  # noqa: E402
from aspects.labels import REGION_COLOURS, region_of  # noqa: E402
from aspects_research.phantom_dicom import write_case  # noqa: E402
from aspects_research.phantom_anatomy import ANATOMIES  # noqa: E402
from aspects_research.phantom_lesions import SPLITS  # noqa: E402
from aspects_research.phantoms import (ALL_PATTERNS, ATROPHY_MODELS, CONTRAST_LOSS, GENERATORS, HEAD_SIZES, KINDS, LEUKOARAIOSIS_MODELS, Phantom, PhantomOptions, case_id_for,  # noqa: E402
                                       check_options, default_anatomy, make_phantom)

LESION_COLOURS = {"acute": "red", "old_infarct": "cyan", "haemorrhage": "orange", "leukoaraiosis": "yellow"}


def write_preview(ph: Phantom, path: Path) -> None:
    """PNG: three slices through the lesion (stroke window W40 L35, truth outlined, regions
    coloured), the middle one in a bone window, and a coronal reformat (coverage, z blur)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    kind = ph.params.kind
    lesion = ph.infarct if kind == "acute" else ph.extra_masks.get(kind, ph.infarct)
    zs = np.nonzero(lesion.any(axis=(1, 2)))[0]
    if len(zs) == 0:
        zs = np.nonzero(ph.regions.any(axis=(1, 2)))[0]
    zc = int(zs[len(zs) // 2])
    step = max(1, int(round(5.0 / ph.params.thickness)))
    picks = [max(0, zc - step), zc, min(ph.hu.shape[0] - 1, zc + step)]
    fig, ax = plt.subplots(1, 5, figsize=(25, 5.6))
    for a, z in zip(ax[:3], picks):
        a.imshow(ph.hu[z], cmap="gray", vmin=15, vmax=55)
        for v in np.unique(ph.regions[z]):
            if v:
                colour = np.array(REGION_COLOURS[region_of(int(v)).code]) / 255.0
                a.contour(ph.regions[z] == v, [0.5], colors=[colour], linewidths=0.5, alpha=0.7)
        if lesion[z].any():
            a.contour(lesion[z], [0.5], colors=LESION_COLOURS.get(kind, "red"), linewidths=1.2)
        a.set_title(f"slice {z} (W40 L35)")
    ax[3].imshow(ph.hu[zc], cmap="gray", vmin=-200, vmax=1800)
    ax[3].set_title("bone window")
    yc = ph.hu.shape[1] // 2
    ax[4].imshow(ph.hu[:, yc, :], cmap="gray", vmin=-100, vmax=150, origin="lower",
                 aspect=ph.slice_spacing / ph.pixel_mm)
    ax[4].set_title("coronal reformat")
    for a in ax:
        a.axis("off")
    t = ph.truth
    src = f"{t['anatomy']} anatomy, SOOP lesion {t['lesion_id']}, " if t.get("lesion_id") else (
        f"{t['anatomy']} anatomy, " if "anatomy" in t else "")
    fig.suptitle(f"seed {t['seed']}: {kind}, {src}pattern {ph.params.pattern}, side {ph.params.side}, "
                 f"{t['slice_thickness_mm']:g} mm, hu_drop {t['hu_drop']:g}, ASPECTS L{t['aspects']['left']} "
                 f"R{t['aspects']['right']}, involved {t['involved']}", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=45)
    plt.close(fig)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, the project's usage exit code
        print(f"error[{EXIT_USAGE}]: {message} (see --help)", file=sys.stderr)
        sys.exit(EXIT_USAGE)


def parse_args(argv=None) -> argparse.Namespace:
    ap = _Parser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, type=Path, help="output folder (created)")
    ap.add_argument("--count", type=int, default=1, help="number of cases (default 1)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the first case (default 0)")
    ap.add_argument("--generator", choices=GENERATORS, default="v1",
                    help="v2: real lesion shapes, four anatomy sources, scanner noise (the training and test data of "
                         "docs/results.md); v1 (default, kept for the existing tests, bench and demo): atlas-pattern "
                         "lesions on the template (docs/data.md)")
    ap.add_argument("--split", choices=SPLITS, default="train",
                    help="v2: lesion shapes (and anatomies) of this split (default train; InVesalius only in val / test)")
    ap.add_argument("--anatomy", choices=ANATOMIES, help="v2: head anatomy source (default: random for the split)")
    ap.add_argument("--lesion-id", help="v2: a SOOP lesion mask ID for an acute / old infarct (default: drawn from the split)")
    ap.add_argument("--kind", choices=KINDS, help="case kind (default: random; v1 70%% acute, v2 62%% acute; "
                                                 "leukoaraiosis: v2 only)")
    ap.add_argument("--thickness", type=float, help="slice thickness mm (default: random of 0.625/1/2.5/5)")
    ap.add_argument("--hu-drop", type=float, help="acute infarct hypoattenuation HU (default: v1 uniform 2-12; "
                                                  "v2 1-2 / 2-4 / 4-12 HU with 12 / 38 / 50 %%)")
    ap.add_argument("--pattern", choices=list(ALL_PATTERNS),
                    help="vascular pattern of an acute/old infarct; aca, pca, thalamus, cerebellum lie outside the "
                         "MCA territory (negative controls: ASPECTS 10)")
    ap.add_argument("--side", choices=("left", "right"), help="lesion side (default: random)")
    ap.add_argument("--tilt", type=float, help="gantry tilt in degrees (default 0: no tilt)")
    ap.add_argument("--noise", type=float, help="noise standard deviation HU (default: v1 random 3-6; v2 2.5-4.5 at "
                                                "5 mm, x sqrt(5 / thickness))")
    ap.add_argument("--pixel", type=float, help="pixel size mm (default: random 0.4-0.5, head fits)")
    ap.add_argument("--matrix", type=int, default=512, help="rows = columns (default 512; smaller only for quick tests)")
    ap.add_argument("--atlas", type=Path, help="atlas folder (default: $ASPECTS_ATLAS_DIR or <repo>/atlas)")
    ap.add_argument("--contrast-loss", choices=CONTRAST_LOSS,
                    help="acute grey-white contrast loss: 'darken' (v2 default: no tissue brightens) or 'compress' "
                         "(v1 default; v2 before session 26: voxels below the lesion's mean brighten; the archived "
                         "v2 sets and the shipped model's training data)")
    ap.add_argument("--leukoaraiosis", choices=LEUKOARAIOSIS_MODELS,
                    help="v2 leukoaraiosis: 'white-matter' (default: in the head's own white matter) or 'legacy' "
                         "(before session 38: tissue below 33 HU, the cortex too on a real head with a low "
                         "grey-white contrast; the archived v2 sets)")
    ap.add_argument("--head-size", choices=HEAD_SIZES,
                    help="v2 head size: 'adult' (default: the brain volume the app measures drawn from "
                         "1100-1700 ml, the scale set per anatomy source) or 'legacy' (before session 40: "
                         "scale 0.9-1.1 on every source, scct heads up to 2.4 l; the archived v2 sets)")
    ap.add_argument("--atrophy", choices=ATROPHY_MODELS, default="none",
                    help="v2 age-related atrophy: 'none' (default: the anatomy sources' own brains) or 'elderly' "
                         "(sulci and ventricles widened, severity drawn 0..1 from the seed; everything else "
                         "the seed draws is unchanged; docs/data.md \"Atrophy\")")
    ap.add_argument("--atrophy-severity", type=float,
                    help="v2 atrophy severity 0..1 instead of the drawn one (1: sulci 1 mm and ventricles 3 mm wider)")
    ap.add_argument("--preview", action="store_true", help="also write DIR/<case_id>/preview.png")
    ap.add_argument("--no-deform", action="store_true", help="no non-linear deformation")
    ap.add_argument("--no-pose", action="store_true", help="template pose: no rotation, scale 1")
    ap.add_argument("--no-balance", action="store_true",
                    help="v2 real heads as scanned, their own hemispheric asymmetry kept (the InVesalius head "
                         "~1 HU darker on the right; the GE head's left lesion too): specificity tests, not training")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    a = parse_args(argv)
    try:
        if a.count < 1:
            raise InputError(EXIT_USAGE, f"--count must be at least 1, not {a.count}")
        opts = PhantomOptions(kind=a.kind, thickness=a.thickness, hu_drop=a.hu_drop, pattern=a.pattern,
                              side=a.side, tilt_deg=a.tilt, noise_hu=a.noise, deform=not a.no_deform,
                              pose=not a.no_pose, pixel_mm=a.pixel, matrix=a.matrix, generator=a.generator,
                              anatomy=a.anatomy, split=a.split, lesion_id=a.lesion_id,
                              contrast_loss=a.contrast_loss, balanced=not a.no_balance,
                              leukoaraiosis=a.leukoaraiosis, head_size=a.head_size,
                              atrophy=a.atrophy, atrophy_severity=a.atrophy_severity)
        check_options(opts)
        t_all = time.perf_counter()
        anat = default_anatomy(str(a.atlas) if a.atlas else None)
        print(f"anatomy loaded in {time.perf_counter() - t_all:.1f} s", flush=True)
        for i in range(a.count):
            t0 = time.perf_counter()
            seed = a.seed + i
            ph = make_phantom(seed, opts, anat, str(a.atlas) if a.atlas else None)
            case = write_case(ph, a.out, case_id_for(seed))
            if a.preview:
                write_preview(ph, case / "preview.png")
            t = ph.truth
            src = f", {t['anatomy']}, lesion {t['lesion_id'] or ph.params.pattern or '-'}" if "anatomy" in t else ""
            print(f"[{i + 1}/{a.count}] {case.name}: {t['kind']}{src}, {ph.hu.shape[0]} x {t['slice_thickness_mm']:g} mm, "
                  f"ASPECTS L{t['aspects']['left']} R{t['aspects']['right']}, infarct {t['infarct_volume_ml']:.1f} ml "
                  f"({time.perf_counter() - t0:.1f} s)", flush=True)
        print(f"{a.count} cases in {time.perf_counter() - t_all:.1f} s -> {a.out}")
        return 0
    except InputError as e:
        print(e.one_line(), file=sys.stderr)
        return e.code
    except OSError as e:
        print(f"error[{EXIT_USAGE}]: {e}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as e:  # a bug: one line, not a traceback
        print(f"error[{EXIT_INTERNAL}]: {type(e).__name__}: {e}", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
