// Video mode, ported from core/smoothing.py (OneEuroFilter) and core/detectors.py
// (LandmarkTracker, box_iou, nms, the MediaPipe short-range box calibration). Same constants.

// core/smoothing.py
export const MIN_CUTOFF = 0.05; // Hz
export const BETA = 10.0; // cutoff increase per (scale units / s)
export const D_CUTOFF = 0.7; // Hz
export const DEFAULT_FPS = 30.0;

export function smoothingFactor(dt, cutoff) {
  const tau = 1.0 / (2.0 * Math.PI * cutoff);
  return 1.0 / (1.0 + tau / dt);
}

/** x_hat = a x + (1 - a) x_hat_prev, a from cutoff = min_cutoff + beta |dx_hat / dt| / scale;
 * every element filtered independently (Float64Array). */
export class OneEuroFilter {
  constructor(minCutoff = MIN_CUTOFF, beta = BETA, dCutoff = D_CUTOFF, fps = DEFAULT_FPS) {
    if (!(minCutoff > 0 && dCutoff > 0 && beta >= 0 && fps > 0)) throw new Error("bad One-Euro parameters");
    Object.assign(this, { minCutoff, beta, dCutoff, fps });
    this.reset();
  }

  reset() { this.x = this.dx = this.t = null; }

  /** Filter one sample; t in seconds (null: previous t + 1 / fps); non-increasing t = one frame. */
  filter(x, t = null, scale = 1.0) {
    x = Float64Array.from(x);
    if (this.x === null || this.x.length !== x.length) {
      this.x = x.slice();
      this.dx = new Float64Array(x.length);
      this.t = t === null ? 0.0 : t;
      return x;
    }
    let dt = t === null ? 1.0 / this.fps : t - this.t;
    if (!(dt > 0)) dt = 1.0 / this.fps;
    this.t += dt;
    const aD = smoothingFactor(dt, this.dCutoff), sc = Math.max(scale, 1e-12);
    for (let i = 0; i < x.length; i++) {
      this.dx[i] = aD * (x[i] - this.x[i]) / dt + (1 - aD) * this.dx[i];
      const a = smoothingFactor(dt, this.minCutoff + this.beta * Math.abs(this.dx[i]) / sc);
      this.x[i] = a * x[i] + (1 - a) * this.x[i];
    }
    return this.x.slice();
  }
}

// core/detectors.py
export const NMS_IOU = 0.4;
export const TRACK_MATCH_IOU = 0.3;
export const TRACK_KEEP_IOU = 0.5;
export const TRACK_MAX_MISSES = 2;
export const TRACK_DUPLICATE_IOU = 0.6;
// MP_SHORT_CALIBRATION: landmark box from a BlazeFace short-range box
export const MP_SHORT_CALIBRATION = { dx: -0.0049, dy: 0.0433, sw: 0.9629, sh: 0.9330 };

export function applyCalibration(cal, box) {
  const [x0, y0, x1, y1] = box, w = x1 - x0, h = y1 - y0;
  const cx = (x0 + x1) / 2 + cal.dx * w, cy = (y0 + y1) / 2 + cal.dy * h;
  const hw = cal.sw * w / 2, hh = cal.sh * h / 2;
  return [cx - hw, cy - hh, cx + hw, cy + hh];
}

export function boxIou(a, b) {
  const ix = Math.max(0, Math.min(a[2], b[2]) - Math.max(a[0], b[0]));
  const iy = Math.max(0, Math.min(a[3], b[3]) - Math.max(a[1], b[1]));
  const inter = ix * iy;
  const union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter;
  return union > 0 ? inter / union : 0;
}

/** Highest score first; drop detections overlapping a kept one by more than `iou`. */
export function nms(dets, iou = NMS_IOU) {
  const kept = [];
  for (const d of [...dets].sort((p, q) => q.score - p.score)) {
    if (kept.every((k) => boxIou(d.box, k.box) <= iou)) kept.push(d);
  }
  return kept;
}

/** Boxes for the next frame from each face's landmarks in the previous one (see
 * core.detectors.LandmarkTracker): `associate` merges detections, `update` records landmarks or
 * drops a lost track. */
export class LandmarkTracker {
  constructor(maxTracks = 8) { this.maxTracks = maxTracks; this.reset(); }

  reset() { this.tracks = []; this.nextId = 0; }

  associate(detections) {
    const pairs = [];
    this.tracks.forEach((t, i) => detections.forEach((d, j) => pairs.push([boxIou(t.box, d.box), i, j])));
    // Python sorts (iou, i, j) tuples in reverse: ties broken by the larger i, then j
    pairs.sort((p, q) => (q[0] - p[0]) || (q[1] - p[1]) || (q[2] - p[2]));
    const usedT = new Set(), usedD = new Set();
    for (const [iou, i, j] of pairs) {
      if (iou < TRACK_MATCH_IOU || usedT.has(i) || usedD.has(j)) continue;
      usedT.add(i); usedD.add(j);
      const t = this.tracks[i], d = detections[j];
      t.score = d.score; t.misses = 0;
      if (iou < TRACK_KEEP_IOU || t.landmarks === null) { t.box = d.box.slice(); t.fromDetection = true; }
    }
    this.tracks.forEach((t, i) => { if (!usedT.has(i)) t.misses += 1; });
    this.tracks = this.tracks.filter((t) => t.misses < TRACK_MAX_MISSES);
    const order = detections.map((d, j) => j).sort((a, b) => detections[b].score - detections[a].score);
    for (const j of order) {
      if (!usedD.has(j) && this.tracks.length < this.maxTracks) {
        const d = detections[j];
        this.tracks.push({ id: this.nextId++, box: d.box.slice(), score: d.score, landmarks: null,
                           fromDetection: true, misses: 0, age: 0 });
      }
    }
  }

  /** landmarks: Float64Array (2N, x y interleaved) or null (drop the track). */
  update(id, landmarks) {
    const k = this.tracks.findIndex((t) => t.id === id);
    if (k < 0) return;
    if (landmarks === null) { this.tracks.splice(k, 1); return; }
    const t = this.tracks[k];
    t.landmarks = landmarks;
    t.box = landmarkBox(landmarks);
    t.fromDetection = false;
    t.age += 1;
  }

  /** Remove tracks that converged onto the face of an older track; returns their ids. */
  dropDuplicates() {
    const dropped = [], keep = [];
    for (const t of [...this.tracks].sort((a, b) => a.id - b.id)) {
      if (keep.some((k) => boxIou(t.box, k.box) > TRACK_DUPLICATE_IOU)) dropped.push(t.id);
      else keep.push(t);
    }
    this.tracks = keep;
    return dropped;
  }
}

/** [x0, y0, x1, y1] of interleaved points. */
export function landmarkBox(pts) {
  let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
  for (let i = 0; i < pts.length; i += 2) {
    x0 = Math.min(x0, pts[i]); x1 = Math.max(x1, pts[i]);
    y0 = Math.min(y0, pts[i + 1]); y1 = Math.max(y1, pts[i + 1]);
  }
  return [x0, y0, x1, y1];
}
