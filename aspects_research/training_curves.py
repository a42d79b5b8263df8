"""Ignite handler that writes training curves (PNG) and their numbers (JSON) after every epoch.

Shared by both bundles in ``train/`` (the infarct bundle imports it from here).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np


class TrainingCurves:
    """Record the mean training loss per epoch and the validator's metrics; redraw ``curves.png``.

    Attach to the trainer after the ``ValidationHandler`` so the epoch's validation has run.
    """

    def __init__(self, output_dir: str, validator=None, filename: str = "curves"):
        self.output_dir = Path(output_dir)
        self.validator = validator
        self.filename = filename
        self.history: Dict[str, List[float]] = {"epoch": [], "train_loss": []}
        self._losses: List[float] = []
        self._validated = False  # set when the validator ran during the current epoch

    def attach(self, engine) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.ITERATION_COMPLETED, self._iteration)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._epoch)
        if self.validator is not None:
            self.validator.add_event_handler(Events.COMPLETED, self._mark_validated)

    def _mark_validated(self, _engine) -> None:
        self._validated = True

    def _iteration(self, engine) -> None:
        out = engine.state.output
        item = out[0] if isinstance(out, list) else out
        loss = item.get("loss") if isinstance(item, dict) else None
        if loss is not None:
            self._losses.append(float(loss))

    def _epoch(self, engine) -> None:
        self.history["epoch"].append(int(engine.state.epoch))
        self.history["train_loss"].append(float(np.mean(self._losses)) if self._losses else float("nan"))
        self._losses = []
        # the validator keeps its last metrics between runs: only record fresh ones
        metrics = self.validator.state.metrics if self._validated else {}
        self._validated = False
        for name, value in metrics.items():
            if np.isscalar(value):
                self.history.setdefault(name, [])
                # pad for epochs without validation (val_interval > 1)
                pad = len(self.history["epoch"]) - 1 - len(self.history[name])
                self.history[name].extend([float("nan")] * pad + [float(value)])
        self.write()

    def write(self) -> Optional[Path]:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        self.output_dir.mkdir(parents=True, exist_ok=True)
        (self.output_dir / f"{self.filename}.json").write_text(json.dumps(self.history, indent=1))
        metric_names = [k for k in self.history if k not in ("epoch", "train_loss")]
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        epochs = self.history["epoch"]
        axes[0].plot(epochs, self.history["train_loss"], "-o", ms=3)
        axes[0].set(title="training loss", xlabel="epoch")
        for name in metric_names:
            points = [(e, v) for e, v in zip(epochs, self.history[name]) if v == v]  # skip NaN (no validation)
            axes[1].plot([e for e, _ in points], [v for _, v in points], "-o", ms=3, label=name)
        axes[1].set(title="validation", xlabel="epoch", ylim=(0, 1))
        if metric_names:
            axes[1].legend()
        fig.tight_layout()
        path = self.output_dir / f"{self.filename}.png"
        fig.savefig(path, dpi=80)
        plt.close(fig)
        return path
