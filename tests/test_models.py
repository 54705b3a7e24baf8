"""The model registry: options reach the architecture (`--arch-option`), unknown ones are refused."""

from __future__ import annotations

import pytest
import torch

from train.models import create_model, parse_arch_options


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
