// BlazeFace short range (the model MediaPipe's face_detection_short_range.tflite, converted to ONNX:
// models/README.md) run by ONNX Runtime Web; decoding as in MediaPipe's face_detection graph
// (SSD anchors, sigmoid scores >= 0.5, weighted NMS at IoU 0.3, letterbox removal), then the
// calibration to a landmark box and NMS of core.detectors.MediaPipeDetector.
import { MP_SHORT_CALIBRATION, applyCalibration, nms } from "./boxes.js";

export const DETECTOR_SIZE = 128;
export const MIN_SCORE = 0.5; // core.detectors.MP_MIN_SCORE
const SUPPRESSION_IOU = 0.3;

function ssdAnchors() {
  // strides 8, 16, 16, 16 -> a 16x16 grid with 2 anchors per cell, an 8x8 grid with 6; fixed size
  const a = [];
  for (const [fm, n] of [[16, 2], [8, 6]]) {
    for (let y = 0; y < fm; y++) for (let x = 0; x < fm; x++) for (let k = 0; k < n; k++) a.push([(x + 0.5) / fm, (y + 0.5) / fm]);
  }
  return a;
}
const ANCHORS = ssdAnchors();

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

export class FaceDetector {
  constructor(ort, session) {
    this.ort = ort; this.session = session;
    this.input = new Float32Array(3 * DETECTOR_SIZE * DETECTOR_SIZE);
    this.ms = 0;
  }

  static async create(ort, url, options) {
    return new FaceDetector(ort, await ort.InferenceSession.create(url, options));
  }

  /** Letterboxed 128x128 input in [-1, 1] (MediaPipe's ImageToTensor: tensor pixel u <- image x = (u - pad) / s). */
  prepare(img) {
    const S = DETECTOR_SIZE, { data, width: w, height: h } = img, ch = img.channels || 4;
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

  /** Raw BlazeFace boxes in image pixels (pixel centres at integers) with scores. */
  async detectRaw(img) {
    const S = DETECTOR_SIZE, lb = this.prepare(img), t0 = performance.now();
    const res = await this.session.run({ input: new this.ort.Tensor("float32", this.input, [1, 3, S, S]) });
    this.ms = performance.now() - t0;
    const reg = res.regressors.data, cls = res.classificators.data, cands = [];
    for (let i = 0; i < ANCHORS.length; i++) {
      const score = 1 / (1 + Math.exp(-Math.max(-100, Math.min(100, cls[i]))));
      if (score < MIN_SCORE) continue;
      const cx = reg[i * 16] / S + ANCHORS[i][0], cy = reg[i * 16 + 1] / S + ANCHORS[i][1];
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

  /** Detections with the landmark-box estimate (core.detectors.MediaPipeDetector.detect, short range). */
  async detect(img) {
    const raw = await this.detectRaw(img);
    return nms(raw.map((d) => ({ box: applyCalibration(MP_SHORT_CALIBRATION, d.box), score: d.score,
                                 rawBox: d.box, source: "blazeface_short" })));
  }
}
