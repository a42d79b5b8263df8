"""The asymmetry baseline's mirror SyN on one and on more ANTs threads, per study: same warp?

    python -m aspects_research.tools.syn_threads --cases DIR [DIR ...] [--threads 2] [--json FILE]

For each phantom study (``DIR/<case_id>/`` with ``dicom/`` and ``truth.json``, ``aspects-make-phantoms``) the app's
preprocessing aligns it once; then :func:`aspects.asymmetry.contralateral` (the mirror SyN and the
warp of the mirrored image and brain) runs on 1 thread and on ``--threads``, each in its own
registration child (``aspects.registration.SYN_THREADS``). Prints one JSON line per study (equal
bit for bit, largest difference, seconds of each) and a summary; exit 0 when every study gives
the same warp, 1 when one does not. This is the check behind running the app's mirror SyN on two
threads (docs/performance.md, session 13).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np
import SimpleITK as sitk

from aspects import asymmetry
from aspects.atlas import LazyAtlas
from aspects.errors import EXIT_USAGE, InputError
from aspects.preprocess import preprocess_series
from aspects.series import read_study
from aspects_research.tools.evidence_cache import phantom_cases


def compare_case(case: Path, atlas, threads: int) -> Dict[str, object]:
    """The mirror SyN of one study on 1 and on ``threads`` threads."""
    pre = preprocess_series(read_study(case / "dicom"), atlas)
    hu = sitk.GetArrayFromImage(pre.aligned)
    brain = sitk.GetArrayFromImage(pre.brain_mask) > 0
    out, seconds = {}, {}
    for n in (1, threads):
        t0 = time.perf_counter()
        out[n] = asymmetry.contralateral(hu, brain, pre.aligned, threads=n)
        seconds[n] = round(time.perf_counter() - t0, 2)
    same = all(np.array_equal(a, b) for a, b in zip(out[1], out[threads]))
    return {"case": case.name, "same": bool(same), "max_abs_hu": float(np.abs(out[1][0] - out[threads][0]).max()),
            "seconds_1": seconds[1], f"seconds_{threads}": seconds[threads]}


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=Path, nargs="+", required=True, help="folders of phantom studies")
    ap.add_argument("--threads", type=int, default=2, help="the thread count compared with one (default 2)")
    ap.add_argument("--json", type=Path, help="also write the per-study lines here")
    args = ap.parse_args(argv)
    try:
        cases = phantom_cases(args.cases)
        if args.threads < 2:
            raise InputError(EXIT_USAGE, f"--threads {args.threads}: compare one thread with two or more")
    except InputError as exc:
        print(exc.one_line(), file=sys.stderr)
        return exc.code
    atlas = LazyAtlas()()
    rows = []
    for case in cases:
        row = compare_case(case, atlas, args.threads)
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    same = sum(bool(r["same"]) for r in rows)
    print(f"{same} of {len(rows)} studies: the same warp on 1 and {args.threads} threads")
    return 0 if same == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
