"""Average the weights of bundle checkpoints: stochastic weight averaging and model soups.

    python -m aspects_research.tools.weight_average --ckpt A.pt B.pt ... [--weights 1 1 ...] --out SOUP.pt
    python -m aspects_research.tools.weight_average --ckpt models/infarct_seg/infarct_seg.ts SWA.pt --weights 1 1 --out S.pt

Checkpoints of one training run taken a few epochs apart swing by 5-10 control points on the v1
normals (docs/results_v2.md, session 20): the weights wander around a flat region whose centre
none of them sits in. Averaging the weights along the trajectory (stochastic weight averaging,
Izmailov et al. 2018) or of fine-tuned models that share their starting point ("model soups",
Wortsman et al. 2022) gives one network of the same size and speed that is often better and
steadier than any of the checkpoints. The infarct network uses instance normalisation (no running
statistics), so an average needs no batch-norm pass afterwards.

Inputs are state dicts of the bundle's ``network_def`` (``.pt``, as the bundle's checkpoints) or
TorchScript exports (``.ts``, as ``models/``); every input must have the same keys and shapes. The
output is a state dict that ``checkpoint_rescore`` scores and the bundle's ``ckpt_export`` exports.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Dict, Optional, Sequence

from aspects.errors import EXIT_USAGE, InputError

if TYPE_CHECKING:  # torch is imported when a checkpoint is read, not at import
    import torch


def load_state(path: Path) -> Dict[str, torch.Tensor]:
    """The state dict in a bundle checkpoint (``.pt``) or a TorchScript export (``.ts``)."""
    import torch

    if not path.is_file():
        raise InputError(EXIT_USAGE, f"checkpoint not found: {path}")
    try:
        if path.suffix == ".ts":
            return {k: v.detach().clone() for k, v in torch.jit.load(str(path), map_location="cpu").state_dict().items()}
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # not a checkpoint torch can read (truncated, another format)
        raise InputError(EXIT_USAGE, f"{path}: not a readable checkpoint ({type(exc).__name__})") from exc
    if not isinstance(state, dict):
        raise InputError(EXIT_USAGE, f"{path}: not a state dict")
    return state


def average_states(states: Sequence[Dict[str, torch.Tensor]],
                   weights: Optional[Sequence[float]] = None) -> Dict[str, torch.Tensor]:
    """The weighted mean of state dicts with the same keys and shapes (weights normalised to sum 1).
    Floating-point entries are averaged; integer entries (counters) must agree and are kept."""
    import torch

    if not states:
        raise InputError(EXIT_USAGE, "no checkpoint to average")
    w = [1.0] * len(states) if weights is None else [float(x) for x in weights]
    if len(w) != len(states) or any(x < 0 for x in w) or sum(w) <= 0:
        raise InputError(EXIT_USAGE, f"need one non-negative weight per checkpoint ({len(states)}), not summing to 0")
    total = sum(w)
    keys = list(states[0])
    for i, s in enumerate(states[1:], 1):
        if list(s) != keys:
            raise InputError(EXIT_USAGE, f"checkpoint {i + 1} has other weights than checkpoint 1 (keys differ)")
    out = {}
    for k in keys:
        ref = states[0][k]
        for i, s in enumerate(states[1:], 1):
            if s[k].shape != ref.shape:
                raise InputError(EXIT_USAGE, f"checkpoint {i + 1}: {k} has shape {tuple(s[k].shape)}, not {tuple(ref.shape)}")
        if ref.is_floating_point():
            acc = torch.zeros_like(ref, dtype=torch.float64)
            for s, x in zip(states, w):
                acc += s[k].to(torch.float64) * (x / total)
            out[k] = acc.to(ref.dtype)
        else:
            if any(not torch.equal(s[k], ref) for s in states[1:]):
                raise InputError(EXIT_USAGE, f"integer entry {k} differs between checkpoints")
            out[k] = ref.clone()
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ckpt", type=Path, nargs="+", required=True, help="state dicts (.pt) or TorchScript exports (.ts)")
    ap.add_argument("--weights", type=float, nargs="+", help="one per checkpoint (default: equal)")
    ap.add_argument("--out", type=Path, required=True, help="the averaged state dict (.pt)")
    args = ap.parse_args(argv)
    try:
        import torch

        soup = average_states([load_state(p) for p in args.ckpt], args.weights)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        torch.save(soup, args.out)
    except InputError as exc:
        print(exc.one_line(), file=sys.stderr)
        return exc.code
    print(f"{args.out}: the weighted mean of {len(args.ckpt)} checkpoints")
    return 0


if __name__ == "__main__":
    sys.exit(main())
