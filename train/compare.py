"""The paper's Table 2 experiment: CNN + complete-only loss, CNN + masked loss, ML-ResNet + masked loss.

All three train on the same prepared split and are scored by `train.evaluate` on its validation faces.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import replace

from engines.output_files import atomic_path, check_outputs
from train.evaluate import evaluate
from train.fit import FitConfig, check_fit, fit
from train.plots import plot_losses
from train.prepare import require_prepared_file
from train.run_folder import check_run_folder, claim_run_folder, run_checkpoints

PAPER_RUNS = (("cnn", "complete-only"), ("cnn", "masked"), ("mlresnet", "masked"))


def compare(base: FitConfig, out_dir: str, runs=PAPER_RUNS, crop: str = "prepared",
            log: Callable[[str], None] = print) -> str:
    """Train each (arch, loss) run, evaluate its best checkpoint, write table.md + loss_curves.png.

    Returns the markdown table."""
    from engines.select import load_backend

    require_prepared_file(base.data)
    configs = {}
    for arch, loss in runs:  # every run is checked before any folder is made
        run_dir = os.path.join(out_dir, f"{arch}+{loss}")
        resume = base.resume and "last.pt" in run_checkpoints(run_dir)  # --resume: the runs not started start
        configs[f"{arch}+{loss}"] = cfg = replace(base, arch=arch, loss=loss, out=run_dir, resume=resume)
        check_run_folder(run_dir, cfg.resume, cfg.force)
        check_fit(cfg, hint=f"so the {arch}+{loss} run cannot train: add faces with all keypoints (e.g. ytf:) or "
                            "compare masked runs only (--archs)")
    check_outputs([base.data], {"--out": os.path.join(out_dir, "table.md")})
    check_outputs([base.data], {"--out": os.path.join(out_dir, "loss_curves.png")})
    for cfg in configs.values():  # every run folder is checked before the first run starts
        claim_run_folder(cfg.out, cfg.resume, cfg.force, inputs=[base.data])
    rows, histories = [], {}
    for (arch, loss), (name, cfg) in zip(runs, configs.items(), strict=True):
        run_dir = cfg.out
        t0 = time.perf_counter()
        fit(cfg, log=log)
        minutes = (time.perf_counter() - t0) / 60
        import pandas as pd

        histories[name] = pd.read_csv(os.path.join(run_dir, "metrics.csv")).to_dict("records")
        m = evaluate(load_backend(os.path.join(run_dir, "best.pt"), "torch"), base.data, crop=crop)
        rows.append((arch, loss, histories[name][-1]["train_loss"], m, minutes, len(histories[name])))
    plot_losses(histories, os.path.join(out_dir, "loss_curves.png"))
    lines = [
        "| model | loss | train loss | val RMSE (px) | failure rate (>9.6 px) | NME (inter-ocular) | epochs "
        "| minutes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for arch, loss, train_loss, m, minutes, epochs in rows:
        nme = f"{m['nme_interocular']:.4f}" if m["nme_interocular"] is not None else "n/a"
        lines.append(f"| {arch} | {loss} | {train_loss:.5f} | {m['rmse_px']:.3f} | {100 * m['failure_rate']:.2f}% "
                     f"| {nme} | {epochs} | {minutes:.1f} |")
    table = "\n".join(lines) + "\n"
    with atomic_path(os.path.join(out_dir, "table.md")) as tmp:
        tmp.write_text(table)
    return table
