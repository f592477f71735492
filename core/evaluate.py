"""Evaluate a checkpoint on a faces68-format split.

    python -m core.evaluate --data ../shared/data/faces68 --split test --json out.json
        [--weights weights/sdfl_flagship_fc.safetensors] [--occlusion SEED | --blur SEED | --camera SEED]
        [--ced ced.html|ced.png]
    python -m core.evaluate --data ../shared/data/faces68 --split photos_test --protocol photos --json out.json
        [--max-faces N]     # whole photos through the full pipeline (core.photos; docs/PHOTOS.md)

Default protocol: each face is cropped as in training, a square around its ground-truth landmark
box with side CROP_SCALE (1.3) x the box's larger side, resized to the model input. Errors are
measured in the stored image's pixels and normalised by the inter-ocular distance (points 36, 45).
A model whose JSON names a shape prior is scored with it, as FaceAligner runs it (--no-shape-prior: without)."""
from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import sys
from pathlib import Path

import numpy as np
import torch

from .checkpoint import DEFAULT_WEIGHTS, CheckpointError, load_model
from .data import DataError, canonical_crop, load_jsonl, read_image
from .heatmaps import READOUTS
from .landmarks import CROP_SCALE, apply_affine, invert_affine, warp_crop
from .metrics import calibration, ced, summarize
from .mirror import MirrorRunner
from .protocols import CAMERA_CROP, camera_frame, face_rng, hidden_points, motion_blur, occlude
from .shape_prior import prior_for


def protocol_crops(records, size: int, occlusion: int | None = None, blur: int | None = None,
                   camera: int | None = None):
    """Yield (crop, image->crop matrix) per face: the default-protocol crop at `size` px, occluded,
    blurred or made a webcam frame (each seeded per face index) when asked. Shared by every model the
    benchmarks compare. The camera protocol degrades the face at one resolution for every model (the
    CAMERA_CROP px crop: a face ~150 px wide, as a 640 x 480 webcam at arm's length gives it) and then
    resamples it to the model's input."""
    for i, r in enumerate(records):
        m = canonical_crop(r.landmarks, size)
        img = read_image(r.image)
        if camera is not None:  # the frame at the camera's resolution, then resampled as the app does
            cam = canonical_crop(r.landmarks, CAMERA_CROP)
            img = camera_frame(warp_crop(img, cam, CAMERA_CROP), face_rng(camera, i))
            back = invert_affine(cam)  # camera crop -> image, then m: camera crop -> model crop
            crop = warp_crop(img, np.hstack([m[:, :2] @ back[:, :2], apply_affine(m, back[None, :, 2]).T]), size)
        else:
            crop = warp_crop(img, m, size)
        if occlusion is not None:
            crop = occlude(crop, apply_affine(m, r.landmarks), face_rng(occlusion, i))
        if blur is not None:
            crop = motion_blur(crop, face_rng(blur, i))
        yield crop, m


def protocol_hidden(records, size: int, occlusion: int) -> np.ndarray:
    """(faces, points) bool: which landmarks the occlusion protocol (seed `occlusion`) covers in the
    `size` px crops that protocol_crops draws."""
    return np.stack([hidden_points(size, apply_affine(canonical_crop(r.landmarks, size), r.landmarks),
                                   face_rng(occlusion, i)) for i, r in enumerate(records)])


def protocol_batches(model, records, occlusion: int | None = None, blur: int | None = None, device: str = "cpu",
                     batch_size: int = 32, camera: int | None = None):
    """Yield (model output dict, image->crop matrices) per batch of protocol_crops at the model's
    input size. Call it under torch.inference_mode()."""
    crops = protocol_crops(records, model.cfg.input_size, occlusion, blur, camera)
    while chunk := list(itertools.islice(crops, batch_size)):
        batch, mats = zip(*chunk)
        yield model(torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2).float().div(255).to(device)), mats


def crop_to_image(coords: torch.Tensor, mats, size: int) -> list[np.ndarray]:
    """(B, N, 2) coordinates in crop units -> per face (N, 2) pixels of its image, through the inverse
    of its image->crop matrix (mats from protocol_batches)."""
    c = coords.float().cpu().numpy() * size
    return [apply_affine(invert_affine(m), c[j]) for j, m in enumerate(mats)]


@torch.inference_mode()
def predict_records(model, records, occlusion: int | None = None, blur: int | None = None, device: str = "cpu",
                    batch_size: int = 32, prior=None, camera: int | None = None
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(pred, gt, cov) in the stored images' pixels under the default protocol (optionally occluded,
    blurred or a webcam frame); cov is None without an uncertainty head. prior: a core.shape_prior.ShapePrior that
    moves the points to its MAP estimate (models with an uncertainty head; the covariances stay)."""
    size = model.cfg.input_size
    preds, covs = [], []
    for out, mats in protocol_batches(model, records, occlusion, blur, device, batch_size, camera):
        coords = out["coords"]
        if prior is not None and "cov" in out:
            coords = torch.from_numpy(prior.refine(coords.float().cpu().numpy(), out["cov"].float().cpu().numpy()))
        preds += crop_to_image(coords, mats, size)
        if "cov" in out:
            cov = out["cov"].float().cpu().numpy() * size * size
            for j, m in enumerate(mats):
                a = invert_affine(m)[:, :2]
                covs.append(a @ cov[j] @ a.T)
    gts = np.stack([r.landmarks for r in records])
    return np.stack(preds), gts, (np.stack(covs) if covs else None)


def with_readout(model, readout: str):
    """The heatmap or hybrid `model` reading coordinates out with `readout` (core.heatmaps.READOUTS)
    instead of the one it was trained with."""
    if model.cfg.head not in ("heatmap", "hybrid"):
        raise ValueError(f"--readout applies to heatmap and hybrid heads, not to a {model.cfg.head!r} head")
    if readout not in READOUTS:
        raise ValueError(f"unknown read-out {readout!r}; one of {READOUTS}")
    model.cfg = dataclasses.replace(model.cfg, readout=readout)
    return model


class OnnxModel:
    """An exported model (<stem>.onnx or <stem>.int8.onnx) behind the torch model's call: x (B, 3, S, S)
    in [0, 1] -> {"coords", "adjacency"[, "cov"]} tensors; run by ONNX Runtime on the CPU."""

    def __init__(self, weights, precision: str, cfg):
        from .runners import OnnxRunner, onnx_path_for

        path = onnx_path_for(weights or DEFAULT_WEIGHTS, precision)
        if not path.is_file():
            raise CheckpointError(f"{path} not found (python -m core.export_onnx"
                                  f"{' --int8 DATA' if precision == 'int8' else ''})")
        self.runner, self.cfg = OnnxRunner(path, "cpu", 0), cfg

    def __call__(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {k: torch.from_numpy(v) for k, v in self.runner(x.cpu().numpy()).items()}


class MirrorEnsemble:
    """Test-time mirror ensemble around a model of this module (tensor in, tensor dict out): the model
    behind core.mirror.MirrorRunner (crops and mirror images in one batch; 2x cost)."""

    def __init__(self, model):
        self.model, self.cfg, self._device = model, model.cfg, "cpu"
        self._runner = MirrorRunner(self._numpy, model.cfg.input_size)

    def _numpy(self, x: np.ndarray) -> dict[str, np.ndarray]:
        out = self.model(torch.from_numpy(np.ascontiguousarray(x)).to(self._device))
        return {k: v.float().cpu().numpy() for k, v in out.items()}

    def __call__(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        self._device = x.device
        return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in self._runner(x.cpu().numpy()).items()}


def evaluate(weights=None, data: str | Path = "", split: str = "test", occlusion: int | None = None,
             blur: int | None = None, device: str = "cpu", batch_size: int = 32, readout: str | None = None,
             precision: str | None = None, mirror: bool = False, records: list | None = None,
             shape_prior: bool = True, keep_points: bool = False, camera: int | None = None) -> dict:
    """precision None: the torch model; "fp32" / "int8": its ONNX export run by ONNX Runtime;
    mirror: the test-time mirror ensemble (MirrorEnsemble, twice the cost); records: these faces
    instead of the whole split (e.g. a held-out part of it); shape_prior: fuse the points with the
    shape prior the model's JSON names (core.shape_prior), as FaceAligner does; keep_points: the
    predictions too, under "points" ((F, N, 2) image pixels); occlusion / blur / camera: that protocol's seed."""
    if readout and precision:
        raise ValueError("--readout changes the torch model; an ONNX export keeps the read-out it was exported with")
    seeds = {"occlusion": occlusion, "blur": blur, "camera": camera}
    if sum(v is not None for v in seeds.values()) > 1:
        raise ValueError("one protocol at a time: occlusion, blur or camera")
    model, meta = load_model(weights, device)
    prior = prior_for(weights or DEFAULT_WEIGHTS, meta) if shape_prior and model.cfg.uncertainty else None
    if readout:
        with_readout(model, readout)
    if precision:
        model = OnnxModel(weights, precision, model.cfg)
    if mirror:
        model = MirrorEnsemble(model)
    size = model.cfg.input_size
    records = load_jsonl(Path(data) / f"{split}.jsonl") if records is None else records
    pred, gt, cov = predict_records(model, records, occlusion, blur, device, batch_size, prior, camera)
    res = summarize(pred, gt)
    if cov is not None:
        res["calibration"] = calibration(pred, gt, cov)
    if keep_points:
        res["points"] = pred
    protocol = next((k for k, v in seeds.items() if v is not None), "default")
    res.update({"split": split, "data": str(data), "protocol": protocol, "seed": seeds.get(protocol),
                "weights": str(weights or DEFAULT_WEIGHTS), "crop_scale": CROP_SCALE, "input_size": size,
                "model": {**meta.get("model", {}), **({"readout": readout} if readout else {})},
                "runtime": f"onnxruntime {precision}" if precision else "torch", "mirror_ensemble": mirror,
                "shape_prior": prior.info if prior is not None else None,
                "train_data": meta.get("train_data")})
    return res


def write_ced(results: dict[str, dict], path: str | Path, threshold: float = 0.10):
    """CED curves of several results (name -> summarize() output) to HTML (plotly) or PNG."""
    path = Path(path)
    if path.suffix == ".html":
        import plotly.graph_objects as go
        fig = go.Figure()
        for name, r in results.items():
            x, y = ced(r["nme_per_face"], threshold)
            fig.add_scatter(x=x * 100, y=y * 100, name=f"{name} (AUC {r['auc10']:.3f})", mode="lines")
        fig.update_layout(xaxis_title="NME (%)", yaxis_title="faces (%)", title="Cumulative error distribution")
        fig.write_html(str(path), include_plotlyjs="cdn")
    else:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(6, 4.5), dpi=120)
        for name, r in results.items():
            x, y = ced(r["nme_per_face"], threshold)
            ax.plot(x * 100, y * 100, label=f"{name} (AUC@10 {r['auc10']:.3f})")
        ax.set_xlabel("NME, inter-ocular (%)")
        ax.set_ylabel("faces (%)")
        ax.set_xlim(0, threshold * 100)
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
        fig.tight_layout()
        fig.savefig(path)
        plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="folder holding SPLIT.jsonl (faces68 format)")
    ap.add_argument("--split", default="test")
    ap.add_argument("--weights", default=None, help=f"checkpoint (default {DEFAULT_WEIGHTS})")
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--occlusion", type=int, metavar="SEED", help="synthetic-occlusion protocol")
    g.add_argument("--blur", type=int, metavar="SEED", help="synthetic motion-blur protocol")
    g.add_argument("--camera", type=int, metavar="SEED",
                   help="webcam protocol: low light made up by gain, sensor noise, JPEG (core.camera)")
    ap.add_argument("--mirror", action="store_true", help="test-time mirror ensemble (mean with the mirrored crop; 2x cost)")
    ap.add_argument("--no-shape-prior", action="store_true",
                    help="the model's points as they come, without the shape prior its JSON names")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--ced", help="write a CED plot (.html or .png)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--readout", choices=READOUTS, help="heatmap/hybrid heads: read-out instead of the trained one")
    ap.add_argument("--precision", choices=["fp32", "int8"], help="score the ONNX export (<stem>.onnx / "
                    "<stem>.int8.onnx) with ONNX Runtime instead of the torch model")
    ap.add_argument("--protocol", choices=["crops", "photos"], default="crops",
                    help="crops: ground-truth-centred crops (default); photos: whole photos (photos_*.jsonl) "
                    "through detector, model and rejection (core.photos)")
    ap.add_argument("--max-faces", type=int, default=None, help="photos protocol: FaceAligner max_faces")
    args = ap.parse_args(argv)
    if args.protocol == "photos":
        return _main_photos(args)
    try:
        res = evaluate(args.weights, args.data, args.split, args.occlusion, args.blur, args.device,
                       readout=args.readout, precision=args.precision, mirror=args.mirror,
                       shape_prior=not args.no_shape_prior, camera=args.camera)
    except (DataError, CheckpointError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    summary = {k: v for k, v in res.items() if k not in ("nme_per_landmark", "landmark_failure_rate", "nme_per_face", "model")}
    print(json.dumps(summary, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    if args.ced:
        write_ced({Path(res["weights"]).stem + f" ({res['protocol']})": res}, args.ced)
    return 0


def _main_photos(args) -> int:
    from .photos import evaluate_photos

    protocols = (args.occlusion, args.blur, args.camera)
    if any(p is not None for p in protocols) or args.readout or args.precision or args.ced or args.mirror:
        print("error: --protocol photos takes --data, --split, --weights, --device, --max-faces, --json", file=sys.stderr)
        return 2
    try:
        res = evaluate_photos(args.weights, args.data, args.split, args.device, args.max_faces)
    except (DataError, CheckpointError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps({k: v for k, v in res.items() if k not in ("nme_per_face", "per_photo")}, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
