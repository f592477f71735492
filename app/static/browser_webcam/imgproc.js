// Crops the way core/inference.py does (port of core.landmarks.crop_from_box / crop_matrix and
// core.inference.warp_crop): a square of side CROP_SCALE x the larger box side centred on the box,
// bilinear like cv2.warpAffine (zero border, 1/32 px sub-pixel grid); when the crop shrinks the
// image more than 2x the region is first reduced by area averaging (cv2.INTER_AREA).
export const CROP_SCALE = 1.3;
export const ANTIALIAS_BELOW = 0.5;
const INTER_TAB = 32; // cv2 warpAffine: source coordinates are rounded to 1/32 px

/** Python's round(): half to even (used for the reduced region's size). */
export function roundHalfEven(x) {
  const r = Math.round(x);
  return (Math.abs(x % 1) === 0.5 && r % 2 !== 0) ? r - 1 : r;
}

/** (cx, cy, side) of the square crop around box [x0, y0, x1, y1]. */
export function cropFromBox(box, scale = CROP_SCALE) {
  const [x0, y0, x1, y1] = box;
  return [(x0 + x1) / 2, (y0 + y1) / 2, scale * Math.max(x1 - x0, y1 - y0, 1.0)];
}

/** 2x3 affine image->crop, u = s R (x - c) + (S - 1) / 2, s = S / side, R = rotation by angleDeg
 * (core.landmarks.crop_matrix; row-major [a, b, c, d, e, f]). */
export function cropMatrix(cx, cy, side, size, angleDeg = 0) {
  const s = size / side, half = (size - 1) / 2, a = angleDeg * Math.PI / 180;
  const r00 = Math.cos(a) * s, r01 = -Math.sin(a) * s, r10 = Math.sin(a) * s, r11 = Math.cos(a) * s;
  return [r00, r01, half - (r00 * cx + r01 * cy), r10, r11, half - (r10 * cx + r11 * cy)];
}

export function invertAffine(m) {
  const [a, b, tx, c, d, ty] = m;
  const det = a * d - b * c;
  const ia = d / det, ib = -b / det, ic = -c / det, id = a / det;
  return [ia, ib, -(ia * tx + ib * ty), ic, id, -(ic * tx + id * ty)];
}

/** cv2.warpAffine(INTER_LINEAR, BORDER_CONSTANT 0) of an RGBA/RGB image into `out` (Float32Array,
 * CHW planes at `offset`, values scaled by `gain`), for the image->crop matrix m. */
function warpInto(img, m, size, out, offset, gain) {
  const { data, width: w, height: h } = img;
  const ch = img.channels || 4;
  const inv = invertAffine(m);
  const plane = size * size;
  for (let v = 0; v < size; v++) {
    for (let u = 0; u < size; u++) {
      const X = Math.round((inv[0] * u + inv[1] * v + inv[2]) * INTER_TAB);
      const Y = Math.round((inv[3] * u + inv[4] * v + inv[5]) * INTER_TAB);
      const x0 = X >> 5, y0 = Y >> 5;
      const fx = (X & 31) / INTER_TAB, fy = (Y & 31) / INTER_TAB;
      let r = 0, g = 0, b = 0;
      for (let k = 0; k < 4; k++) {
        const xx = x0 + (k & 1), yy = y0 + (k >> 1);
        if (xx < 0 || yy < 0 || xx >= w || yy >= h) continue;
        const wgt = ((k & 1) ? fx : 1 - fx) * ((k >> 1) ? fy : 1 - fy);
        if (wgt === 0) continue;
        const p = (yy * w + xx) * ch;
        r += wgt * data[p]; g += wgt * data[p + 1]; b += wgt * data[p + 2];
      }
      const o = offset + v * size + u;
      // cv2 rounds the interpolated value to uint8
      out[o] = Math.min(255, Math.round(r)) * gain;
      out[o + plane] = Math.min(255, Math.round(g)) * gain;
      out[o + 2 * plane] = Math.min(255, Math.round(b)) * gain;
    }
  }
}

/** 1-D cv2.INTER_AREA weights: output cell i averages the source interval [i * scale, (i + 1) * scale)
 * (scale = src / dst >= 1): cells start[i] .. start[i + 1] - 1 of (idx, wgt), weights / scale. */
function areaTable(src, dst) {
  const scale = src / dst, start = new Int32Array(dst + 1), idx = [], wgt = [];
  for (let i = 0; i < dst; i++) {
    start[i] = idx.length;
    const a = i * scale, b = Math.min((i + 1) * scale, src);
    for (let j = Math.floor(a); j < Math.ceil(b) && j < src; j++) {
      const v = Math.min(b, j + 1) - Math.max(a, j);
      if (v > 1e-9) { idx.push(j); wgt.push(v / scale); }
    }
  }
  start[dst] = idx.length;
  return { start, idx: Int32Array.from(idx), wgt: Float64Array.from(wgt) };
}

/** cv2.resize(img[y0:y1, x0:x1], (rw, rh), INTER_AREA) -> {data (RGB uint8), width, height, channels: 3}. */
function areaResize(img, x0, y0, x1, y1, rw, rh) {
  const ch = img.channels || 4, w = img.width, sw = x1 - x0, sh = y1 - y0, src = img.data;
  const tx = areaTable(sw, rw), ty = areaTable(sh, rh);
  const rows = new Float64Array(sh * rw * 3); // horizontal pass
  for (let y = 0; y < sh; y++) {
    const base = ((y0 + y) * w + x0) * ch;
    for (let u = 0; u < rw; u++) {
      let r = 0, g = 0, b = 0;
      for (let c = tx.start[u], e = tx.start[u + 1]; c < e; c++) {
        const p = base + tx.idx[c] * ch, v = tx.wgt[c];
        r += v * src[p]; g += v * src[p + 1]; b += v * src[p + 2];
      }
      const o = (y * rw + u) * 3;
      rows[o] = r; rows[o + 1] = g; rows[o + 2] = b;
    }
  }
  const out = new Uint8ClampedArray(rw * rh * 3); // vertical pass; rounds like cv2 (half to even)
  for (let v = 0; v < rh; v++) {
    for (let u = 0; u < rw; u++) {
      let r = 0, g = 0, b = 0;
      for (let c = ty.start[v], e = ty.start[v + 1]; c < e; c++) {
        const p = (ty.idx[c] * rw + u) * 3, k = ty.wgt[c];
        r += k * rows[p]; g += k * rows[p + 1]; b += k * rows[p + 2];
      }
      const o = (v * rw + u) * 3;
      out[o] = roundHalfEven(r); out[o + 1] = roundHalfEven(g); out[o + 2] = roundHalfEven(b);
    }
  }
  return { data: out, width: rw, height: rh, channels: 3 };
}

function applyAffine(m, x, y) {
  return [m[0] * x + m[1] * y + m[2], m[3] * x + m[4] * y + m[5]];
}

/** core.inference.warp_crop into `out` (Float32Array CHW at offset, x gain). img: {data, width,
 * height, channels (4 for ImageData)}. */
export function warpCrop(img, m, size, out, offset = 0, gain = 1 / 255) {
  const s = Math.hypot(m[0], m[3]);
  if (s >= ANTIALIAS_BELOW) return warpInto(img, m, size, out, offset, gain);
  const w = img.width, h = img.height, inv = invertAffine(m);
  const cs = [[-1, -1], [size, -1], [-1, size], [size, size]].map(([u, v]) => applyAffine(inv, u, v));
  const xs = cs.map((c) => c[0]), ys = cs.map((c) => c[1]);
  const x0 = Math.max(Math.floor(Math.min(...xs)) - 1, 0), y0 = Math.max(Math.floor(Math.min(...ys)) - 1, 0);
  const x1 = Math.min(Math.ceil(Math.max(...xs)) + 2, w), y1 = Math.min(Math.ceil(Math.max(...ys)) + 2, h);
  if (x1 - x0 < 2 || y1 - y0 < 2) {
    for (let i = 0; i < 3 * size * size; i++) out[offset + i] = 0;
    return;
  }
  const rw = Math.max(1, roundHalfEven((x1 - x0) * s)), rh = Math.max(1, roundHalfEven((y1 - y0) * s));
  const small = areaResize(img, x0, y0, x1, y1, rw, rh);
  const fx = rw / (x1 - x0), fy = rh / (y1 - y0);
  // small pixel u -> image x = (u + 0.5) / fx - 0.5 + x0 (cv2.resize's pixel-centre convention)
  const t = [1 / fx, 0, 0.5 / fx - 0.5 + x0, 0, 1 / fy, 0.5 / fy - 0.5 + y0];
  const m2 = [m[0] * t[0] + m[1] * t[3], m[0] * t[1] + m[1] * t[4], m[0] * t[2] + m[1] * t[5] + m[2],
              m[3] * t[0] + m[4] * t[3], m[3] * t[1] + m[4] * t[4], m[3] * t[2] + m[4] * t[5] + m[5]];
  warpInto(small, m2, size, out, offset, gain);
}
