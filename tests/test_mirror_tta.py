"""Mirroring test-time augmentation of a model (aspects.inference.predict_labels, ``mirror_tta``):
both hemispheres treated alike, the documented mean and agreement, the app's setting."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from aspects.inference import MirrorTTA, predict_labels
from aspects.segmentation import INFARCT_MIRROR_TTA, SegmentationModels

REPO = Path(__file__).resolve().parent.parent


class _Lopsided(torch.nn.Module):
    """Two-class logits from a random convolution plus a ramp along x: a net that is not
    left-right symmetric, as no trained net is exactly."""

    def __init__(self, seed: int):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.conv = torch.nn.Conv3d(2, 2, 3, padding=1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=g))
            self.conv.bias.zero_()

    def forward(self, x):
        ramp = torch.linspace(-1.0, 1.0, x.shape[2]).view(1, 1, -1, 1, 1)
        logits = self.conv(x)
        return torch.cat([logits[:, :1], logits[:, 1:] + ramp], dim=1)


def _input(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 1.0, (1, 2, 12, 10, 8)).astype(np.float32)


@pytest.mark.parametrize("mode", [MirrorTTA.MEAN, MirrorTTA.AGREE])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_with_the_mirror_pass_a_flipped_input_gives_exactly_the_flipped_labels(seed, mode):
    model, x = _Lopsided(seed).eval(), _input(seed)
    flipped = np.ascontiguousarray(np.flip(x, axis=2))  # the model layout's x: left-right
    labels, prob = predict_labels(model, x, "cpu", mode)
    labels_f, prob_f = predict_labels(model, flipped, "cpu", mode)
    assert np.array_equal(labels_f, np.flip(labels, axis=0))
    assert np.array_equal(prob_f, np.flip(prob, axis=1))
    # without it the same lopsided net does not treat the sides alike: the check can fail
    one, _ = predict_labels(model, x, "cpu")
    one_f, _ = predict_labels(model, flipped, "cpu")
    assert not np.array_equal(one_f, np.flip(one, axis=0))


def test_the_mirror_average_is_the_mean_of_the_two_single_passes_softmaxes():
    model, x = _Lopsided(5).eval(), _input(5)
    _, p = predict_labels(model, x, "cpu")
    _, p_mirror = predict_labels(model, np.ascontiguousarray(np.flip(x, axis=2)), "cpu")
    labels, prob = predict_labels(model, x, "cpu", MirrorTTA.MEAN)
    expected = 0.5 * (torch.from_numpy(p) + torch.flip(torch.from_numpy(p_mirror), dims=[1]))
    assert np.array_equal(prob, expected.numpy())  # each pass in its thread is the pass alone, bit for bit
    assert np.array_equal(labels, (prob[1] > prob[0]).astype(np.uint8))


def test_in_agreement_a_voxel_keeps_a_class_only_where_both_passes_give_it():
    model, x = _Lopsided(7).eval(), _input(7)
    one, _ = predict_labels(model, x, "cpu")
    mirror, _ = predict_labels(model, np.ascontiguousarray(np.flip(x, axis=2)), "cpu")
    mirror = np.flip(mirror, axis=0)
    labels, _ = predict_labels(model, x, "cpu", MirrorTTA.AGREE)
    assert np.array_equal(labels, np.where(one == mirror, one, 0))
    assert 0 < labels.sum() < one.sum()  # the passes disagree somewhere: agreement removed voxels


def test_the_app_keeps_the_infarct_models_label_where_its_mirror_pass_agrees_and_the_tools_do_as_the_app():
    from aspects_research.tools import checkpoint_rescore, gpu_check

    models = SegmentationModels.from_folder(REPO / "models", "cpu")
    assert models.infarct is not None and models.infarct.mirror_tta is INFARCT_MIRROR_TTA is MirrorTTA.AGREE
    assert gpu_check.MIRROR_TTA == INFARCT_MIRROR_TTA  # the GPU check compares what the app runs
    assert checkpoint_rescore.raw_mask.__defaults__ == (INFARCT_MIRROR_TTA,)  # checkpoints scored as the app runs them
