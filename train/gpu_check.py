"""One-call GPU verification (`make gpu-check OUT=DIR`): the CUDA tests, FP16 vs FP32, torch faces/s with and
without CUDA graphs, training images/s, host syncs per training step and TensorRT; a log and summary.json in DIR.

Runs with the machine's own python (PYTHONPATH = the repository): numpy, OpenCV, ONNX Runtime, onnx and torch,
nothing else. Without ../shared/data it trains on a synthetic prepared set of the full set's size. Without CUDA
it runs the CPU parts (reduced) and lists each skipped part with its reason.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
FULL_SET_FACES = 3531 + 10000  # YTF + MTFL training faces in ../shared/data (its README)
INFER_BATCHES = (1, 8, 64, 256, 1024)
TRAIN_BATCHES = (256, 1024)
TARGET_TRAIN_IMAGES_PER_S = 20_000  # issue 12: mlresnet on an H100 at batch >= 256
SYNC_STEPS = 20
TEST_FILES = ("tests/test_export.py", "tests/test_gpu_paths_cpu.py", "tests/test_tensorrt_fake.py",
              "tests/test_training_gpu_paths.py")
# the 15 Kaggle keypoints of an average face in 96 px crop pixels (Kaggle order), for synthetic faces
TEMPLATE_96 = np.array([[66, 38], [30, 38], [59, 38], [73, 38], [37, 38], [22, 38], [56, 29], [80, 30], [40, 29],
                        [16, 30], [48, 62], [63, 76], [33, 76], [48, 72], [48, 82]], np.float32)


class Skip(Exception):
    """A part that cannot run here; its message is the reason."""


class Report:
    """The log file, the summary dict (rewritten after every part) and the time budget."""

    def __init__(self, out: Path, budget_s: float) -> None:
        self.out, self.deadline, self.t0 = out, time.monotonic() + budget_s, time.monotonic()
        out.mkdir(parents=True, exist_ok=True)
        self.log_file = open(out / "gpu_check.log", "w")  # noqa: SIM115 - open for the whole run
        self.summary: dict = {"parts": {}, "skipped": {}, "failed": {}}

    def log(self, msg: str) -> None:
        line = f"[{time.monotonic() - self.t0:7.1f}s] {msg}"
        print(line, flush=True)
        self.log_file.write(line + "\n")
        self.log_file.flush()

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def part(self, name: str, fn: Callable[[], dict], need_s: float = 0.0) -> dict | None:
        """Run one part: its dict goes to summary["parts"]; Skip and errors are recorded, never raised."""
        self.log(f"== {name}")
        t = time.monotonic()
        try:
            if need_s and self.left() < need_s:
                raise Skip(f"only {self.left():.0f} s of the budget left (needs ~{need_s:.0f} s)")
            result = fn()
            result["seconds"] = round(time.monotonic() - t, 1)
            self.summary["parts"][name] = result
            self.log(f"{name}: {json.dumps(result, default=str)}")
            return result
        except Skip as why:
            self.summary["skipped"][name] = str(why)
            self.log(f"{name}: skipped: {why}")
        except Exception as err:  # one failing part must not hide the others
            self.summary["failed"][name] = f"{type(err).__name__}: {err}".splitlines()[0][:300]
            self.log(f"{name}: FAILED\n{traceback.format_exc()}")
        finally:
            self.write()
        return None

    def write(self) -> None:
        self.summary["total_seconds"] = round(time.monotonic() - self.t0, 1)
        tmp = self.out / "summary.json.tmp"
        tmp.write_text(json.dumps(self.summary, indent=2, default=str))
        os.replace(tmp, self.out / "summary.json")


def environment() -> dict:
    try:
        from tracker.doctor import collect

        return collect()
    except ImportError as err:  # doctor needs typer, which a bare GPU image may lack
        import torch

        from engines.tensorrt_env import current_gpu, tensorrt_version

        gpu = current_gpu()
        return {"note": f"doctor unavailable ({err})", "python": platform.python_version(),
                "torch": torch.__version__, "cuda": torch.version.cuda, "gpu": gpu and list(gpu),
                "tensorrt": tensorrt_version()}


def synthetic_prepared(path: str, n: int, seed: int = 0) -> dict:
    """A prepared set (train/prepare.py's format) of n synthetic faces: a face-like ellipse with dark dots at
    jittered template keypoints, some keypoints missing, 10% validation; it measures speed, not accuracy."""
    import cv2

    from tracker.keypoints import KAGGLE15
    from train.prepare import CROP_SIZE, STORE_SIZE, encode_crop, write_prepared

    rng = np.random.default_rng(seed)
    margin = (STORE_SIZE - CROP_SIZE) / 2
    blobs, points = [], []
    for _ in range(n):
        ang, scale = rng.normal(0, 0.15), 1 + rng.normal(0, 0.06)
        rot = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]], np.float32) * scale
        pts = (TEMPLATE_96 - 48) @ rot.T + 48 + margin + rng.normal(0, 1.5, (15, 2)) + rng.normal(0, 3, 2)
        img = np.full((STORE_SIZE, STORE_SIZE), int(rng.integers(30, 90)), np.uint8)
        cv2.ellipse(img, (60, 62), (int(38 * scale), int(50 * scale)), float(np.degrees(ang)), 0, 360,
                    int(rng.integers(130, 210)), -1)
        for x, y in pts:
            cv2.circle(img, (int(round(x)), int(round(y))), 2, int(rng.integers(0, 60)), -1)
        img = np.clip(img + rng.normal(0, 8, img.shape), 0, 255).astype(np.uint8)
        blobs.append(encode_crop(img))
        pts = pts.astype(np.float32)
        pts[rng.random(15) < 0.3] = np.nan  # partially labelled faces, as MTFL's 5-of-15
        points.append(pts)
    val = rng.random(n) < 0.1
    meta = {"specs": ["synthetic"], "keypoints": KAGGLE15.name, "crop_size": CROP_SIZE, "store_size": STORE_SIZE,
            "n_faces": n, "n_val": int(val.sum()), "synthetic": True}
    write_prepared(path, blobs, np.stack(points), np.full((n, 4), -1), val, np.zeros(n, bool),
                   np.array([f"s{i}" for i in range(n)]), np.array([f"synthetic:{i}" for i in range(n)]),
                   np.zeros(n), np.arange(n), meta)
    return meta


def real_crops(limit: int = 64) -> np.ndarray | None:
    """Up to `limit` real 96 px face crops from ../shared/data's YTF frames (None when absent)."""
    from train.datasets import shared_data_dir

    csv_path = shared_data_dir() / "ytf" / "training_frames_keypoints.csv"
    if not csv_path.is_file():
        return None
    from tracker.crop import box_from_keypoints, crop_face
    from tracker.keypoints import KAGGLE15
    from train.datasets import load_dataset

    fs = load_dataset(f"ytf:{csv_path}")
    n = min(limit, len(fs.keypoints))  # the first rows: the ones make_data_subset carries
    return np.stack([crop_face(fs.load_image(i), box_from_keypoints(fs.keypoints[i], KAGGLE15))[0] for i in range(n)])


def make_data_subset(src: Path, dst: Path, first: int = 64, every: int = 500) -> dict:
    """Copy what the GPU-path tests and this check read from ../shared/data into dst (a few MiB, to carry to a
    GPU machine that has no ../shared): README, the YTF CSV with the images of its first `first` rows and of
    every `every`-th row (the test fixtures' faces), and the videos."""
    import csv
    import shutil

    if dst.exists():
        shutil.rmtree(dst)
    (dst / "ytf" / "training").mkdir(parents=True)
    shutil.copy2(src / "README.md", dst / "README.md")
    shutil.copy2(src / "ytf" / "training_frames_keypoints.csv", dst / "ytf" / "training_frames_keypoints.csv")
    shutil.copytree(src / "videos", dst / "videos")
    with open(src / "ytf" / "training_frames_keypoints.csv", newline="") as f:
        names = [row[0] for row in list(csv.reader(f))[1:]]
    picked = [n for i, n in enumerate(names) if i < first or i % every == 0]
    for name in picked:
        shutil.copy2(src / "ytf" / "training" / name, dst / "ytf" / "training" / name)
    size = sum(p.stat().st_size for p in dst.rglob("*") if p.is_file())
    return {"images": len(picked), "mib": round(size / 2**20, 1)}


def train_throughput(data: str, work: Path, cuda: bool) -> dict:
    """fit() at each training batch size: steps-only and wall images/s of the last epoch; keeps last.pt."""
    import train.fit as fit_module
    from train.fit import FitConfig, fit

    if importlib.util.find_spec("matplotlib") is None:  # fit draws loss_curve.png at the end
        fit_module.plot_losses = lambda *args, **kwargs: None
    out = {}
    for batch in TRAIN_BATCHES if cuda else TRAIN_BATCHES[:1]:
        run = work / f"train_b{batch}"
        cfg = FitConfig(data, str(run), arch="mlresnet", epochs=2 if cuda else 1, batch=batch,
                        device="cuda" if cuda else "cpu", save_every=2, limit=None if cuda else 512)
        lines: list[str] = []
        row = fit(cfg, log=lines.append)
        out[f"batch_{batch}"] = {
            "images_per_s_steps": round(row["images_per_s"], 1),
            "images_per_s_wall": round(row["wall_images_per_s"], 1),
            "epoch_steps_s": round(row["seconds"], 2), "train_faces": int(row["images_per_s"] * row["seconds"] + 0.5),
            "val_rmse_px": round(row["val_rmse_px"], 3), "log_last": lines[-1],
        }
    if cuda:
        out["target_images_per_s"] = TARGET_TRAIN_IMAGES_PER_S
        out["meets_target"] = all(v["images_per_s_steps"] >= TARGET_TRAIN_IMAGES_PER_S
                                  for k, v in out.items() if k.startswith("batch_"))
    else:
        out["note"] = "CPU, 512 faces, 1 epoch: exercises the code path only"
    return out


def host_syncs(data: str) -> dict:
    """Synchronising CUDA calls per training step, counted by torch.cuda.set_sync_debug_mode("warn")."""
    import torch

    from engines.models import create_model
    from tracker.keypoints import get_keypoint_set
    from train.augment import AugmentParams
    from train.fit import train_step
    from train.masked_loss import masked_mse
    from train.prepare import load_prepared

    if not torch.cuda.is_available():
        raise Skip("no CUDA GPU (torch.cuda.is_available() is False)")
    dev = torch.device("cuda")
    p = load_prepared(data)
    n = min(len(p.crops), 4096)
    crops = torch.from_numpy(p.crops[:n]).to(dev)
    points = torch.from_numpy(p.keypoints[:n].astype(np.float32)).to(dev)
    perm = torch.from_numpy(get_keypoint_set(p.meta["keypoints"]).flip_permutation).to(dev)
    model = create_model("mlresnet").to(dev, memory_format=torch.channels_last).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, weight_decay=5e-4, fused=True)
    gen = torch.Generator(device=dev)
    gen.manual_seed(0)
    batch = 256

    def steps(k: int) -> None:
        for i in range(k):
            idx = torch.randint(0, n, (batch,), device=dev, generator=gen)
            train_step(model, opt, crops[idx], points[idx], perm, AugmentParams(), gen, masked_mse, torch.bfloat16)
            del i

    steps(3)  # warm-up: cuDNN autotuning and allocator growth may sync once
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            steps(SYNC_STEPS)
        finally:
            torch.cuda.set_sync_debug_mode(0)
    torch.cuda.synchronize()
    syncs = [str(w.message).splitlines()[0] for w in caught if "synchroniz" in str(w.message).lower()]
    return {"steps": SYNC_STEPS, "sync_warnings": len(syncs), "per_step": len(syncs) / SYNC_STEPS,
            "examples": sorted(set(syncs))[:5]}


def fp16_vs_fp32(checkpoint: str, crops: np.ndarray, work: Path, cuda: bool) -> dict:
    """Keypoint differences in crop pixels: torch CUDA FP16 (graphs) vs torch CPU FP32, graph vs eager at the
    same batch; ONNX float16-compute (what TensorRT builds for --fp16) vs FP32 under ONNX Runtime."""
    import onnx
    import onnxruntime as ort
    import torch

    from engines.export import export_onnx
    from engines.onnx_fp16 import fp16_compute_model
    from engines.pixel_model import load_pixel_model
    from engines.torch_backend import TorchBackend

    out: dict = {"crops": len(crops)}
    fp32 = TorchBackend(checkpoint, device="cpu").predict(crops)
    if cuda:
        graphs = TorchBackend(checkpoint, device="cuda").predict(crops)
        eager = TorchBackend(checkpoint, device="cuda", cuda_graphs=False)
        pad = -len(crops) % 8 if len(crops) < 256 else 0
        same = eager.predict(np.concatenate([crops, crops[:pad]]))[: len(crops)]
        d = np.abs(graphs - fp32)
        out["torch_cuda_fp16_vs_cpu_fp32_px"] = {"mean": float(d.mean()), "max": float(d.max())}
        out["graph_vs_eager_same_batch_max_px"] = float(np.abs(graphs - same).max())
    else:
        model, _ = load_pixel_model(checkpoint)
        with torch.inference_mode():
            half = model.half()(torch.from_numpy(crops[:, None].astype(np.float32)).half()).numpy()
        d = np.abs(half - fp32)
        out["torch_cpu_fp16_vs_fp32_px"] = {"mean": float(d.mean()), "max": float(d.max())}
    onnx_path = str(work / "check.onnx")
    export_onnx(checkpoint, onnx_path)
    x = crops[:, None].astype(np.float32)
    a = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"]).run(None, {"crops": x})[0]
    h16 = fp16_compute_model(onnx.load(onnx_path)).SerializeToString()
    b = ort.InferenceSession(h16, providers=["CPUExecutionProvider"]).run(None, {"crops": x})[0]
    out["onnx_fp16_compute_vs_fp32_px"] = {"mean": float(np.abs(a - b).mean()), "max": float(np.abs(a - b).max())}
    return out


def torch_bench(checkpoint: str, crops: np.ndarray, cuda: bool, seconds: float) -> dict:
    from engines.bench import bench_backend
    from engines.torch_backend import TorchBackend

    if not cuda:
        rows = bench_backend(TorchBackend(checkpoint, device="cpu"), crops, (1, 8, 64), seconds=seconds, warmup=1)
        return {"torch_cpu_fp32": {r.batch: round(r.faces_per_s, 1) for r in rows},
                "note": "CPU only; the CUDA rows (graphs on/off at 1..1024) need a GPU"}
    out = {}
    for graphs in (True, False):
        backend = TorchBackend(checkpoint, device="cuda", cuda_graphs=graphs)
        rows = bench_backend(backend, crops, INFER_BATCHES, seconds=seconds, warmup=3)
        out[f"torch_cuda_fp16_graphs_{'on' if graphs else 'off'}"] = {
            r.batch: {"faces_per_s": round(r.faces_per_s, 1), "p50_ms": round(r.p50_ms, 3)} for r in rows}
    return out


def tensorrt_part(work: Path, crops: np.ndarray, seconds: float) -> dict:
    from engines.bench import bench_backend
    from engines.ort_backend import OrtBackend
    from engines.select import load_backend
    from engines.tensorrt_build import build_engine
    from engines.tensorrt_env import current_gpu, tensorrt_available, tensorrt_version

    if not tensorrt_available():
        raise Skip("TensorRT is not installed (import tensorrt fails)")
    if current_gpu() is None:
        raise Skip("TensorRT is installed but there is no CUDA GPU")
    onnx_path = work / "check.onnx"
    if not onnx_path.is_file():
        raise Skip("no exported ONNX (the fp16_vs_fp32 part did not run)")
    want = OrtBackend(str(onnx_path)).predict(crops)
    out = {"version": tensorrt_version()}
    for fp16 in (True, False):
        engine = work / f"check_{'fp16' if fp16 else 'fp32'}.engine"
        t = time.monotonic()
        build_engine(str(onnx_path), str(engine), fp16=fp16, batch_range=(1, 64, 1024))
        backend = load_backend(engine)
        d = np.abs(backend.predict(crops) - want)
        rows = bench_backend(backend, crops, INFER_BATCHES, seconds=seconds, warmup=3)
        out["fp16" if fp16 else "fp32"] = {
            "build_s": round(time.monotonic() - t, 1), "vs_onnxruntime_fp32_px": {"mean": float(d.mean()),
                                                                                 "max": float(d.max())},
            "faces_per_s": {r.batch: round(r.faces_per_s, 1) for r in rows}}
    return out


def cuda_tests(cuda: bool, timeout_s: float) -> dict:
    """pytest on the GPU-path test modules (all of them with CUDA; without, only the CUDA/TensorRT tests, which
    skip with their reasons). Missing ../shared/data makes the real-face tests skip, and says so."""
    if timeout_s < 30:
        raise Skip(f"only {timeout_s:.0f} s left for the tests")
    cmd = [sys.executable, "-m", "pytest", "-q", "-rfEs", "-p", "no:cacheprovider", *TEST_FILES]
    if not cuda:
        cmd += ["-k", "cuda or tensorrt_engine"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    try:
        run = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout_s, env=env)
    except subprocess.TimeoutExpired:
        raise Skip(f"pytest did not finish within {timeout_s:.0f} s") from None
    lines = (run.stdout + run.stderr).strip().splitlines()
    return {"command": " ".join(cmd[2:]), "returncode": run.returncode, "result": lines[-1] if lines else "",
            "skips": [ln for ln in lines if ln.startswith("SKIPPED")][:20],
            "failures": [ln for ln in lines if ln.startswith(("FAILED", "ERROR"))][:20]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="folder for gpu_check.log and summary.json")
    ap.add_argument("--make-data", metavar="DIR", help="only copy the carried subset of ../shared/data to DIR")
    ap.add_argument("--data", help="a prepared set (train prepare) instead of the synthetic one")
    ap.add_argument("--faces", type=int, default=0, help="synthetic faces (default: the full set's size on "
                    f"CUDA, {FULL_SET_FACES}; 1024 without)")
    ap.add_argument("--budget", type=float, default=500.0, help="seconds for the whole run (default 500)")
    ap.add_argument("--bench-seconds", type=float, default=1.0, help="timed seconds per benchmark row")
    args = ap.parse_args(argv)
    if args.make_data:
        from train.datasets import shared_data_dir

        print(json.dumps(make_data_subset(shared_data_dir(), Path(args.make_data))))
        return 0
    if not args.out:
        ap.error("--out DIR is required")
    import torch

    cuda = torch.cuda.is_available()
    rep = Report(Path(args.out), args.budget)
    rep.summary["cuda"] = cuda
    if not cuda:
        rep.summary["skipped"]["cuda"] = "no CUDA GPU: CPU parts only (reduced), GPU parts listed as skipped"
    rep.part("environment", environment)
    with tempfile.TemporaryDirectory(prefix="fkd-gpu-check-") as tmp:
        work = Path(tmp)
        data = args.data
        if data is None:
            data = str(work / "synthetic.npz")
            faces = args.faces or (FULL_SET_FACES if cuda else 1024)
            if rep.part("data", lambda: {"synthetic": synthetic_prepared(data, faces)["n_faces"]}) is None:
                rep.write()
                return 1
        else:
            rep.summary["parts"]["data"] = {"prepared": data}
        rep.part("training", lambda: train_throughput(data, work, cuda), need_s=60)
        checkpoint = work / "train_b256" / "last.pt"
        crops = real_crops()
        if crops is None:  # centre crops of the prepared set's validation faces
            from train.prepare import load_prepared

            p = load_prepared(data)
            crops = p.crops[p.val][:64, 12:108, 12:108].copy()
            rep.summary["crops"] = f"{len(crops)} synthetic/prepared validation crops (no ../shared/data here)"
        else:
            rep.summary["crops"] = f"{len(crops)} real YTF crops"
        rep.part("host_syncs", lambda: host_syncs(data), need_s=20)

        def need_checkpoint() -> str:
            if not checkpoint.is_file():
                raise Skip("no checkpoint (the training part did not finish)")
            return str(checkpoint)

        rep.part("fp16_vs_fp32", lambda: fp16_vs_fp32(need_checkpoint(), crops, work, cuda), need_s=30)
        rep.part("torch_bench", lambda: torch_bench(need_checkpoint(), crops, cuda, args.bench_seconds), need_s=30)
        rep.part("tensorrt", lambda: tensorrt_part(work, crops, args.bench_seconds), need_s=90)
        rep.part("cuda_tests", lambda: cuda_tests(cuda, rep.left() - 10))
    rep.log(f"done in {rep.summary['total_seconds']} s; skipped: {sorted(rep.summary['skipped'])}; "
            f"failed: {sorted(rep.summary['failed'])}")
    rep.write()
    return 1 if rep.summary["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
