"""Assemble a Hugging Face Space folder from this repository (then check it with
tools/check_space.py and push the folder):

    python tools/build_space.py /tmp/space          # models: core.checkpoint's DEFAULT / FC / FAST
    python tools/check_space.py /tmp/space [--python /tmp/spacevenv/bin/python]

The Space gets the app and package code, README.md (its front matter configures the Space),
LICENSE, the example photos, the docs and screenshots, the benchmark result JSON files the
Benchmark tab reads, the in-browser webcam page with its detector and ONNX Runtime Web
(app.browser_webcam.page_files: no npm step on the Space), and for each model `<stem>.json`,
`.onnx` and `.int8.onnx` (`.safetensors` only for a model without an ONNX export: the Space has no torch).
Its requirements.txt is space/requirements.txt (ONNX Runtime CPU, no torch): the app runs every
model from its ONNX export. .gitattributes (space/.gitattributes) sends weights and images
through LFS / Xet. Nothing from ../shared is copied (only the listed paths of this repository)."""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from core.runners import onnx_path_for  # noqa: E402 (after the path setup)
from core.shape_prior import META_KEY as PRIOR_KEY  # noqa: E402

CODE_DIRS = ("app", "core")  # *.py files, recursively
FILES = ("launch_app.py", "README.md", "LICENSE", "packages.txt")
DATA_GLOBS = ("app/examples/*.jpg", "app/examples/*.md", "docs/*.md", "docs/*.png", "docs/screenshots/*.png",
              "benchmarks/results/*.json")
MODEL_SUFFIXES = (".json", ".safetensors", ".onnx", ".int8.onnx")


def default_models() -> list[Path]:
    """The models the app loads (launch_app.py's defaults: the flagship and its FC baseline) plus the
    fast tier (the in-browser webcam offers the flagship's and the fast tier's exports)."""
    from core.checkpoint import DEFAULT_WEIGHTS, FAST_WEIGHTS, FC_WEIGHTS

    return [DEFAULT_WEIGHTS, FC_WEIGHTS, FAST_WEIGHTS]


def space_files(models: list[Path], root: Path = ROOT) -> dict[str, Path]:
    """{path in the Space: source file}."""
    from app.browser_webcam import page_files

    out: dict[str, Path] = {}
    for d in CODE_DIRS:
        for f in sorted((root / d).rglob("*.py")):
            out[str(f.relative_to(root))] = f
    for name in FILES:
        if (root / name).is_file():
            out[name] = root / name
    for rel in page_files():  # the in-browser webcam: page, detector, ONNX Runtime Web
        if (root / rel).is_file():
            out[rel] = root / rel
    for pattern in DATA_GLOBS:
        for f in sorted(root.glob(pattern)):
            out[str(f.relative_to(root))] = f
    for m in models:
        stem = Path(m).with_suffix("") if Path(m).suffix in (".safetensors", ".json") else Path(m)
        onnx_only = onnx_path_for(stem).is_file()  # the Space runs ONNX Runtime, no torch (has_tensors_or_onnx)
        for suffix in MODEL_SUFFIXES:
            f = stem.parent / (stem.name + suffix)
            if f.is_file() and not (onnx_only and suffix == ".safetensors"):
                out[f"weights/{f.name}"] = f
        js = stem.parent / (stem.name + ".json")
        prior = json.loads(js.read_text()).get(PRIOR_KEY) if js.is_file() else None
        if prior and (stem.parent / prior).is_file():  # the shape prior the model's JSON names
            out[f"weights/{prior}"] = stem.parent / prior
    out["requirements.txt"] = root / "space" / "requirements.txt"
    out[".gitattributes"] = root / "space" / ".gitattributes"
    return out


def build(out: Path, models: list[Path] | None = None, root: Path = ROOT) -> list[str]:
    """Copy the Space's files into `out` (emptied first if it holds an earlier build)."""
    out = Path(out)
    if out.exists():
        if any(out.iterdir()) and not (out / "launch_app.py").is_file():
            raise SystemExit(f"error: {out} is not empty and not an earlier Space build; choose another folder")
        shutil.rmtree(out)
    files = space_files(default_models() if models is None else models, root)
    for rel, src in files.items():
        dst = out / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)
    return sorted(files)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", help="folder to write (the Space repository's working tree)")
    ap.add_argument("--models", nargs="*", default=None,
                    help="model weights (<stem>.safetensors) to ship; default: core.checkpoint's models")
    args = ap.parse_args(argv)
    files = build(Path(args.out), [Path(m) for m in args.models] if args.models is not None else None)
    size = sum((Path(args.out) / f).stat().st_size for f in files)
    print(f"{len(files)} files, {size / 2**20:.1f} MiB in {args.out}; now: python tools/check_space.py {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
