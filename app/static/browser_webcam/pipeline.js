// The landmark model in the page: a port of core.inference.FaceAligner. Video mode (the webcam)
// runs core.tracking.VideoTracker (tracking.js) around `run` (FaceAligner._run_crops: one batched model
// pass on crops [cx, cy, side, angle], results in image pixels) and `detect` (FaceAligner._detect);
// image mode crops from the detector's box with two passes. Points are interleaved x, y in image pixels.
import { boxCrop, landmarkBox } from "./boxes.js";
import { cropMatrix, invertAffine, warpCrop } from "./imgproc.js";
import { ShapePrior } from "./shape_prior.js";
import { TrackingConfig, VideoTracker } from "./tracking.js";

export const REFINE_PASSES = 2; // image mode: detector crop, then a re-crop around the predicted landmarks
export const USER_BOX_SCORE = 1.0; // score reported for faces whose boxes the caller gave

function median(values) {
  const v = Float64Array.from(values).sort(), n = v.length;
  return n % 2 ? v[(n - 1) / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

export class Aligner {
  /** ort: the onnxruntime-web module; session: the landmark model; meta: {input_size, num_landmarks,
   * max_ratio[, shape_prior]} (max_ratio: the model's uncertainty ratio at confidence 0.5, where video
   * mode loses a track, as FaceAligner; null: none; shape_prior: the points go to their MAP estimate
   * under it, shape_prior.js, as FaceAligner's). */
  constructor(ort, session, meta, detector, { maxFaces = 4, video = true, tracking = null } = {}) {
    Object.assign(this, { ort, session, detector, maxFaces, video });
    this.maxRatio = meta.max_ratio ?? null;
    this.size = meta.input_size;
    this.n = meta.num_landmarks;
    this.tracking = tracking instanceof TrackingConfig ? tracking : new TrackingConfig(tracking || {});
    this.refinePasses = REFINE_PASSES;
    this.hasCov = session.outputNames.includes("cov");
    this.prior = meta.shape_prior && this.hasCov ? new ShapePrior(meta.shape_prior) : null;
    this.modelMs = 0; // model time of the last frame (all calls)
    this.reset();
  }

  /** Video mode: frame rate assumed when predict() gets no timestamp. */
  get fps() { return this.tracking.fps; }
  set fps(v) { this.setTracking({ fps: Number(v) }); }

  /** Video mode: the detector runs at least every this many frames. */
  get redetectEvery() { return this.tracking.redetectEvery; }
  set redetectEvery(v) { this.setTracking({ redetectEvery: Math.trunc(v) }); }

  setTracking(changes) {
    this.tracking = this.tracking.with(changes);
    this.tracker.cfg = this.tracking;
  }

  /** Forget video tracking and smoothing state (between videos). */
  reset() {
    this.tracker = new VideoTracker((img, crops) => this.run(img, crops), (img) => this.detect(img),
                                    this.tracking, this.maxFaces, this.maxRatio);
    this.shape = null;
  }

  /** One batched model call on crops [cx, cy, side, angle] -> [{pts, cov, adj, sigma}] in image pixels
   * (FaceAligner._run_crops). */
  async run(img, crops) {
    const S = this.size, K = crops.length, n = this.n;
    const mats = crops.map((c) => cropMatrix(c[0], c[1], c[2], S, -c[3]));
    const x = new Float32Array(K * 3 * S * S);
    mats.forEach((m, k) => warpCrop(img, m, S, x, k * 3 * S * S));
    const t0 = performance.now();
    const out = await this.session.run({ image: new this.ort.Tensor("float32", x, [K, 3, S, S]) });
    this.modelMs += performance.now() - t0;
    const coords = out.coords.data, adjAll = out.adjacency.data, covAll = this.hasCov ? out.cov.data : null;
    return mats.map((m, k) => {
      const [a, b, tx, c, d, ty] = invertAffine(m);
      const pts = new Float64Array(2 * n);
      for (let i = 0; i < n; i++) {
        const u = coords[(k * n + i) * 2] * S, v = coords[(k * n + i) * 2 + 1] * S;
        pts[2 * i] = a * u + b * v + tx;
        pts[2 * i + 1] = c * u + d * v + ty;
      }
      const adj = adjAll.slice(k * n * n, (k + 1) * n * n);
      let cov = null, sigma = null;
      if (covAll) {
        cov = new Float64Array(4 * n);
        const sd = [];
        for (let i = 0; i < n; i++) {
          const o = (k * n + i) * 4, s2 = S * S;
          const c00 = covAll[o] * s2, c01 = covAll[o + 1] * s2, c10 = covAll[o + 2] * s2, c11 = covAll[o + 3] * s2;
          // A C A^T with A = [[a, b], [c, d]]
          const p00 = a * c00 + b * c10, p01 = a * c01 + b * c11, p10 = c * c00 + d * c10, p11 = c * c01 + d * c11;
          cov[4 * i] = p00 * a + p01 * b; cov[4 * i + 1] = p00 * c + p01 * d;
          cov[4 * i + 2] = p10 * a + p11 * b; cov[4 * i + 3] = p10 * c + p11 * d;
          sd.push(Math.sqrt(Math.max((covAll[o] + covAll[o + 3]) / 2, 0)));
        }
        sigma = median(sd);
      }
      return { pts: this.prior ? this.prior.refine(pts, cov) : pts, cov, adj, sigma };
    });
  }

  /** Pass 1 on every box; pass 2 (re-crop around pass-1 landmarks) for faces flagged twoPass. */
  async refine(img, boxes, twoPass) {
    let res = await this.run(img, boxes.map(boxCrop));
    for (let p = 0; p < this.refinePasses - 1; p++) {
      const idx = twoPass.map((t, i) => (t ? i : -1)).filter((i) => i >= 0);
      if (!idx.length) break;
      const res2 = await this.run(img, idx.map((i) => boxCrop(landmarkBox(res[i].pts))));
      res = res.slice();
      idx.forEach((i, k) => { res[i] = res2[k]; });
    }
    return res;
  }

  async detect(img) {
    const dets = (await this.detector.detect(img)).sort((p, q) => q.score - p.score);
    return dets.slice(0, this.maxFaces);
  }

  /** Faces in one frame ({data, width, height, channels}); boxes: optional landmark boxes (skip
   * the detector); timestamp in seconds (null: 1 / fps steps). Video mode: FaceAligner._predict_video. */
  async predict(img, boxes = null, timestamp = null) {
    this.modelMs = 0;
    if (!this.video) {
      const dets = boxes ? boxes.slice(0, this.maxFaces).map((b) => ({ box: b, score: USER_BOX_SCORE }))
        : await this.detect(img);
      if (!dets.length) return [];
      const res = await this.refine(img, dets.map((d) => d.box), dets.map(() => true));
      return res.map((r, i) => ({ box: dets[i].box, score: dets[i].score, landmarks: r.pts, covariance: r.cov, adjacency: r.adj }));
    }
    const shape = `${img.width}x${img.height}`;
    if (this.shape !== null && shape !== this.shape) this.reset(); // another video (or resolution): start over
    this.shape = shape;
    const user = boxes == null ? null
      : boxes.slice(0, this.maxFaces).map((b) => ({ box: Array.from(b, Number), score: USER_BOX_SCORE }));
    const out = await this.tracker.step(img, timestamp, user);
    return out.map(([tr, r, shown]) => ({ id: tr.id, box: r.cropBox.slice(), score: tr.score, landmarks: shown,
                                           covariance: r.cov, adjacency: r.adj, sigma: r.sigma }));
  }
}
