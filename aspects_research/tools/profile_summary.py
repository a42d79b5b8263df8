"""Where a run's time goes: inclusive share of each function in a py-spy profile.

    py-spy record --idle --subprocesses -r 50 -f raw -o prof.txt -- python app.py -i STUDY -o OUT -m models
    python -m aspects_research.tools.profile_summary prof.txt [--top 40] [--match aspects/ ...]

py-spy's raw format is one collapsed stack per line (``frame;frame;... count``). A function's
inclusive share is the fraction of samples (all threads together, idle ones included with
``--idle``) whose stack contains it; with two cores and the app's parallel stages the shares of
concurrent stages add up to more than 100 %. ``--match``: only frames whose file path contains
one of these strings (default: the app's own code, ``aspects/`` and ``operators/``, plus the
import machinery and the registration / model libraries' entry points).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Dict, Iterable, Optional, Sequence, Tuple

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")
DEFAULT_MATCH = ("aspects/", "operators/", "app.py", "<frozen importlib._bootstrap>", "ants/registration",
                 "torch/jit", "holoscan/core")


def inclusive_shares(lines: Iterable[str], match: Sequence[str]) -> Tuple[int, Dict[str, int], Dict[str, int]]:
    """(total samples, samples per function key ``func (file)`` whose stack holds it, samples per
    thread (the stack's first frame))."""
    total = 0
    per_func: Counter = Counter()
    per_thread: Counter = Counter()
    for line in lines:
        line = line.rstrip()
        if not line or " " not in line:
            continue
        stack, count_s = line.rsplit(" ", 1)
        try:
            count = int(count_s)
        except ValueError:
            continue
        total += count
        frames = stack.split(";")
        per_thread[frames[0]] += count
        seen = set()
        for frame in frames:
            m = FRAME.match(frame)
            if m is None or not any(s in m.group("file") for s in match):
                continue
            key = f"{m.group('func')} ({'/'.join(Path(m.group('file')).parts[-2:])})"
            if key not in seen:
                seen.add(key)
                per_func[key] += count
    return total, dict(per_func), dict(per_thread)


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("profile", type=Path, help="py-spy record -f raw output")
    ap.add_argument("--top", type=int, default=40)
    ap.add_argument("--match", nargs="+", default=list(DEFAULT_MATCH), help="file path parts to keep")
    ap.add_argument("--rate", type=float, default=50.0, help="py-spy's sampling rate (-r), for seconds")
    args = ap.parse_args(argv)
    if not args.profile.is_file():
        print(f"error[2]: profile {args.profile} not found", file=sys.stderr)
        return 2
    total, per_func, per_thread = inclusive_shares(args.profile.read_text(errors="replace").splitlines(), args.match)
    if not total:
        print(f"error[2]: no samples in {args.profile}", file=sys.stderr)
        return 2
    print(f"{total} samples ({total / args.rate:.1f} thread-seconds at {args.rate:g} Hz)")
    print("| function (file) | thread-seconds | share of samples |\n| --- | --- | --- |")
    for key, n in sorted(per_func.items(), key=lambda kv: -kv[1])[:args.top]:
        print(f"| {key} | {n / args.rate:.1f} | {100.0 * n / total:.1f} % |")
    print("\n| thread | thread-seconds |\n| --- | --- |")
    for key, n in sorted(per_thread.items(), key=lambda kv: -kv[1])[:10]:
        print(f"| {key[:60]} | {n / args.rate:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
