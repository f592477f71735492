#!/usr/bin/env bash
# Installs the pinned ONNX Runtime Web files the in-browser webcam page loads (app/browser_webcam.py
# serves them from app/static/vendor/onnxruntime-web/; the browser never reaches a CDN).
#   bash app/static/vendor/refresh.sh            # WASM build (~12 MB) and WebGPU build (~24 MB)
#   bash app/static/vendor/refresh.sh --wasm-only
# Needs npm (the npm registry). To move to another version: change VERSION and INTEGRITY
# (npm view onnxruntime-web@X dist.integrity), run this, rerun tests/test_browser_webcam.py and the
# fps benchmark (docs/BROWSER_WEBCAM.md), and update ORT_WEB_VERSION in app/browser_webcam.py.
set -euo pipefail
VERSION=1.23.2
INTEGRITY=sha512-T09JUtMn+CZLk3mFwqiH0lgQf+4S7+oYHHtk6uhaYAAJI95bTcKi5bOOZYwORXfS/RLZCjDDEXGWIuOCAFlEjg==
WASM_FILES="ort.wasm.min.mjs ort-wasm-simd-threaded.mjs ort-wasm-simd-threaded.wasm"
WEBGPU_FILES="ort.min.mjs ort-wasm-simd-threaded.jsep.mjs ort-wasm-simd-threaded.jsep.wasm"
FILES="$WASM_FILES $WEBGPU_FILES"
[ "${1:-}" = "--wasm-only" ] && FILES="$WASM_FILES"

HERE="$(cd "$(dirname "$0")" && pwd)"
DEST="$HERE/onnxruntime-web"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
( cd "$TMP" && npm pack --silent "onnxruntime-web@$VERSION" > /dev/null )
TGZ="$TMP/onnxruntime-web-$VERSION.tgz"
GOT="sha512-$(openssl dgst -sha512 -binary "$TGZ" | base64 -w0)"
if [ "$GOT" != "$INTEGRITY" ]; then
  echo "integrity mismatch for onnxruntime-web@$VERSION: got $GOT" >&2
  exit 1
fi
tar -xzf "$TGZ" -C "$TMP"
mkdir -p "$DEST"
rm -f "$DEST"/*
for f in $FILES; do cp "$TMP/package/dist/$f" "$DEST/"; done
for f in "$DEST"/*.wasm; do gzip -9 -k -n "$f"; done  # sent gzipped to browsers that accept it
cp "$TMP/package/package.json" "$DEST/package.json"  # MIT licence, version, repository
echo "onnxruntime-web@$VERSION $INTEGRITY" > "$DEST/VERSION"
du -ch "$DEST"/* | tail -n 1 | sed "s|total|in $DEST|"
