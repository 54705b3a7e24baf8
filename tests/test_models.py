"""The model registry: options reach the architecture (`--arch-option`), unknown ones are refused."""

from __future__ import annotations

import pytest
import torch

from engines.models import create_model, parse_arch_options


def test_model_options_parse_to_keyword_arguments():
    assert parse_arch_options(["fc=1000", "dropout=0.3", "widths=64,128,256", "shortcut=false"]) == {
        "fc": 1000, "dropout": 0.3, "widths": (64, 128, 256), "shortcut": False}
    for bad in (["fc"], ["=3"], ["fc=wide"]):
        with pytest.raises(ValueError):
            parse_arch_options(bad)
    with pytest.raises(ValueError, match="mlresnet"):
        create_model("mlresnet", fcc=3)


def test_an_extra_block_and_a_wider_fc_keep_the_output_shape():
    model = create_model("mlresnet", 15, **parse_arch_options(["fc=1000", "widths=64,128,256"])).eval()
    assert model.head[1].in_features == 256 * 6 * 6 and model.head[1].out_features == 1000
    assert model(torch.zeros(2, 1, 96, 96)).shape == (2, 30)


def multiply_adds(model: torch.nn.Module) -> int:
    """Conv and linear multiply-adds of one 96x96 face, counted from the layers' real output shapes."""
    total = 0

    def hook(module, _inputs, out):
        nonlocal total
        w = module.weight
        total += out[0].numel() * (w[0].numel() if isinstance(module, torch.nn.Conv2d) else w.shape[1])

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (torch.nn.Conv2d,
                                                                                         torch.nn.Linear))]
    with torch.no_grad():
        model(torch.zeros(1, 1, 96, 96))
    for h in handles:
        h.remove()
    return total


def test_the_efficient_variant_is_the_paper_net_with_a_strided_stem():
    """`mlresnet_fast`: the same layers as `mlresnet` but the FC (6x6 features instead of 12x12), about a quarter
    of the multiply-adds, the same (N, 2K) output."""
    exact, fast = create_model("mlresnet").eval(), create_model("mlresnet_fast").eval()
    assert fast(torch.zeros(2, 1, 96, 96)).shape == (2, 30)
    assert fast.head[1].in_features == 128 * 6 * 6 and exact.head[1].in_features == 128 * 12 * 12
    differ = {k for k, v in fast.state_dict().items() if exact.state_dict()[k].shape != v.shape}
    assert differ == {"head.1.weight"}
    ratio = multiply_adds(exact) / multiply_adds(fast)
    assert 3.5 < ratio < 4.5, ratio
    with pytest.raises(ValueError, match="stem_stride"):
        create_model("mlresnet_fast", stem_stride=3)


def test_a_variant_starts_from_its_parents_weights(tmp_path):
    """`--init` with a parent architecture copies every tensor of matching name and shape (all but the FC
    for mlresnet -> mlresnet_fast); a model sharing no weights is refused."""
    from engines.checkpoint import CheckpointError, model_meta, save_checkpoint
    from tracker.keypoints import get_keypoint_set
    from train.fit import init_from

    kps = get_keypoint_set("kaggle15")
    parent, child = create_model("mlresnet"), create_model("mlresnet_fast")
    path = str(tmp_path / "parent.pt")
    save_checkpoint(path, parent, model_meta("mlresnet", {}, kps))
    lines: list[str] = []
    init_from(child, path, "mlresnet_fast", kps.names, lines.append)
    assert torch.equal(child.stem[0].weight, parent.stem[0].weight)
    assert torch.equal(child.blocks[1].conv2.weight, parent.blocks[1].conv2.weight)
    assert torch.equal(child.head[4].weight, parent.head[4].weight)  # the 500 -> 30 output layer fits too
    assert not torch.equal(child.head[1].weight[:, :10], parent.head[1].weight[:, :10])  # the FC stays fresh
    assert "45/46 tensors, a mlresnet model" in lines[0]
    with pytest.raises(CheckpointError, match="shares no weights"):
        init_from(create_model("mlp"), path, "mlp", kps.names, lines.append)
