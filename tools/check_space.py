"""Check a Hugging Face Space folder before it is pushed (exit 1 with one line per problem):

    python tools/check_space.py /tmp/space [--python /tmp/spacevenv/bin/python]

- README.md front matter: sdk gradio, app_file present, sdk_version = the gradio pin, and a licence
  that does not call research-only weights MIT (license: other + license_link to a shipped file).
- requirements.txt: installs on a CPU Space: no torch / CUDA wheels, onnxruntime (not -gpu).
- Files: every file over 10 MiB and every binary file matches an LFS pattern of .gitattributes
  (the Hub refuses them otherwise); no symlinks; no research data (../shared, faces68, .pts /
  .jsonl label files) and no images outside app/examples and docs.
- Models: each weights/<stem>.json has its <stem>.onnx (the Space has no torch to run it otherwise) and
  the shape prior it names (core.shape_prior).
- In-browser webcam: where the folder has app/browser_webcam.py, every file of its page
  (app.browser_webcam.page_files: HTML/JS, detector, ONNX Runtime Web) is there.
- --python PY: with that interpreter (a venv made from the Space's requirements.txt), load the
  folder's models through ONNX Runtime, build the app and answer one /landmarks call, and fail if
  torch was imported."""
from __future__ import annotations

import argparse
import fnmatch
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from core.shape_prior import META_KEY as PRIOR_KEY  # noqa: E402 (after the path setup)

LFS_LIMIT = 10 * 2**20  # bytes: larger files must go through LFS / Xet
FORBIDDEN_REQUIREMENTS = ("torch", "torchvision", "onnxruntime-gpu", "nvidia-", "tensorflow")
DATA_MARKERS = ("shared/data", "faces68")
LABEL_SUFFIXES = (".pts", ".jsonl", ".mat")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
IMAGE_DIRS = ("app/examples/", "docs/")


def front_matter(readme: Path) -> dict[str, str]:
    text = readme.read_text(errors="replace") if readme.is_file() else ""
    m = re.match(r"---\n(.*?)\n---\n", text, re.S)
    if not m:
        return {}
    return {k.strip(): v.strip().strip('"') for k, _, v in (line.partition(":") for line in m.group(1).splitlines())
            if k.strip() and not k.startswith("#")}


def lfs_patterns(folder: Path) -> list[str]:
    f = folder / ".gitattributes"
    lines = f.read_text().splitlines() if f.is_file() else []
    return [ln.split()[0] for ln in lines if "filter=lfs" in ln and not ln.lstrip().startswith("#")]


def is_binary(path: Path) -> bool:
    with open(path, "rb") as fh:
        return b"\0" in fh.read(8192)


def requirement_names(req: Path) -> list[str]:
    names = []
    for line in req.read_text().splitlines() if req.is_file() else []:
        line = line.split("#")[0].strip()
        if line and not line.startswith("-"):
            names.append(re.split(r"[<>=!~\[; ]", line, maxsplit=1)[0].lower())
    return names


def check(folder: Path) -> list[str]:
    """Problems of the folder as readable lines (empty: ready to push)."""
    folder = Path(folder)
    problems: list[str] = []
    fm = front_matter(folder / "README.md")
    reqs = requirement_names(folder / "requirements.txt")
    if not fm:
        problems.append("README.md: no front matter (--- ... ---) at the top: the Space has no configuration")
    else:
        if fm.get("sdk") != "gradio":
            problems.append(f"README.md front matter: sdk is {fm.get('sdk')!r}, expected 'gradio'")
        if not (folder / fm.get("app_file", "")).is_file() or not fm.get("app_file"):
            problems.append(f"README.md front matter: app_file {fm.get('app_file')!r} is not in the folder")
        pin = re.search(r"^gradio==([\w.]+)", (folder / "requirements.txt").read_text() if reqs else "", re.M)
        if pin and fm.get("sdk_version") != pin.group(1):
            problems.append(f"README.md front matter: sdk_version {fm.get('sdk_version')} but requirements pin "
                            f"gradio=={pin.group(1)}")
        lic = fm.get("license", "")
        if any((folder / "weights").glob("*.json")) and lic.lower() in ("mit", "apache-2.0", "bsd-3-clause", ""):
            problems.append(f"README.md front matter: license {lic!r} for weights trained on research-only data; "
                            "use 'other' with license_name / license_link (code MIT, weights research only)")
        if lic == "other" and not (folder / fm.get("license_link", "")).is_file():
            problems.append(f"README.md front matter: license_link {fm.get('license_link')!r} is not in the folder")
    if not reqs:
        problems.append("requirements.txt: missing or empty")
    for name in reqs:
        if any(name == bad or (bad.endswith("-") and name.startswith(bad)) for bad in FORBIDDEN_REQUIREMENTS):
            problems.append(f"requirements.txt: {name} does not belong on a CPU Space (CUDA builds, GBs; the app "
                            "runs on ONNX Runtime)")
    if reqs and "onnxruntime" not in reqs:
        problems.append("requirements.txt: onnxruntime (CPU) is missing")
    patterns = lfs_patterns(folder)
    total = 0
    for f in sorted(p for p in folder.rglob("*") if ".git" not in p.relative_to(folder).parts):
        rel = f.relative_to(folder).as_posix()
        if f.is_symlink():
            problems.append(f"{rel}: a symlink (the push would not carry its target)")
            continue
        if not f.is_file():
            continue
        size = f.stat().st_size
        total += size
        in_lfs = any(fnmatch.fnmatch(f.name, p) or fnmatch.fnmatch(rel, p) for p in patterns)
        if size > LFS_LIMIT and not in_lfs:
            problems.append(f"{rel}: {size / 2**20:.1f} MiB and not in LFS (.gitattributes); the Hub refuses "
                            f"files over {LFS_LIMIT // 2**20} MiB outside LFS/Xet")
        elif not in_lfs and is_binary(f):
            problems.append(f"{rel}: a binary file not in LFS (.gitattributes); the Hub refuses binary files "
                            "outside LFS/Xet")
        if any(m in rel for m in DATA_MARKERS) or f.suffix.lower() in LABEL_SUFFIXES:
            problems.append(f"{rel}: looks like research data (../shared, faces68, label files): never ship it")
        if f.suffix.lower() in IMAGE_SUFFIXES and not rel.startswith(IMAGE_DIRS):
            problems.append(f"{rel}: an image outside {', '.join(IMAGE_DIRS)}: only the shipped examples and "
                            "docs may be pushed (check its licence)")
    for meta in sorted((folder / "weights").glob("*.json")):
        stem = meta.with_suffix("")
        try:
            info = json.loads(meta.read_text())
        except ValueError:
            problems.append(f"weights/{meta.name}: not valid JSON")
            continue
        if "input_size" not in info:  # not a model's metadata (e.g. the shape prior a model names)
            continue
        prior = info.get(PRIOR_KEY)
        if prior and not (folder / "weights" / prior).is_file():
            problems.append(f"weights/{prior} is missing: weights/{meta.name} names it as its shape prior "
                            "(python tools/build_space.py copies it)")
        if not stem.with_suffix(".onnx").is_file() and "torch" not in reqs:
            problems.append(f"weights/{stem.name}.onnx is missing: without torch the Space cannot run "
                            f"{stem.name} (python -m core.export_onnx --weights {stem.name}.safetensors)")
    if (folder / "app" / "browser_webcam.py").is_file():
        from app.browser_webcam import page_files

        for rel in page_files():
            if not (folder / rel).is_file():
                problems.append(f"{rel} is missing: the in-browser webcam tab cannot run without it "
                                "(python tools/build_space.py copies it from the repository)")
    if total > 1024 * 2**20:
        problems.append(f"the folder holds {total / 2**30:.2f} GiB; a Space repository should stay well under 1 GiB")
    return problems


SMOKE = r"""
import sys, json
sys.path.insert(0, '.')
from app.ui import build_demo, load_models
from core.checkpoint import DEFAULT_WEIGHTS, FC_WEIGHTS
models = load_models(DEFAULT_WEIGHTS, FC_WEIGHTS, backend='onnx', webcam_slots=1)
demo = build_demo(models=models)
res = demo.landmark_app.api_landmarks('app/examples/astronaut.jpg')
assert 'torch' not in sys.modules, 'torch was imported'
print(json.dumps({'faces': len(res['faces']), 'provider': res['provider'], 'latency_ms': res['latency_ms']}))
"""


def smoke(folder: Path, python: str) -> list[str]:
    """Run the app's models in `python` (a venv from the Space's requirements) inside the folder."""
    r = subprocess.run([python, "-c", SMOKE], cwd=folder, capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        return [f"smoke test with {python} failed: {(r.stderr or r.stdout).strip().splitlines()[-1:]}"]
    print("smoke test:", r.stdout.strip().splitlines()[-1])
    return []


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder")
    ap.add_argument("--python", help="interpreter of a venv made from the folder's requirements.txt: smoke test")
    args = ap.parse_args(argv)
    folder = Path(args.folder)
    if not folder.is_dir():
        print(f"error: {folder} is not a folder", file=sys.stderr)
        return 2
    problems = check(folder)
    if args.python and not problems:
        problems += smoke(folder, args.python)
    for p in problems:
        print("problem:", p)
    print("ready to push" if not problems else f"{len(problems)} problem(s): fix them before pushing")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
