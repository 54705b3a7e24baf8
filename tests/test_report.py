"""Other trunks and visual reports on real faces: ResNet-18 beside the paper's models in `train compare --archs`,
and `train report` drawing loss curves, CED curves, prediction grids and first-layer filters."""

from __future__ import annotations

import pytest
import torch

from engines.models import MODELS, create_model
from tests.conftest import MTFL_SPEC, YTF_SPEC
from train.prepare import prepare
from train.report import find_runs, first_layer_filters


def test_resnet18_is_registered_with_basic_blocks_and_heads():
    model = create_model("resnet18", 15, attributes={"pose": 5}).eval()
    assert "resnet18" in MODELS
    blocks = [m for m in model.modules() if type(m).__name__ == "BasicBlock"]
    assert len(blocks) == 8  # [2, 2, 2, 2]
    x = torch.rand(3, 1, 96, 96)
    kp, logits = model.forward_all(x)
    assert kp.shape == (3, 30) and logits["pose"].shape == (3, 5)
    assert torch.equal(model(x), kp)
    assert first_layer_filters(model).shape == (32, 5, 5)
    assert first_layer_filters(create_model("mlp")).shape == (100, 96, 96)


@pytest.fixture(scope="module")
def compared(tmp_path_factory, shared_data, cli):
    root = tmp_path_factory.mktemp("report")
    data = root / "p.npz"
    prepare([YTF_SPEC, MTFL_SPEC], str(data), limit=50)
    r = cli("train", "compare", "--data", data, "--out", root / "cmp", "--epochs", "1", "--batch", "32",
            "--lr", "1e-3", "--limit", "60", "--archs", "resnet18,mlp")
    assert r.code == 0, r.err
    return root, data


def test_compare_archs_trains_each_trunk_with_the_masked_loss(compared):
    root, _ = compared
    table = (root / "cmp" / "table.md").read_text().splitlines()
    assert len(table) == 4
    assert table[2].startswith("| resnet18 | masked") and table[3].startswith("| mlp | masked")
    assert set(find_runs(str(root / "cmp"))) == {"resnet18+masked", "mlp+masked"}


def test_report_writes_the_pngs(compared, cli):
    root, data = compared
    r = cli("train", "report", root / "cmp", "--data", data)
    assert r.code == 0, r.err
    out = root / "cmp" / "report"
    names = {"loss_curves.png", "ced.png"} | {f"{kind}_{run}.png" for kind in ("filters", "predictions")
                                                for run in ("resnet18+masked", "mlp+masked")}
    for name in names:
        png = out / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000, name
    # one run without data: curves and filters only
    r = cli("train", "report", root / "cmp" / "mlp+masked", "--out", root / "solo")
    assert r.code == 0, r.err
    assert sorted(p.name for p in (root / "solo").iterdir()) == ["filters_mlp+masked.png", "loss_curves.png"]
    r = cli("train", "report", root / "nothing-here")
    assert r.code != 0 and "no training run here" in r.err and "Traceback" not in r.err
