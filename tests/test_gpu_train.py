"""aspects_research.tools.gpu_train: the infarct bundle packed here and trained on a GPU host.

The packed volumes must give the bundle the same normalised input as the originals (to the
quantisation step), the pack must stay within what a device call carries, and ``run`` must train
with only what the GPU host has (no imaging stack, MONAI without the Deploy SDK), take the CUDA
branch when torch sees a GPU (forced here through tests/fake_cuda), stop on an epoch boundary
inside its time budget and leave no more files than the device tool brings back.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from aspects_research.tools.gpu_train import main, parse_sets, quantise_hu, write_checkpoint_tars
from aspects_research.training_budget import TimeBudget, epochs_that_fit, should_stop
from tests.support.gpu_host_site import gpu_host_site
from tests.support.tiny_aligned import write_tiny_dataset

ROOT = Path(__file__).resolve().parents[1]
TINY_SLABS = "[[2,14],[16,30]]"  # given, not the atlas levels clipped to the tiny grid (as in test_bundles)


def test_time_budget_stops_on_the_epoch_boundary_before_an_overrun():
    from ignite.engine import Engine

    now = [0.0]

    def step(engine, batch):
        now[0] += 5.0  # two iterations an epoch: 10 s an epoch

    engine = Engine(step)
    budget = TimeBudget(minutes=0.5, clock=lambda: now[0])  # 30 s
    budget.attach(engine)
    engine.run([0, 1], max_epochs=10)
    # after epoch 2: 20 s + 1.2 x 10 s > 30 s, so no third epoch
    assert engine.state.epoch == 2 and budget.stopped_early and budget.epoch_seconds == [10.0, 10.0]
    assert not should_stop(10.0, [10.0], 30.0) and should_stop(20.0, [10.0, 10.0], 30.0)
    with pytest.raises(ValueError, match="positive"):
        TimeBudget(0)


def test_time_budget_fits_the_cosine_schedule_to_the_epochs_that_fit():
    import torch
    from ignite.engine import Engine, Events

    now = [0.0]
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=100)
    lrs = []

    def step(engine, batch):
        now[0] += 10.0  # 10 s an epoch

    engine = Engine(step)
    budget = TimeBudget(minutes=1.0, clock=lambda: now[0], scheduler=sched, fit_after=2)  # 60 s
    budget.attach(engine)

    @engine.on(Events.EPOCH_COMPLETED)
    def _step_lr(engine):  # after the budget's handler, as the bundle's LR handler would be here
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])

    engine.run([0], max_epochs=100)
    # timed over two epochs: 60 s / (1.05 x 10 s) -> 5 epochs; stopped after the fifth (50 s + 12 s > 60 s)
    assert budget.fitted_epochs == 5 and sched.T_max == 5 and engine.state.epoch == 5
    assert lrs[-1] == pytest.approx(0.0, abs=1e-9) and lrs[0] > 0.99  # annealed to its minimum at the stop
    assert epochs_that_fit(60.0, []) == 1


def test_checkpoint_tars_keep_the_best_and_the_latest_within_the_parts(tmp_path: Path):
    root = tmp_path / "models"
    (root / "epochs").mkdir(parents=True)
    files = [root / "model.pt"] + [root / "epochs" / f"model_epoch={e}.pt" for e in (40, 30, 20, 10)]
    for f in files:
        f.write_bytes(b"x" * 400_000)
    out = tmp_path / "out"
    out.mkdir()
    # parts of 1 MiB hold two checkpoints each; two parts: the oldest epoch does not fit
    kept, left_out = write_checkpoint_tars(files, root, out, part_mib=1.0, max_parts=2)
    assert kept == ["model.pt", "epochs/model_epoch=40.pt", "epochs/model_epoch=30.pt", "epochs/model_epoch=20.pt"]
    assert left_out == ["epochs/model_epoch=10.pt"]
    assert sorted(p.name for p in out.iterdir()) == ["checkpoints-1.tar", "checkpoints-2.tar"]
    with tarfile.open(out / "checkpoints-1.tar") as tar:
        assert tar.getnames() == ["model.pt", "epochs/model_epoch=40.pt"]


def test_quantised_hu_is_the_window_to_half_a_step_and_overrides_parse_as_json():
    hu = np.array([-1000.0, 0.0, 12.34, 37.9, 80.0, 1500.0])
    q = quantise_hu(hu, 0.25, (0.0, 80.0))
    assert q.dtype == np.int16
    np.testing.assert_allclose(q * 0.25, np.clip(hu, 0, 80), atol=0.125)
    assert parse_sets(["asym_prob=0.5", "roi_size=[32,32,-1]", "device=cuda"]) == {
        "asym_prob": 0.5, "roi_size": [32, 32, -1], "device": "cuda"}
    from aspects.errors import InputError

    with pytest.raises(InputError, match="KEY=VALUE"):
        parse_sets(["asym_prob"])


@pytest.mark.slow
def test_pack_gives_the_bundle_the_same_input_and_run_trains_on_a_gpu_host(tmp_path: Path, capsys, monkeypatch):
    from monai.bundle import ConfigParser

    tiny = write_tiny_dataset(tmp_path / "tiny", n_train=3, n_val=1)
    packed = tmp_path / "packed"
    assert main(["pack", str(tiny), "--out", str(packed), "--no-wheels", "--tagl-slabs", TINY_SLABS]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["training"] == 3 and summary["validation"] == 1 and summary["contra"]
    assert json.loads((packed / "tagl_slabs.json").read_text()) == {"bg": [2, 14], "sg": [16, 30]}

    # the bundle's validation input from the packed files: the original's to a quarter of a HU
    monkeypatch.syspath_prepend(str(ROOT / "train" / "infarct_seg"))
    configs = ROOT / "train" / "infarct_seg" / "configs"
    parser = ConfigParser()
    parser.read_config([str(configs / "train.json"), str(configs / "contra.json")])
    load = parser.get_parsed_content("validate#preprocessing")
    entry = json.loads((tiny / "infarct.json").read_text())["validation"][0]
    a = load({k: str(tiny / v) for k, v in entry.items()})
    b = load({k: str(packed / v) for k, v in entry.items()})
    assert np.abs(np.asarray(a["image"]) - np.asarray(b["image"])).max() <= 0.125 / 80 + 1e-6
    assert np.array_equal(np.asarray(a["label"]), np.asarray(b["label"]))
    assert np.asarray(b["label"]).sum() > 0

    # a budget that holds the validation study and one training study: the rest are left out, said so
    one = sum(f.stat().st_size for f in packed.rglob("tiny_0[03].nii.gz"))
    small = tmp_path / "small"
    mib = (one + 2000) / 1024 / 1024
    assert main(["pack", str(tiny), "--out", str(small), "--no-wheels", "--tagl-slabs", TINY_SLABS,
                 "--max-mib", f"{mib:.6f}"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["training"], summary["training_left_out"], summary["validation"]) == (1, 2, 1)
    assert len(json.loads((small / "infarct.json").read_text())["training"]) == 1
    for argv, says in ((["pack", str(tiny), "--out", str(packed), "--no-wheels"], "not empty"),
                       (["pack", str(tiny), "--out", str(tmp_path / "none"), "--no-wheels", "--max-mib", "0.001"],
                        "not even one training study"),
                       (["run", "--data", str(tiny), "--out", str(tmp_path / "x")], "not a packed dataset")):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error[2]:") and says in err[0], err

    # run, with the GPU host's imports only and a GPU that torch reports (tests/fake_cuda)
    site = gpu_host_site(tmp_path / "site")
    log, out = tmp_path / "cuda_calls.jsonl", tmp_path / "out"
    # through the device script, as the device tool would run it (python3 is this venv's; no wheels packed)
    env = dict(os.environ, PYTHONPATH=str(site), ASPECTS_FAKE_CUDA="1", ASPECTS_FAKE_CUDA_LOG=str(log),
               OMP_NUM_THREADS="2", OUT=str(out), GPU_TRAIN_DATA=str(packed),
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    args = ["--epochs", "2", "--ckpt-interval", "1", "--workers", "1", "--set", "roi_size=[32,32,-1]",
            "--set", "num_samples=1", "--set", "val_interval=1"]
    proc = subprocess.run(["bash", str(ROOT / "tools" / "gpu_train_device.sh"), *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["device"].startswith("fake GPU") and result["epochs"] == 2 and not result["stopped_by_time_budget"]
    assert result["overrides"]["device"] == "$torch.device('cuda:0')"
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert any(c["event"] == "module_to" and c["device"].startswith("cuda") for c in calls)
    assert sorted(p.name for p in out.iterdir()) == ["checkpoints-1.tar", "curves.json", "curves.png",
                                                     "train.log", "train_summary.json"]
    assert "Epoch: 2/2" in (out / "train.log").read_text()
    with tarfile.open(out / "checkpoints-1.tar") as tar:
        assert tar.getnames() == ["model.pt", "epochs/model_epoch=2.pt", "epochs/model_epoch=1.pt"]
    history = json.loads((out / "curves.json").read_text())
    assert len(history["train_loss"]) == 2 and all(np.isfinite(history["train_loss"]))

    # a budget shorter than one epoch, checkpoints every 5 epochs: one epoch, a stop, and its weights all the same
    env["OUT"] = str(tmp_path / "out2")
    proc = subprocess.run(["bash", str(ROOT / "tools" / "gpu_train_device.sh"), *args, "--minutes", "0.001",
                           "--ckpt-interval", "5"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["epochs"] == 1 and result["stopped_by_time_budget"]
    assert "epochs/model_epoch=1.pt" in result["checkpoints"]
    with tarfile.open(tmp_path / "out2" / "checkpoints-1.tar") as tar:
        tar.extract("epochs/model_epoch=1.pt", tmp_path / "last")
    import torch

    parser = ConfigParser()
    parser.read_config(str(configs / "train.json"))
    net = parser.get_parsed_content("network_def")
    net.load_state_dict(torch.load(tmp_path / "last" / "epochs" / "model_epoch=1.pt", map_location="cpu",
                                   weights_only=True))  # a state dict of the bundle's network, as --init takes

    # an error in the second epoch (its validation, here): exit 7, one line, the first epoch's checkpoint kept
    env["OUT"] = str(tmp_path / "out3")
    proc = subprocess.run(["bash", str(ROOT / "tools" / "gpu_train_device.sh"), *args, "--set", "val_interval=2",
                           "--set", "validate#key_metric#val_mean_dice#output_transform=$lambda x: 1 / 0"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 7, proc.stdout[-3000:]
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("error[7]: training stopped at epoch 2: ZeroDivisionError") and str(tmp_path / "out3") in last
    summary = json.loads((tmp_path / "out3" / "train_summary.json").read_text())
    assert summary["checkpoints"] == ["epochs/model_epoch=1.pt"] and summary["failure"].startswith("ZeroDivisionError")
