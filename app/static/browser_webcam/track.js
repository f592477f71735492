// Per-face track state and the video-mode parameters, ported from core/track.py (module
// constants, TrackingConfig with camelCase fields, Track; same values). VideoTracker: tracking.js.
import { boxCrop, boxSide, uprightBox } from "./boxes.js";
import { CROP_SCALE } from "./imgproc.js";
import { DEFAULT_FPS } from "./smoothing.js";

export const MIN_FACE_SIDE = 8.0; // px: a landmark box smaller than this is a lost track
export const TRACK_MIN_INSIDE = 0.3; // share of a landmark box that must lie inside the frame
export const MATCH_IOU = 0.3; // a detection continues a track when it overlaps its predicted box this much
export const KEEP_IOU = 0.5; // ... and a healthy track keeps its own (landmark) box above this overlap
export const DUPLICATE_IOU = 0.6; // two tracks overlapping more than this follow one face
export const OVERLAP_IOU = 0.1; // tracks overlapping more than this may pull each other
export const MAX_JUMP = 0.08; // landmark-box sides: landmarks this far from the motion prediction = jumped
export const MAX_DRIFT = 0.2; // landmark-box sides: ... or this far from the path remembered before the overlap
export const VELOCITY_MEMORY = 0.4; // v <- (1 - m) v_measured + m v
export const MAX_PREDICTED_SHIFT = 0.5; // landmark-box sides: cap on the motion prediction per frame
export const MAX_PREDICTED_ZOOM = 0.3; // |log side change| cap on the motion prediction per frame
export const REMEMBER_MAX_SHIFT = 3.0; // landmark-box sides: cap on a remembered (lost) track's predicted path
export const ANCHOR_LAG_S = 0.2; // s: a lost track is remembered from its clear frame this long before its last one
export const PATH_S = 0.7; // s of clear frames kept per track: the anchor, and its motion over the frames before it
export const REMEMBER_MAX_ZOOM = 0.2; // |d log side / dt| cap (per s) on a remembered track's predicted path
export const PULL_S = 0.5; // s: a track jumping onto the path of a face lost this recently is dropped (pulled onto it)
export const PULL_MAX_DT = 0.15; // s: ... when the previous frame is this recent (slower frames jump by their own motion)
export const INHERIT_SPEED = 6.0; // landmark-box sides per s: a track started this far from one lost on the same frame takes its id
export const INHERIT_MAX_SHIFT = 2.0; // landmark-box sides: ... at most this far (3 fps: a face moving sideways leaves its crop)
export const INHERIT_MAX_ZOOM = 0.4; // |log side ratio| of the two at most
export const SIGMA_MEMORY = 0.8; // running uncertainty level: s <- m s + (1 - m) sigma (healthy frames only)

const TRACKING_DEFAULTS = {
  redetectEvery: 10, redetectS: 1.0, maxSigma: 0.08, sigmaJump: 2.5, sigmaFloor: 0.01, edge: 0.02,
  maxShift: 0.06, maxScale: 0.15, predictMotion: true, smooth: true, smoothGapS: 1.0, lostKeepS: 2.0,
  reviveIou: 0.1, maxMisses: 2, fps: DEFAULT_FPS,
};

/** core.tracking.TrackingConfig (camelCase fields, same defaults); unknown keys are rejected. */
export class TrackingConfig {
  constructor(options = {}) {
    for (const k of Object.keys(options)) {
      if (!(k in TRACKING_DEFAULTS)) throw new Error(`TrackingConfig: unknown option ${k}`);
    }
    Object.assign(this, TRACKING_DEFAULTS, options);
    if (this.redetectEvery < 1 || this.maxMisses < 1) throw new Error("redetectEvery and maxMisses must be >= 1");
    for (const k of ["redetectS", "maxSigma", "sigmaJump", "edge", "maxShift", "maxScale", "smoothGapS", "fps"]) {
      if (!(this[k] > 0)) throw new Error(`TrackingConfig.${k} must be > 0, got ${this[k]}`);
    }
    if (this.sigmaFloor < 0 || this.lostKeepS < 0 || !(this.reviveIou >= 0 && this.reviveIou <= 1)) {
      throw new Error("sigmaFloor, lostKeepS must be >= 0 and 0 <= reviveIou <= 1");
    }
    Object.freeze(this);
  }

  with(changes) { return new TrackingConfig({ ...this, ...changes }); }
}

const clip = (v, lo, hi) => Math.min(Math.max(v, lo), hi);

export class Track {
  constructor(id, box, score, t) {
    Object.assign(this, { id, box, score, t });
    this.landmarks = null; // last raw (unsmoothed) landmarks
    this.velocity = [0, 0]; // px / s of the box centre
    this.zoomRate = 0.0; // d log(side) / dt
    this.sigmaLevel = null;
    this.misses = 0;
    this.fromDetection = true; // box came from a detector: two passes, motion unknown
    this.restart = true; // smoothing starts over on the next output
    this.revived = false; // taken up again from its remembered path on this frame (its motion was reset)
    this.smoother = null;
    this.path = []; // [[t, landmark box]] of its clear frames (overlapping no other track)
    this.roll = 0.0; // degrees, eye line of the last landmarks: the crop is turned upright by it
    this.leftBox = null; // lost while its motion took it over the frame's edge: where it left
  }

  /** Keep a clear frame's landmark box on the path (the last PATH_S seconds of them). */
  remember(box, t) {
    this.path = this.path.filter((p) => t - p[0] <= PATH_S).concat([[t, box.slice()]]);
  }

  /** [box, velocity, zoomRate, t]: the last trustworthy state, from the path (core.track.Track.anchor):
   * the clear frame ANCHOR_LAG_S before the last one (else the oldest kept), its motion the mean over
   * the kept frames before it (else up to the last). */
  get anchor() {
    if (this.path.length === 0) return null;
    const ts = this.path.map((p) => p[0]), last = ts[ts.length - 1];
    let a = 0;
    ts.forEach((u, i) => { if (u <= last - ANCHOR_LAG_S) a = i; });
    const b = a > 0 ? 0 : ts.length - 1;
    const [[t0, b0], [t1, b1]] = [this.path[a], this.path[b]].sort((p, q) => p[0] - q[0]);
    let v = [0, 0], z = 0.0;
    if (t1 > t0) {
      v = [0, 1].map((k) => ((b1[k] + b1[k + 2]) - (b0[k] + b0[k + 2])) / 2 / (t1 - t0));
      z = clip(Math.log(boxSide(b1) / boxSide(b0)) / (t1 - t0), -REMEMBER_MAX_ZOOM, REMEMBER_MAX_ZOOM);
    }
    return [this.path[a][1], v, z, this.path[a][0]];
  }

  /** Predicted box from the anchor (a lost track's last trustworthy state); a face that left over the
   * frame's edge is expected back where it left (leftBox). */
  rememberedBox(t) {
    if (this.leftBox !== null) return this.leftBox.slice();
    if (this.path.length === 0) return this.predictedBox(t);
    const [box, v, z, t0] = this.anchor, tr = new Track(this.id, box, this.score, t0);
    tr.velocity = v; tr.zoomRate = z;
    return tr.predictedBox(t, true, REMEMBER_MAX_SHIFT);
  }

  /** [centre shift px, zoom factor] predicted from this.t to t, the shift capped at maxShift x side. */
  _motion(t, motion, side, maxShift) {
    const dt = Math.max(0.0, t - this.t);
    let shift = motion ? [this.velocity[0] * dt, this.velocity[1] * dt] : [0, 0];
    const n = Math.hypot(shift[0], shift[1]);
    if (n > maxShift * side) shift = shift.map((s) => s * (maxShift * side / n));
    const z = motion ? Math.exp(clip(this.zoomRate * dt, -MAX_PREDICTED_ZOOM, MAX_PREDICTED_ZOOM)) : 1.0;
    return [shift, z];
  }

  predictedBox(t, motion = true, maxShift = MAX_PREDICTED_SHIFT) {
    const [x0, y0, x1, y1] = this.box;
    const [shift, z] = this._motion(t, motion, Math.max(x1 - x0, y1 - y0, 1.0), maxShift);
    const cx = (x0 + x1) / 2 + shift[0], cy = (y0 + y1) / 2 + shift[1];
    const hw = (x1 - x0) * z / 2, hh = (y1 - y0) * z / 2;
    return [cx - hw, cy - hh, cx + hw, cy + hh];
  }

  /** [cx, cy, side, angle] of the crop for time t: the upright square around the last landmarks
   * (boxCrop of the predicted box before any), moved like predictedBox. */
  predictedCrop(t, motion = true) {
    if (this.landmarks === null) return boxCrop(this.predictedBox(t, motion));
    const [cx, cy, side] = uprightBox(this.landmarks, this.roll);
    const [shift, z] = this._motion(t, motion, side, MAX_PREDICTED_SHIFT);
    return [cx + shift[0], cy + shift[1], CROP_SCALE * side * z, this.roll];
  }
}
