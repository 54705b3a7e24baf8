"""The training step's GPU behaviour checked on a CPU: dtypes under bf16 autocast (CPU autocast), losses free
of host syncs (traced with fake tensors: no data-dependent branches, boolean indexing or .item()), the
logged training loss, --save-every, and --resume loading optimiser state on the CPU.
"""

from __future__ import annotations

import csv

import pytest
import torch
from torch.fx.experimental.proxy_tensor import make_fx

from engines.models import create_model
from tests.conftest import YTF_SPEC
from train.augment import AugmentParams
from train.fit import FitConfig, fit, step_loss, to_targets, validate
from train.masked_loss import complete_only_mse, masked_mse
from train.multitask import flip_labels, flip_tables, masked_cross_entropy

# aten ops that need the host to see device data: a GPU sync each time they run
SYNC_OPS = ("nonzero", "index.Tensor", "masked_select", "_local_scalar_dense", "is_nonzero", "linalg_solve")


def traced_ops(fn, *args) -> set[str]:
    """The aten ops of fn traced with fake tensors; a data-dependent Python branch fails the trace."""
    gm = make_fx(fn, tracing_mode="fake")(*args)
    return {str(n.target) for n in gm.graph.nodes if n.op == "call_function"}


def test_losses_have_no_host_syncs():
    torch.manual_seed(0)
    pred, target = torch.randn(8, 30), torch.randn(8, 30)
    mask = torch.rand(8, 30) > 0.2
    mask[:3] = True
    logits, labels = torch.randn(8, 5), torch.tensor([2, -1, 0, -1, 4, 1, -1, 3])
    for fn, args in ((masked_mse, (pred, target, mask)), (complete_only_mse, (pred, target, mask)),
                     (masked_cross_entropy, (logits, labels))):
        ops = traced_ops(fn, *args)
        assert not [op for op in ops if any(s in op for s in SYNC_OPS)], (fn.__name__, ops)
    # the same values as the boolean-indexing definitions
    full = mask.all(dim=1)
    torch.testing.assert_close(complete_only_mse(pred, target, mask), ((pred[full] - target[full]) ** 2).mean())
    known = labels >= 0
    torch.testing.assert_close(masked_cross_entropy(logits, labels),
                               torch.nn.functional.cross_entropy(logits[known], labels[known]))
    none = complete_only_mse(pred.requires_grad_(), target, torch.zeros_like(mask))
    none.backward()
    assert float(none.detach()) == 0.0 and (pred.grad == 0).all()


def test_flip_tables_are_built_once_and_agree():
    names = ["gender", "smile", "glasses", "pose"]
    labels = torch.tensor([[0, 1, 0, 0], [1, 0, 1, 4], [-1, -1, -1, -1]])
    flipped = torch.tensor([True, True, False])
    tables = flip_tables(names)
    assert set(tables) == {"pose"}
    assert torch.equal(flip_labels(labels, names, flipped, tables), flip_labels(labels, names, flipped))


def test_bf16_autocast_step_dtypes_on_cpu():
    """The training step under bf16 autocast (on the CPU, as on CUDA): the trunk runs bf16, the regression
    head float32 (bf16 would quantise targets by 0.1-0.2 px), the losses and all gradients float32."""
    torch.manual_seed(0)
    model = create_model("mlresnet", attributes={"smile": 2}).train()
    x = torch.rand(4, 1, 96, 96)
    y, m = to_targets(torch.rand(4, 15, 2) * 60 + 18)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert model.features(x).dtype == torch.bfloat16
        assert model(x).dtype == torch.float32
        targets, logits = model.forward_all(x)
        assert targets.dtype == torch.float32
    loss, landmark, ces = step_loss(model, x, y, m, masked_mse, torch.bfloat16, ["smile"],
                                    torch.tensor([[0], [1], [-1], [1]]), {"smile": 0.1})
    assert loss.dtype == landmark.dtype == ces["smile"].dtype == torch.float32
    loss.backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in model.parameters())
    # float32 head: the same output as running the head on the bf16 features cast up, not a bf16 rounding
    model.eval()  # no dropout: both passes see the same features
    with torch.autocast("cpu", dtype=torch.bfloat16):
        f = model.features(x)
        out = model(x)
    torch.testing.assert_close(out, model.regress(f.float()), rtol=0, atol=1e-6)


@pytest.fixture(scope="module")
def ytf40(tmp_path_factory, shared_data, haar_detection):
    from train.prepare import prepare

    path = tmp_path_factory.mktemp("tp") / "ytf.npz"
    prepare([YTF_SPEC], str(path), limit=40)
    return path


def test_logged_train_loss_is_the_mean_over_the_batches(ytf40, tmp_path):
    """lr 0, no augmentation, no dropout or BN (mlp): every batch sees the same weights, so the logged loss
    is the mean of the batch losses; with equal batches of fully labelled faces, the mean over the faces."""
    from engines.checkpoint import load_checkpoint
    from train.fit import split_indices
    from train.prepare import load_prepared

    prepared = load_prepared(str(ytf40))
    train_idx, _ = split_indices(prepared.val, 32, 0)
    n = len(train_idx)
    assert n == 32
    cfg = FitConfig(str(ytf40), str(tmp_path), arch="mlp", epochs=1, batch=n // 2, lr=0.0, weight_decay=0.0,
                    device="cpu", augment=AugmentParams.none(), limit=32)
    row = fit(cfg, log=lambda _: None)
    model, _ = load_checkpoint(str(tmp_path / "last.pt"))
    crops = torch.from_numpy(prepared.crops[train_idx])
    points = torch.from_numpy(prepared.keypoints[train_idx].astype("float32"))
    from tracker.keypoints import get_keypoint_set

    perm = torch.from_numpy(get_keypoint_set(prepared.meta["keypoints"]).flip_permutation)
    want = validate(model, crops, points, perm, n, masked_mse, None)["val_loss"]
    assert row["train_loss"] == pytest.approx(want, rel=1e-4)  # the old log gave twice this (2 sums / 1)
    assert row["wall_images_per_s"] > 0 and row["images_per_s"] >= row["wall_images_per_s"]


def test_save_every_and_resume_loads_optimizer_state_on_cpu(ytf40, tmp_path, monkeypatch):
    import train.fit as fit_module

    saved: list[tuple[str, int]] = []
    real_save = fit_module.save_checkpoint

    def record(path, *args, **kwargs):
        saved.append((str(path).rsplit("/", 1)[-1], kwargs.get("epoch")))
        return real_save(path, *args, **kwargs)

    monkeypatch.setattr(fit_module, "save_checkpoint", record)
    logs: list[str] = []
    cfg = FitConfig(str(ytf40), str(tmp_path), arch="mlp", epochs=3, batch=16, device="cpu", save_every=2)
    fit(cfg, log=logs.append)
    assert [e for p, e in saved if p == "last.pt"] == [2, 3]  # every 2nd epoch and the last
    assert {p for p, _ in saved} == {"last.pt", "best.pt"} and len([p for p, _ in saved if p == "best.pt"]) <= 2
    assert "images/s (steps)" in logs[-1] and "(wall)" in logs[-1]
    with open(tmp_path / "metrics.csv") as f:
        assert [r["epoch"] for r in csv.DictReader(f)] == ["1", "2", "3"]

    calls = []
    real_load = fit_module.load_checkpoint

    def load(path, *args, **kwargs):
        calls.append((args, kwargs))
        return real_load(path, *args, **kwargs)

    monkeypatch.setattr(fit_module, "load_checkpoint", load)
    fit(FitConfig(str(ytf40), str(tmp_path), arch="mlp", epochs=4, batch=16, device="cpu", resume=True),
        log=lambda _: None)
    assert calls and calls[0] == ((), {})  # map_location defaults to the CPU, whatever the training device
    with pytest.raises(ValueError, match="save_every"):
        fit(FitConfig(str(ytf40), str(tmp_path / "x"), arch="mlp", epochs=1, device="cpu", save_every=0))
