"""aspects_research.tools.weight_average: SWA / model-soup averages of infarct-model checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from aspects.errors import EXIT_USAGE  # noqa: E402
from aspects_research.tools import weight_average  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "models" / "infarct_seg" / "infarct_seg.ts"


def _net(seed: int):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Conv3d(2, 4, 3), torch.nn.InstanceNorm3d(4, affine=True), torch.nn.Conv3d(4, 2, 1))


def test_the_average_is_the_weighted_mean_of_every_weight_and_runs_as_the_network(tmp_path):
    a, b = _net(0), _net(1)
    pa, pb = tmp_path / "a.pt", tmp_path / "b.pt"
    torch.save(a.state_dict(), pa)
    torch.save(b.state_dict(), pb)
    out = tmp_path / "soup.pt"
    assert weight_average.main(["--ckpt", str(pa), str(pb), "--weights", "3", "1", "--out", str(out)]) == 0
    soup = torch.load(out, weights_only=True)
    for k, va in a.state_dict().items():
        assert torch.allclose(soup[k], 0.75 * va + 0.25 * b.state_dict()[k], atol=1e-7), k
    net = _net(2)
    net.load_state_dict(soup)
    assert net(torch.zeros(1, 2, 5, 5, 5)).shape == (1, 2, 3, 3, 3)


def test_the_shipped_torchscript_model_averaged_with_itself_is_itself(tmp_path):
    out = tmp_path / "same.pt"
    assert weight_average.main(["--ckpt", str(SHIPPED), str(SHIPPED), "--out", str(out)]) == 0
    soup = torch.load(out, weights_only=True)
    shipped = torch.jit.load(str(SHIPPED), map_location="cpu").state_dict()
    assert soup.keys() == shipped.keys()
    assert all(torch.equal(soup[k], shipped[k]) for k in shipped)


def test_checkpoints_of_different_networks_are_refused_with_one_line(tmp_path, capsys):
    pa, pb = tmp_path / "a.pt", tmp_path / "b.pt"
    torch.save(_net(0).state_dict(), pa)
    torch.save(torch.nn.Conv3d(2, 4, 3).state_dict(), pb)
    assert weight_average.main(["--ckpt", str(pa), str(pb), "--out", str(tmp_path / "x.pt")]) == EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert err.startswith("error[2]: checkpoint 2 has other weights") and "\n" not in err
    assert not (tmp_path / "x.pt").exists()
    assert weight_average.main(["--ckpt", str(pa), str(tmp_path / "missing.pt"), "--out", str(tmp_path / "x.pt")]) == EXIT_USAGE
    assert "checkpoint not found" in capsys.readouterr().err
    (tmp_path / "text.pt").write_text("not a checkpoint")
    assert weight_average.main(["--ckpt", str(pa), str(tmp_path / "text.pt"), "--out", str(tmp_path / "x.pt")]) == EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error[2]: {tmp_path / 'text.pt'}: not a readable checkpoint") and "\n" not in err
