// The landmark model in the page: a port of core.inference.FaceAligner (video mode): crops from the
// detector's landmark-box estimate (two passes: detector crop, then a re-crop around the predicted
// landmarks) or, for a tracked face, from its previous landmarks (one pass); lost-track checks;
// One-Euro smoothing with the face size as scale. Points are interleaved x, y in image pixels.
import { cropFromBox, cropMatrix, invertAffine, warpCrop } from "./imgproc.js";
import { DEFAULT_FPS, LandmarkTracker, OneEuroFilter, landmarkBox } from "./tracking.js";

export const REFINE_PASSES = 2;
export const REDETECT_EVERY = 10;
export const MIN_FACE_SIDE = 8.0;
export const TRACK_MIN_INSIDE = 0.3;
export const TRACK_MAX_SIGMA = 0.08;
export const USER_BOX_SCORE = 1.0;

function median(values) {
  const v = Float64Array.from(values).sort(), n = v.length;
  return n % 2 ? v[(n - 1) / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

export class Aligner {
  /** ort: the onnxruntime-web module; session: the landmark model; meta: {input_size, num_landmarks}. */
  constructor(ort, session, meta, detector, { maxFaces = 4, video = true } = {}) {
    Object.assign(this, { ort, session, detector, maxFaces, video });
    this.size = meta.input_size;
    this.n = meta.num_landmarks;
    this.fps = DEFAULT_FPS;
    this.redetectEvery = REDETECT_EVERY;
    this.refinePasses = REFINE_PASSES;
    this.hasCov = session.outputNames.includes("cov");
    this.modelMs = 0; // model time of the last frame (all calls)
    this.reset();
  }

  reset() {
    this.tracker = new LandmarkTracker(this.maxFaces);
    this.filters = new Map();
    this.frame = 0;
    this.lastDetect = -1e9;
    this.shape = null;
  }

  /** One batched model call on crops around boxes -> [{pts, cov, adj, sigma}] in image pixels. */
  async run(img, boxes) {
    const S = this.size, K = boxes.length, n = this.n;
    const mats = boxes.map((b) => cropMatrix(...cropFromBox(b), S));
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
      return { pts, cov, adj, sigma };
    });
  }

  /** Pass 1 on every box; pass 2 (re-crop around pass-1 landmarks) for faces flagged twoPass. */
  async refine(img, boxes, twoPass) {
    let res = await this.run(img, boxes);
    for (let p = 0; p < this.refinePasses - 1; p++) {
      const idx = twoPass.map((t, i) => (t ? i : -1)).filter((i) => i >= 0);
      if (!idx.length) break;
      const res2 = await this.run(img, idx.map((i) => landmarkBox(res[i].pts)));
      res = res.slice();
      idx.forEach((i, k) => { res[i] = res2[k]; });
    }
    return res;
  }

  async detect(img) {
    const dets = (await this.detector.detect(img)).sort((p, q) => q.score - p.score);
    return dets.slice(0, this.maxFaces);
  }

  trackOk(pts, sigma, w, h) {
    if (!pts.every(Number.isFinite)) return false;
    const [x0, y0, x1, y1] = landmarkBox(pts);
    if (Math.max(x1 - x0, y1 - y0) < MIN_FACE_SIDE) return false;
    const iw = Math.max(0, Math.min(x1, w - 1) - Math.max(x0, 0));
    const ih = Math.max(0, Math.min(y1, h - 1) - Math.max(y0, 0));
    if (iw * ih < TRACK_MIN_INSIDE * Math.max((x1 - x0) * (y1 - y0), 1e-9)) return false;
    return sigma === null || sigma <= TRACK_MAX_SIGMA;
  }

  /** Faces in one frame ({data, width, height, channels}); boxes: optional landmark boxes (skip
   * the detector); timestamp in seconds (null: 1 / fps steps). */
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
    if (this.shape !== null && shape !== this.shape) this.reset();
    this.shape = shape;
    const tracker = this.tracker;
    const due = this.frame - this.lastDetect >= this.redetectEvery;
    if (boxes || !tracker.tracks.length || due) {
      const dets = boxes ? boxes.slice(0, this.maxFaces).map((b) => ({ box: b.slice(), score: USER_BOX_SCORE }))
        : await this.detect(img);
      tracker.associate(dets);
      this.lastDetect = this.frame;
    }
    this.frame += 1;
    const live = new Set(tracker.tracks.map((t) => t.id));
    for (const id of [...this.filters.keys()]) if (!live.has(id)) this.filters.delete(id);
    const tracks = [...tracker.tracks];
    if (!tracks.length) return [];
    const tboxes = tracks.map((t) => t.box.slice());
    const res = await this.refine(img, tboxes, tracks.map((t) => t.fromDetection));
    const sel = [];
    tracks.forEach((t, i) => {
      const { pts, sigma } = res[i];
      if (!this.trackOk(pts, sigma, img.width, img.height)) {
        tracker.update(t.id, null);
        this.filters.delete(t.id);
        this.lastDetect = -1e9; // lost: detect on the next frame
        return;
      }
      tracker.update(t.id, pts);
      if (!this.filters.has(t.id)) { const f = new OneEuroFilter(); f.fps = this.fps; this.filters.set(t.id, f); }
      const [x0, y0, x1, y1] = landmarkBox(pts);
      const side = Math.max(x1 - x0, y1 - y0, 1.0);
      sel.push([i, this.filters.get(t.id).filter(pts, timestamp, side)]);
    });
    const dropped = new Set(tracker.dropDuplicates());
    for (const id of dropped) this.filters.delete(id);
    return sel.filter(([i]) => !dropped.has(tracks[i].id)).map(([i, smooth]) => ({
      id: tracks[i].id, box: tboxes[i], score: tracks[i].score, landmarks: smooth,
      covariance: res[i].cov, adjacency: res[i].adj, sigma: res[i].sigma }));
  }
}
