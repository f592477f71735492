"""Model runners: one batched call x (B, 3, S, S) float32 in [0, 1] -> numpy outputs {"coords",
"adjacency"[, "cov"]}, on ONNX Runtime (CPU or CUDA) or torch; where an export lives and whether it is
current; the name of the device that runs it."""
from __future__ import annotations

import platform
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np

def cpu_name() -> str:
    """CPU model from /proc/cpuinfo (Linux), else platform.processor()."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "CPU"


def gpu_name(index: int) -> str:
    exe = shutil.which("nvidia-smi")
    if exe:
        try:
            out = subprocess.run([exe, "--query-gpu=name", "--format=csv,noheader", "-i", str(index)],
                                 capture_output=True, text=True, timeout=10)
            if out.returncode == 0 and out.stdout.strip():
                return out.stdout.strip().splitlines()[0]
        except (OSError, subprocess.SubprocessError):
            pass
    return f"CUDA GPU {index}"


def torch_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def onnx_path_for(weights: str | Path, precision: str = "fp32") -> Path:
    """weights/<stem>.safetensors -> weights/<stem>.onnx (fp32) or weights/<stem>.int8.onnx"""
    from .checkpoint import stem_paths

    return stem_paths(weights)[0].with_suffix(".int8.onnx" if precision == "int8" else ".onnx")


def has_tensors_or_onnx(weights: str | Path, precision: str = "fp32", backend: str = "auto") -> bool:
    """Whether the model's weights are there: <stem>.safetensors, or (ONNX Runtime backends) its ONNX
    export of `precision`, which with <stem>.json is a complete model (a Space ships no safetensors)."""
    from .checkpoint import stem_paths

    return stem_paths(weights)[0].is_file() or (backend != "torch" and onnx_path_for(weights, precision).is_file())


def onnx_current(weights: str | Path, precision: str = "fp32") -> bool:
    """Whether `onnx_path_for(weights, precision)` exists and is not older than the weights, if they are
    there (1 s of slack: a fresh checkout writes both in the same second, in either order)."""
    from .checkpoint import stem_paths

    onnx_file, st_path = onnx_path_for(weights, precision), stem_paths(weights)[0]
    return onnx_file.is_file() and (not st_path.is_file() or onnx_file.stat().st_mtime + 1 >= st_path.stat().st_mtime)


class TorchRunner:
    def __init__(self, weights: Path, device: str, threads: int):
        try:
            import torch
        except ImportError:  # e.g. a Space installed from space/requirements.txt (ONNX only)
            raise RuntimeError(f"{weights.name} has no current ONNX export and torch is not installed: export it "
                               f"(python -m core.export_onnx --weights {weights}) or install torch") from None

        from .checkpoint import load_model

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        dev = torch.device(device)
        if threads > 0:
            torch.set_num_threads(threads)  # process-wide
        self.model, self.meta = load_model(weights, dev)
        self.device, self._torch = dev, torch
        self.provider = f"torch-{dev.type}"
        self.device_name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else cpu_name()
        self.outputs = ["coords", "adjacency"] + (["cov"] if self.model.cfg.uncertainty else [])

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        with self._torch.inference_mode():
            out = self.model(self._torch.from_numpy(x).to(self.device))
        return {k: out[k].float().cpu().numpy() for k in self.outputs}


class OnnxRunner:
    def __init__(self, path: Path, device: str, threads: int):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = max(0, int(threads))  # 0: ORT default (one per physical core)
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        want_cuda = device.startswith("cuda") or (device == "auto" and
                                                  "CUDAExecutionProvider" in ort.get_available_providers())
        gpu = int(device.split(":")[1]) if device.startswith("cuda:") else 0
        providers: list = ["CPUExecutionProvider"]
        if want_cuda:
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": gpu}))
            ort.set_default_logger_severity(4)  # a missing CUDA runtime is reported below, not as log spam
        try:
            self.session = ort.InferenceSession(str(path), so, providers=providers)
            self.path = Path(path)
        except Exception as e:  # onnxruntime raises its own error types
            raise ValueError(f"{path}: ONNX Runtime cannot load it ({e})") from e
        finally:
            if want_cuda:
                ort.set_default_logger_severity(2)
        self.provider = self.session.get_providers()[0]
        if want_cuda and self.provider != "CUDAExecutionProvider" and device != "auto":
            warnings.warn(f"CUDA requested but ONNX Runtime runs on {self.provider} (CUDA/cuDNN libraries missing?)")
        self.device_name = gpu_name(gpu) if self.provider == "CUDAExecutionProvider" else cpu_name()
        self.input_name = self.session.get_inputs()[0].name
        self.outputs = [o.name for o in self.session.get_outputs()]
        if "coords" not in self.outputs or "adjacency" not in self.outputs:
            raise ValueError(f"{path}: outputs {self.outputs}; expected coords, adjacency[, cov] "
                             "(export with python -m core.export_onnx)")
        self.input_shape = self.session.get_inputs()[0].shape

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        res = self.session.run(self.outputs, {self.input_name: np.ascontiguousarray(x, dtype=np.float32)})
        return dict(zip(self.outputs, res))
