"""The `fkd-track quantize` command: real face crops for INT8 calibration (training split) and for its accuracy
bound (validation split, landmark and detector crops), cut through tracker.crop; engines/quantize.py does the rest.

Faces come from dataset specs (train/datasets.py) split by identity as `train prepare` splits them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import typer

from engines.errors import UserError


def spread(rows: np.ndarray, count: int) -> np.ndarray:
    """At most `count` of `rows`, evenly spaced (deterministic; covers every part of a source)."""
    if count >= len(rows):
        return rows
    return rows[np.linspace(0, len(rows) - 1, count).round().astype(int)]


def split_faces(specs: list[str], calibration: int, held_out: int):
    """(calibration crops (N, 96, 96) uint8 from training-split faces, [HeldOut] validation faces cropped by
    their landmark boxes and by the Haar detector), taken evenly from each spec."""
    from engines.quantize import HeldOut
    from train.datasets import is_validation, load_dataset
    from train.evaluate import faces_from_set

    calib, parts = [], {"landmarks": [], "detector": []}
    for spec in specs:
        fs = load_dataset(spec, skip_bad=True)
        val = np.array([is_validation(g) for g in fs.groups], bool)
        train_rows = spread(np.flatnonzero(~val), max(1, calibration // len(specs)))
        val_rows = spread(np.flatnonzero(val), max(1, held_out // len(specs)))
        calib.append(faces_from_set(fs, train_rows, "landmarks").crops)
        for mode in parts:
            parts[mode].append(faces_from_set(fs, val_rows, mode))
    held = [HeldOut(mode, np.concatenate([f.crops for f in fs_]), np.concatenate([f.truth for f in fs_]))
            for mode, fs_ in parts.items()]
    return np.concatenate(calib), held


def quantize(
    model: Path = typer.Option(..., "--model", help="Float .onnx to quantise (e.g. tracker/assets/default.onnx)."),
    data: list[str] = typer.Option(
        ..., "--data", help="Labelled faces, FORMAT:PATH (repeatable): training split calibrates, validation "
        "split (by identity) measures the bound."),
    out: Path | None = typer.Option(None, "--out", help="INT8 file to write (default: MODEL.int8.onnx, where "
                                    "`--backend auto` looks for it)."),
    calibration: int = typer.Option(256, "--calibration", min=8, help="Calibration faces (training split)."),
    held_out: int = typer.Option(600, "--held-out", min=10, help="Validation faces the bound is measured on."),
    bound: float = typer.Option(0.1, "--bound", min=0.0, help="Allowed validation RMSE increase over float (px)."),
) -> None:
    """INT8 ONNX (static QDQ, calibrated on real face crops); written only within --bound px of float's RMSE."""
    from engines.extras import require
    from engines.model_file import model_kind, require_model_file
    from engines.output_files import check_outputs
    from engines.quantize import quantize_int8, require_float_onnx
    from engines.select import int8_sibling

    require("onnx", "fkd-track quantize")
    src = require_model_file(str(model))
    if model_kind(src) != "onnx":
        raise UserError(f"{src}: quantize takes a float .onnx (export a checkpoint first)")
    require_float_onnx(src)  # before the faces are cropped
    dst = str(out) if out is not None else int8_sibling(src)
    check_outputs([src], {"--out": dst})
    crops, held = split_faces(data, calibration, held_out)
    record = quantize_int8(src, dst, crops, held, bound_px=bound)
    for h in held:
        typer.echo(f"{h.name:<10} {record.faces[h.name]:>5} faces: RMSE float {record.rmse_float[h.name]:.4f} px, "
                   f"int8 {record.rmse_int8[h.name]:.4f} px")
    typer.echo(f"largest increase {record.delta_px:+.4f} px (bound {bound} px); batch 2 faces/s here: float "
               f"{record.faces_per_s_float:.1f}, int8 {record.faces_per_s_int8:.1f}")
    typer.echo(f"wrote {dst} ({record.calibration_faces} calibration faces)")
