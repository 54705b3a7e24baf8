"""The `fkd-track export` command: checkpoint -> ONNX, and optionally ONNX -> TensorRT FP16/FP32 engine.

A plain typed function; tracker/cli.py registers it. torch and tensorrt are imported only when it runs.
"""

from __future__ import annotations

from pathlib import Path

import typer

from engines.backend import ModelError
from engines.errors import UserError
from engines.extras import require
from engines.model_file import model_kind, require_model_file
from engines.output_files import atomic_path, check_outputs


def export(
    model: Path = typer.Option(..., "--model", help="Checkpoint (.pt), or an .onnx to build an engine from."),
    onnx: Path | None = typer.Option(None, "--onnx", help="ONNX to write (default: the checkpoint's path as .onnx, "
                                       "never over an existing file: name it here to replace it)."),
    engine: Path | None = typer.Option(None, "--engine", help="TensorRT engine to build (TensorRT + GPU)."),
    fp16: bool = typer.Option(True, "--fp16/--fp32", help="Engine precision."),
    min_batch: int = typer.Option(1, "--min-batch", min=1, help="Smallest batch the engine accepts."),
    opt_batch: int = typer.Option(8, "--opt-batch", min=1, help="Batch size TensorRT tunes for."),
    max_batch: int = typer.Option(64, "--max-batch", min=1, help="Largest batch the engine accepts."),
    half_weights: bool = typer.Option(
        False, "--half-weights", help="Store the large weights of the ONNX as float16 (about half the file); "
        "refused unless outputs stay within 0.01 px of float32."),
) -> None:
    """Export a trained model to ONNX (dynamic batch, self-describing) and optionally a TensorRT engine."""
    src = require_model_file(str(model))
    kind = model_kind(src)
    if kind == "engine":
        raise ModelError(f"{src} is already a TensorRT engine; pass the .pt checkpoint or its .onnx")
    if not min_batch <= opt_batch <= max_batch:
        raise UserError("need 1 <= --min-batch <= --opt-batch <= --max-batch, "
                        f"got {min_batch}, {opt_batch}, {max_batch}")
    if kind != "pt" and onnx is not None:
        raise UserError(f"{src} is already ONNX; drop --onnx (or pass the .pt checkpoint to re-export)")
    if kind != "pt" and engine is None:
        raise UserError(f"{src} is already ONNX; add --engine OUT.engine to build a TensorRT engine")
    for option, path, suffix in (("--onnx", onnx, ".onnx"), ("--engine", engine, ".engine")):
        if path is not None and Path(path).suffix.lower() != suffix and Path(path).resolve() != Path(src).resolve():
            raise UserError(f"{option} {path}: name it *{suffix} (fkd-track picks the backend by the suffix)")
    if kind == "pt":  # before any output folder is made
        for module in ("torch", "onnx", "onnxscript"):  # torch's ONNX exporter needs all three
            require(module, "exporting a .pt checkpoint")
    onnx_path = (str(onnx) if onnx is not None else str(Path(src).with_suffix(".onnx"))) if kind == "pt" else src
    if kind == "pt" and onnx is None and Path(onnx_path).exists():
        raise UserError(f"{onnx_path} already exists; pass --onnx {onnx_path} to replace it, or another --onnx path")
    check_outputs([src], {"--onnx": onnx_path if kind == "pt" else None, "--engine": engine,
                          "--engine (its .json)": f"{engine}.json" if engine is not None else None,
                          "--engine (its .timing)": f"{engine}.timing" if engine is not None else None})
    if engine is not None:
        from engines.tensorrt_env import import_tensorrt

        import_tensorrt()  # fail before writing anything when TensorRT is missing
    if kind == "pt":
        from engines.export import export_onnx

        with atomic_path(onnx_path) as tmp:  # with --half-weights, only the float16 file is ever written
            export_onnx(src, str(tmp))
            if half_weights:
                from engines.fp16_storage import store_weights_fp16

                diff = store_weights_fp16(str(tmp), str(tmp))
                typer.echo(f"stored large weights as float16 (max change {diff:.4f} px)")
        typer.echo(f"wrote {onnx_path}")
    else:
        from engines.ort_backend import OrtBackend

        OrtBackend(src)  # validates shape and metadata before the long build
    if engine is not None:
        from engines.tensorrt_build import build_engine

        build_engine(onnx_path, str(engine), fp16=fp16, batch_range=(min_batch, opt_batch, max_batch))
        typer.echo(f"wrote {engine} and {engine}.json")
