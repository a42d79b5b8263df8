"""Which method produced a result: the values of aspects.json ``methods`` (and the SEG's
algorithm names), as enums so that a misspelt method cannot reach a report."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Mapping


class InfarctMethod(StrEnum):
    """How the infarct was segmented (``methods.infarct``)."""

    MODEL = "model"  # the TorchScript model, components confirmed by the asymmetry baseline
    ASYMMETRY = "asymmetry"  # the bilateral-asymmetry baseline alone (no model installed)


class RegionMethod(StrEnum):
    """How the ASPECTS regions were segmented (``methods.regions``)."""

    MODEL = "model"  # the TorchScript region model
    ATLAS = "atlas"  # the atlas LNCC warp (aspects.region_atlas)


# what a model's input channel 1 may be (its bundle metadata declares it): the plain contralateral
# mirror, or the mirror deformed onto the image by the asymmetry stage's registration
SECOND_CHANNELS = ("mirror", "contra")


def methods_text(methods: Mapping[str, Any]) -> str:
    """aspects.json ``methods`` in words (the SR's note, ``aspects-summary``): each path, and where
    a model ran its version and mirror pass."""
    def one(path_key: str, run_key: str) -> str:
        run = methods.get(run_key) or {}
        details = ([f"version {run['version']}"] if run.get("version") else []) + (
            [f"mirror pass {run['mirror_tta']}"] if run.get("mirror_tta") else [])
        name = str(methods.get(path_key, "unknown"))
        return f"{name} ({', '.join(details)})" if details else name

    return f"Methods: regions by {one('regions', 'region_model')}, infarct by {one('infarct', 'infarct_model')}."
