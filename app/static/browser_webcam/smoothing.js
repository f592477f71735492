// One-Euro smoothing with one cutoff per face, ported from core/smoothing.py (FaceSmoother,
// smoothing_factor; same constants). Points are interleaved x, y (Float64Array).

export const DEFAULT_FPS = 30.0; // frame rate assumed when no timestamps are given
export const FACE_MIN_CUTOFF = 0.1; // Hz: cutoff of a still face
export const FACE_BETA = 100.0; // Hz per (face size / s) of RMS point speed
export const FACE_D_CUTOFF = 0.7; // Hz: cutoff of the speed estimate

/** alpha of an exponential smoother equivalent to a first-order low-pass at `cutoff` Hz. */
export function smoothingFactor(dt, cutoff) {
  const tau = 1.0 / (2.0 * Math.PI * cutoff);
  return 1.0 / (1.0 + tau / dt);
}

/** One-Euro with one cutoff per face: v = low-pass_{dCutoff}((x - x_hat_prev) / dt) per point,
 * speed = sqrt(mean_i |v_i|^2) / scale, cutoff = minCutoff + beta speed,
 * x_hat = a x + (1 - a) x_hat_prev with a = 1 / (1 + 1 / (2 pi cutoff dt)). */
export class FaceSmoother {
  constructor({ minCutoff = FACE_MIN_CUTOFF, beta = FACE_BETA, dCutoff = FACE_D_CUTOFF, fps = DEFAULT_FPS } = {}) {
    if (!(minCutoff > 0 && dCutoff > 0 && beta >= 0 && fps > 0)) {
      throw new Error("minCutoff, dCutoff and fps must be > 0 and beta >= 0");
    }
    Object.assign(this, { minCutoff, beta, dCutoff, fps });
    this.reset();
  }

  reset() { this.x = this.dx = this.t = null; this.lastAlpha = 1.0; }

  /** Filter one sample (interleaved points); t in seconds (null: previous t + 1 / fps; a
   * non-increasing timestamp counts as one frame interval). */
  filter(x, t = null, scale = 1.0) {
    x = Float64Array.from(x);
    if (this.x === null || this.x.length !== x.length) {
      this.x = x.slice();
      this.dx = new Float64Array(x.length);
      this.t = t == null ? 0.0 : t;
      this.lastAlpha = 1.0;
      return x;
    }
    let dt = t == null ? 1.0 / this.fps : t - this.t;
    if (!(dt > 0)) dt = 1.0 / this.fps;
    this.t += dt;
    const aD = smoothingFactor(dt, this.dCutoff);
    let sq = 0;
    for (let i = 0; i < x.length; i++) {
      this.dx[i] = aD * (x[i] - this.x[i]) / dt + (1 - aD) * this.dx[i];
      sq += this.dx[i] * this.dx[i];
    }
    const speed = Math.sqrt(sq / (x.length / 2)) / Math.max(scale, 1e-12);
    const a = smoothingFactor(dt, this.minCutoff + this.beta * speed);
    for (let i = 0; i < x.length; i++) this.x[i] = a * x[i] + (1 - a) * this.x[i];
    this.lastAlpha = a;
    return this.x.slice();
  }
}
