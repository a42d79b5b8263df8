"""How far each study's head is turned about its long axis, as the app reads it before registering.

    python -m aspects_research.tools.head_turns STUDY_DIR [STUDY_DIR ...]

For each DICOM study folder: the study loaded, resampled to the working grid and skull-stripped as
:func:`aspects.preprocess.preprocess` does, then the turn of its brain's axial long axis against the
template brain's (:mod:`aspects.head_pose`), one line each (a study that cannot be read gets a
one-line reason instead), and last the range with the number beyond ``YAW_START_DEG``: the studies whose
registration starts turned. Session 36 ran it over the 196 studies of the v2 test, fresh, third-draw,
early-change and asymmetric-head sets (-20.4 to +17.2 deg: none starts turned; docs/results.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional

from aspects_research.tools import one_line_errors


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("studies", type=Path, nargs="+", help="DICOM study folders")
    args = ap.parse_args(argv)

    def run() -> int:
        import SimpleITK as sitk

        from aspects.atlas import load_atlas
        from aspects.errors import EXIT_USAGE, InputError
        from aspects.head_pose import YAW_START_DEG, axial_axis, axis_turn
        from aspects.preprocess import aligned_template, check_geometry, to_working_grid
        from aspects.series import read_study
        from aspects.skullstrip import strip_skull

        missing = [str(p) for p in args.studies if not p.is_dir()]
        if missing:
            raise InputError(EXIT_USAGE, f"not a folder: {', '.join(missing)}")
        template = aligned_template(load_atlas())
        if template.axis is None:
            raise InputError(EXIT_USAGE, "the template brain has no axial long axis")
        turns = []
        for study in args.studies:
            try:
                work = to_working_grid(check_geometry(read_study(study).volume.image))
                axis = axial_axis(strip_skull(sitk.GetArrayFromImage(work)), work)
            except InputError as exc:
                print(f"{study}: {exc.one_line()}", flush=True)
                continue
            except Exception as exc:  # noqa: BLE001 - one study that cannot be read is reported, the others go on
                print(f"{study}: cannot be read ({type(exc).__name__}: {exc})", flush=True)
                continue
            if axis is None:
                print(f"{study}: no axial long axis", flush=True)
                continue
            turn = axis_turn(template.axis, axis)
            turns.append(turn)
            print(f"{study}: {turn:+.1f} deg{'  (starts turned)' if abs(turn) > YAW_START_DEG else ''}", flush=True)
        if turns:
            beyond = sum(abs(t) > YAW_START_DEG for t in turns)
            print(f"{len(turns)} studies: {min(turns):+.1f} to {max(turns):+.1f} deg; {beyond} beyond {YAW_START_DEG:g} deg")
        return 0

    return one_line_errors(run)


if __name__ == "__main__":
    sys.exit(main())
