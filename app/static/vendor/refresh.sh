#!/usr/bin/env bash
# Updates the pinned ONNX Runtime Web files that the repository carries in
# app/static/vendor/onnxruntime-web/ (app/browser_webcam.py serves them; the browser never reaches a
# CDN, and a clone or a Space needs no npm step at run time). Only the 6 files the page loads are
# kept (measured: docs/BROWSER_WEBCAM.md), the two WASM binaries gzipped: 9.1 MB in all.
#   bash app/static/vendor/refresh.sh        # then git add app/static/vendor/onnxruntime-web
# Needs npm (the npm registry). To move to another version: change VERSION and INTEGRITY
# (npm view onnxruntime-web@X dist.integrity), run this, rerun tests/test_browser_webcam.py and the
# fps benchmark (docs/BROWSER_WEBCAM.md), update ORT_WEB_VERSION in app/browser_webcam.py, and
# commit the folder.
set -euo pipefail
VERSION=1.23.2
INTEGRITY=sha512-T09JUtMn+CZLk3mFwqiH0lgQf+4S7+oYHHtk6uhaYAAJI95bTcKi5bOOZYwORXfS/RLZCjDDEXGWIuOCAFlEjg==
WASM_FILES="ort.wasm.min.mjs ort-wasm-simd-threaded.mjs ort-wasm-simd-threaded.wasm"
WEBGPU_FILES="ort.min.mjs ort-wasm-simd-threaded.jsep.mjs ort-wasm-simd-threaded.jsep.wasm"
FILES="$WASM_FILES $WEBGPU_FILES"

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
for f in "$DEST"/*.wasm; do gzip -9 -n "$f"; done  # stored and sent gzipped (4x smaller); the server
                                                  # decompresses for a browser that refuses gzip
cp "$TMP/package/package.json" "$DEST/package.json"  # MIT licence, version, repository
echo "onnxruntime-web@$VERSION $INTEGRITY" > "$DEST/VERSION"
du -ch "$DEST"/* | tail -n 1 | sed "s|total|in $DEST|"
