// BlazeFace, MediaPipe's two face detectors (face_detection_short_range.tflite, and the full-range model
// for small and distant faces; converted to ONNX by models/convert_*.py) run by ONNX Runtime Web;
// decoding as in MediaPipe's face_detection graphs (SSD anchors, sigmoid scores, weighted NMS at IoU
// 0.3, letterbox removal), then the calibration to a landmark box and NMS of
// core.detectors.MediaPipeDetector("both"), video mode's: both models on every call (the full-range
// one loaded on the first), their boxes merged by NMS on score.
import { MP_FULL_CALIBRATION, MP_SHORT_CALIBRATION, applyCalibration, nms } from "./boxes.js";

export const MIN_SCORE = 0.5; // core.detectors.MP_MIN_SCORE
const SUPPRESSION_IOU = 0.3;

function gridAnchors(layers) {
  // [cells per side, anchors per cell] per feature map; anchor centres in [0, 1], fixed size
  const a = [];
  for (const [fm, n] of layers) {
    for (let y = 0; y < fm; y++) for (let x = 0; x < fm; x++) for (let k = 0; k < n; k++) a.push([(x + 0.5) / fm, (y + 0.5) / fm]);
  }
  return a;
}

/** The two models: input side, anchors (short: strides 8, 16, 16, 16; full: one stride-4 map), the
 * graph's own candidate threshold (before NMS), and the landmark-box calibration. */
export const BLAZEFACE = {
  short: { size: 128, anchors: gridAnchors([[16, 2], [8, 6]]), minScore: MIN_SCORE,
           calibration: MP_SHORT_CALIBRATION, source: "blazeface_short" },
  full: { size: 192, anchors: gridAnchors([[48, 1]]), minScore: 0.6,
          calibration: MP_FULL_CALIBRATION, source: "blazeface_full" },
};

function iou(a, b) {
  const ix = Math.max(0, Math.min(a[2], b[2]) - Math.max(a[0], b[0]));
  const iy = Math.max(0, Math.min(a[3], b[3]) - Math.max(a[1], b[1]));
  const i = ix * iy, u = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - i;
  return u > 0 ? i / u : 0;
}

/** MediaPipe's weighted NMS: each group overlapping the best remaining box is averaged, weighted by score. */
function weightedNms(cands) {
  let rest = [...cands].sort((p, q) => q.score - p.score);
  const out = [];
  while (rest.length) {
    const top = rest[0], grp = [], keep = [];
    for (const c of rest) (iou(top.box, c.box) > SUPPRESSION_IOU ? grp : keep).push(c);
    const sw = grp.reduce((s, c) => s + c.score, 0);
    const box = [0, 1, 2, 3].map((k) => grp.reduce((s, c) => s + c.score * c.box[k], 0) / sw);
    out.push({ box, score: top.score });
    rest = keep;
  }
  return out;
}

/** One BlazeFace model (a spec of BLAZEFACE) on an ONNX Runtime session. */
class BlazeFace {
  constructor(ort, session, spec) {
    Object.assign(this, { ort, session, spec });
    this.input = new Float32Array(3 * spec.size * spec.size);
  }

  /** Letterboxed S x S input in [-1, 1] (MediaPipe's ImageToTensor: tensor pixel u <- image x = (u - pad) / s). */
  prepare(img) {
    const S = this.spec.size, { data, width: w, height: h } = img, ch = img.channels || 4;
    const s = Math.min(S / w, S / h), pl = (S - w * s) / 2, pt = (S - h * s) / 2, plane = S * S;
    for (let v = 0; v < S; v++) {
      const y = (v - pt) / s, y0 = Math.floor(y), fy = y - y0;
      for (let u = 0; u < S; u++) {
        const x = (u - pl) / s, x0 = Math.floor(x), fx = x - x0;
        let r = 0, g = 0, b = 0;
        for (let k = 0; k < 4; k++) {
          const xx = x0 + (k & 1), yy = y0 + (k >> 1);
          if (xx < 0 || yy < 0 || xx >= w || yy >= h) continue;
          const wgt = ((k & 1) ? fx : 1 - fx) * ((k >> 1) ? fy : 1 - fy), p = (yy * w + xx) * ch;
          r += wgt * data[p]; g += wgt * data[p + 1]; b += wgt * data[p + 2];
        }
        const o = v * S + u;
        this.input[o] = Math.round(r) / 127.5 - 1;
        this.input[o + plane] = Math.round(g) / 127.5 - 1;
        this.input[o + 2 * plane] = Math.round(b) / 127.5 - 1;
      }
    }
    return { s, pl, pt, nw: w * s, nh: h * s };
  }

  /** Raw boxes in image pixels (pixel centres at integers) with scores. */
  async detectRaw(img) {
    const { size: S, anchors, minScore } = this.spec, lb = this.prepare(img);
    const res = await this.session.run({ input: new this.ort.Tensor("float32", this.input, [1, 3, S, S]) });
    const reg = res.regressors.data, cls = res.classificators.data, cands = [];
    for (let i = 0; i < anchors.length; i++) {
      const score = 1 / (1 + Math.exp(-Math.max(-100, Math.min(100, cls[i]))));
      if (score < minScore) continue;
      const cx = reg[i * 16] / S + anchors[i][0], cy = reg[i * 16 + 1] / S + anchors[i][1];
      const bw = reg[i * 16 + 2] / S, bh = reg[i * 16 + 3] / S;
      cands.push({ box: [cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], score });
    }
    const { width: w, height: h } = img;
    return weightedNms(cands).map(({ box, score }) => {
      const fx0 = (box[0] * S - lb.pl) / lb.nw, fx1 = (box[2] * S - lb.pl) / lb.nw;
      const fy0 = (box[1] * S - lb.pt) / lb.nh, fy1 = (box[3] * S - lb.pt) / lb.nh;
      return { box: [fx0 * w - 0.5, fy0 * h - 0.5, fx1 * w - 0.5, fy1 * h - 0.5], score };
    }).filter((d) => d.box[2] > d.box[0] && d.box[3] > d.box[1]);
  }

  /** Detections with the landmark-box estimate (before NMS). */
  async calibrated(img) {
    const { calibration, source } = this.spec;
    return (await this.detectRaw(img)).map((d) => ({ box: applyCalibration(calibration, d.box), score: d.score,
                                                     rawBox: d.box, source }));
  }

  async detect(img) {
    return nms(await this.calibrated(img));
  }
}

export class FaceDetector {
  /** short: a BlazeFace short-range session; fullUrl: the full-range model, created on first use (null: none). */
  constructor(ort, session, fullUrl = null, options = {}) {
    Object.assign(this, { ort, fullUrl, options });
    this.short = new BlazeFace(ort, session, BLAZEFACE.short);
    this.full = null;
    this.ms = 0;
  }

  static async create(ort, url, options, fullUrl = null) {
    return new FaceDetector(ort, await ort.InferenceSession.create(url, options), fullUrl, options);
  }

  /** The full-range model (a promise, made once); null when there is none or it could not load. */
  fullRange() {
    if (!this.full && this.fullUrl) {
      this.full = this.ort.InferenceSession.create(this.fullUrl, this.options)
        .then((s) => new BlazeFace(this.ort, s, BLAZEFACE.full))
        .catch((e) => { console.warn(`full-range face detector not loaded: ${e.message || e}`); return null; });
    }
    return this.full;
  }

  /** core.detectors.MediaPipeDetector("both").detect: both models, their boxes merged by NMS on score. */
  async detect(img) {
    const t0 = performance.now();
    let dets = await this.short.calibrated(img);
    const full = await this.fullRange();
    if (full) dets = dets.concat(await full.calibrated(img));
    this.ms = performance.now() - t0;
    return nms(dets);
  }
}
