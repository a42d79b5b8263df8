"""Which series of a study the app would analyse, from the headers alone (no pixels, no models).

    python -m aspects.which_series STUDY_FOLDER [--rules config/series_selection.json]

For a PACS administrator checking a site's series names before a deployment: one line per series,
chosen or skipped with the reason (docs/series_selection.md), exit 0; an input the app would refuse
ends as the app ends, one ``error[<code>]: ...`` line and the app's exit code.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

from aspects.dicom_input import scan_folder
from aspects.errors import InputError
from aspects.selection import group_series, load_rules, select_series


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("study", type=Path, help="folder with the study's DICOM files")
    ap.add_argument("--rules", type=Path, default=None, help="series selection rules (default: the app's)")
    args = ap.parse_args(argv)
    try:
        selection = select_series(group_series(scan_folder(args.study).datasets), load_rules(args.rules))
    except InputError as exc:
        print(exc.one_line(), file=sys.stderr)
        return exc.code
    for reason in selection.reasons:
        print(reason)
    return 0


if __name__ == "__main__":
    sys.exit(main())
