#!/usr/bin/env python
"""Print the ASPECTS summary of an aspects.json (optionally next to a synthetic study's truth).

    aspects-summary OUT/aspects.json [--truth CASE/truth.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from aspects.labels import REGION_CODES
from aspects.methods import methods_text


def summary(result: dict, truth: dict | None = None) -> str:
    lines = [
        f"ASPECTS  right {result['aspects']['right']:>2}   left {result['aspects']['left']:>2}"
        f"   affected side: {result['affected_side'] or 'none'}   score: {result['score']}",
        f"infarct volume: {result['infarct_volume_ml']:.1f} ml   flags: {', '.join(result['flags']) or 'none'}",
        f"{methods_text(result['methods'])} Device: {result.get('device', '?')}.",
    ]
    for side in ("right", "left"):
        involved = [c for c in REGION_CODES if result["regions"][side][c]["involved"]]
        lines.append(f"  {side:>5} involved: {', '.join(involved) or '-'}")
    if truth:
        lines.append(
            f"truth:   right {truth['aspects']['right']:>2}   left {truth['aspects']['left']:>2}"
            f"   affected side: {truth['affected_side'] or 'none'}   infarct {truth['infarct_volume_ml']:.1f} ml"
            f"   ({truth['kind']})"
        )
    timings = result.get("timings_s", {})
    if timings:
        lines.append("timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
    lines.append("NOT FOR DIAGNOSTIC USE")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("aspects_json", type=Path)
    p.add_argument("--truth", type=Path)
    a = p.parse_args()
    if not a.aspects_json.is_file():
        print(f"error: {a.aspects_json} not found (did the app fail? see error.json / app.log next to it)",
              file=sys.stderr)
        return 2
    truth = json.loads(a.truth.read_text()) if a.truth and a.truth.is_file() else None
    print(summary(json.loads(a.aspects_json.read_text()), truth))
    return 0


if __name__ == "__main__":
    sys.exit(main())
