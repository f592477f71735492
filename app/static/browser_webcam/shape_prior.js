// The shape prior in the page: a port of core.shape_prior.ShapePrior.refine. The model's points p_i with
// covariances S_i are moved to the MAP estimate under a point distribution model of the training shapes,
//   argmin_{a, c, t, b}  sum_i (p_i - x_i)^T S_i^-1 (p_i - x_i) + sum_k b_k^2 / lambda_k,
//   x = a y + c y_perp + t,  y = mean + sum_k b_k P_k,
// by Gauss-Newton from the similarity fit of the mean shape. Similarity-equivariant, so it runs on
// image pixels (Python runs it on crop units: the same points). Points are interleaved x, y. A model's
// point offsets o_i (core.calibrate; inter-ocular units in the face's frame) move the result last:
//   x_i + d R^T o_i,  R turning the eye line 36 -> 45 onto +x, d the inter-ocular distance.

export const GN_STEPS = 2;

/** Solve H z = g in place for a symmetric positive definite H (n x n, row-major); false if not PD. */
function cholSolve(h, g, n) {
  for (let j = 0; j < n; j++) {
    let d = h[j * n + j];
    for (let k = 0; k < j; k++) d -= h[j * n + k] * h[j * n + k];
    if (!(d > 0)) return false;
    d = Math.sqrt(d);
    h[j * n + j] = d;
    for (let i = j + 1; i < n; i++) {
      let s = h[i * n + j];
      for (let k = 0; k < j; k++) s -= h[i * n + k] * h[j * n + k];
      h[i * n + j] = s / d;
    }
  }
  for (let i = 0; i < n; i++) { // L y = g
    let s = g[i];
    for (let k = 0; k < i; k++) s -= h[i * n + k] * g[k];
    g[i] = s / h[i * n + i];
  }
  for (let i = n - 1; i >= 0; i--) { // L^T z = y
    let s = g[i];
    for (let k = i + 1; k < n; k++) s -= h[k * n + i] * g[k];
    g[i] = s / h[i * n + i];
  }
  return true;
}

export class ShapePrior {
  /** {mean: 2N, modes: K x 2N (flat), variances: K[, offsets: 2N]}, as the model's JSON route serves them. */
  constructor({ mean, modes, variances, offsets = null }) {
    this.offsets = offsets ? Float64Array.from(offsets) : null;
    this.mean = Float64Array.from(mean);
    this.modes = Float64Array.from(modes);
    this.variances = Float64Array.from(variances);
    this.n = this.mean.length / 2;
    this.k = this.variances.length;
    if (this.modes.length !== this.k * 2 * this.n) throw new Error("shape prior: modes do not match the mean");
    if (this.offsets && this.offsets.length !== 2 * this.n) throw new Error("shape prior: offsets do not match the mean");
  }

  /** pts (2N) and cov (4N: c00, c01, c10, c11 per point) -> the MAP points (a new Float64Array); pts
   * unchanged where a point or covariance is not finite or a covariance not positive definite. */
  refine(pts, cov, steps = GN_STEPS) {
    const { n, k, mean, modes, variances } = this;
    const w = new Float64Array(3 * n); // whitening W = C^-1 (C C^T = S): w00, w10, w11
    for (let i = 0; i < n; i++) {
      const c00 = cov[4 * i], c10 = cov[4 * i + 2], c11 = cov[4 * i + 3];
      if (![pts[2 * i], pts[2 * i + 1], c00, cov[4 * i + 1], c10, c11].every(Number.isFinite)
          || !(c00 > 0) || !(c00 * c11 - cov[4 * i + 1] * c10 > 0)) return pts;
      const l11 = Math.sqrt(c00), l21 = c10 / l11, l22 = Math.sqrt(Math.max(c11 - l21 * l21, 1e-12 * c11));
      w[3 * i] = 1 / l11; w[3 * i + 1] = -l21 / (l11 * l22); w[3 * i + 2] = 1 / l22;
    }
    const theta = [1, 0, 0, 0], b = new Float64Array(k), y = new Float64Array(2 * n);
    const shape = () => {
      y.set(mean);
      for (let m = 0; m < k; m++) {
        if (b[m] === 0) continue;
        for (let j = 0; j < 2 * n; j++) y[j] += b[m] * modes[m * 2 * n + j];
      }
    };
    const cols = 4 + k, row0 = new Float64Array(cols), row1 = new Float64Array(cols);
    for (let step = 0; step <= steps; step++) {
      const nc = step ? cols : 4; // step 0: the similarity alone (b = 0)
      shape();
      const [a, c, tx, ty] = theta;
      const h = new Float64Array(nc * nc), g = new Float64Array(nc);
      for (let i = 0; i < n; i++) {
        const yx = y[2 * i], yy = y[2 * i + 1];
        const rx = pts[2 * i] - (a * yx - c * yy + tx), ry = pts[2 * i + 1] - (a * yy + c * yx + ty);
        const w00 = w[3 * i], w10 = w[3 * i + 1], w11 = w[3 * i + 2];
        const col = (j, vx, vy) => { row0[j] = w00 * vx; row1[j] = w10 * vx + w11 * vy; };
        col(0, yx, yy); col(1, -yy, yx); col(2, 1, 0); col(3, 0, 1);
        for (let m = 0; step && m < k; m++) {
          const px = modes[m * 2 * n + 2 * i], py = modes[m * 2 * n + 2 * i + 1];
          col(4 + m, a * px - c * py, a * py + c * px);
        }
        const r0 = w00 * rx, r1 = w10 * rx + w11 * ry;
        for (let p = 0; p < nc; p++) {
          const u0 = row0[p], u1 = row1[p];
          g[p] += u0 * r0 + u1 * r1;
          for (let q = 0; q <= p; q++) h[p * nc + q] += u0 * row0[q] + u1 * row1[q];
        }
      }
      let tr = 0;
      for (let p = 0; p < nc; p++) {
        for (let q = 0; q < p; q++) h[q * nc + p] = h[p * nc + q];
        if (p >= 4) { h[p * nc + p] += 1 / variances[p - 4]; g[p] -= b[p - 4] / variances[p - 4]; }
        tr += h[p * nc + p];
      }
      for (let p = 0; p < nc; p++) h[p * nc + p] += 1e-12 * tr;
      if (!cholSolve(h, g, nc)) return pts;
      for (let p = 0; p < 4; p++) theta[p] += g[p];
      for (let m = 0; step && m < k; m++) b[m] += g[4 + m];
    }
    shape();
    const [a, c, tx, ty] = theta, out = new Float64Array(2 * n);
    for (let i = 0; i < n; i++) {
      out[2 * i] = a * y[2 * i] - c * y[2 * i + 1] + tx;
      out[2 * i + 1] = a * y[2 * i + 1] + c * y[2 * i] + ty;
    }
    return this.offsets ? this.moved(out) : out;
  }

  /** Points (2N) moved by the offsets in their own face frame (eye corners 36 and 45), in place. */
  moved(out) {
    const vx = out[90] - out[72], vy = out[91] - out[73], o = this.offsets;
    for (let i = 0; i < this.n; i++) {
      out[2 * i] += vx * o[2 * i] - vy * o[2 * i + 1];
      out[2 * i + 1] += vy * o[2 * i] + vx * o[2 * i + 1];
    }
    return out;
  }
}
