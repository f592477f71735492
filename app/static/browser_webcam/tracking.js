// Video tracking, ported from core/tracking.py (VideoTracker, TrackingConfig, Track; same constants,
// same decisions in the same order; see that module's docstring for the per-frame steps): motion-
// predicted crop boxes, lost-track checks, one re-crop when the crop is off, remembered lost tracks
// keeping their ids, the redetect schedule (frames / seconds), duplicate dropping, a lost track
// restarting from this frame's matched detection, and per-face One-Euro smoothing (smoothing.js).
// The module constants, TrackingConfig and Track are in track.js (re-exported here).
// Points are interleaved x, y (Float64Array); boxes [x0, y0, x1, y1]. A change to core/tracking.py
// maps onto the method of the same name here (step, _associate, _check, _dropDuplicates, _update).
import {
  allFinite, boxCrop, boxIou, boxSide, centreOffset, inCrop, landmarkBox, landmarkCrop, pointsSide, rollDeg,
  uncertaintyRatio,
} from "./boxes.js";
import { CROP_SCALE } from "./imgproc.js";
import { FaceSmoother } from "./smoothing.js";
import {
  DUPLICATE_IOU, INHERIT_MAX_SHIFT, INHERIT_MAX_ZOOM, INHERIT_SPEED, KEEP_IOU, MATCH_IOU, MAX_DRIFT, MAX_JUMP,
  MIN_FACE_SIDE, OVERLAP_IOU, PULL_MAX_DT, PULL_S, SIGMA_MEMORY, TRACK_MIN_INSIDE, Track, TrackingConfig, VELOCITY_MEMORY,
} from "./track.js";

export * from "./track.js"; // the module constants, TrackingConfig and Track, as in core.tracking
export { CROP_SCALE }; // core.tracking uses core.landmarks.CROP_SCALE: the crop side per landmark-box side

/** Tracks faces across frames. `run(img, crops)` -> [{pts, cov, adj, sigma}] is one batched model
 * pass on crops [cx, cy, side, angle]; `detect(img)` -> [{box, score}] (landmark-box
 * estimates); both async. `step` -> [[track, model-output row (+ cropBox), landmarks to show]].
 * maxRatio: uncertainty ratio above which a track is lost (null: no such test). */
export class VideoTracker {
  constructor(run, detect, config = null, maxFaces = 8, maxRatio = null) {
    Object.assign(this, { run, detect, maxFaces, maxRatio });
    this.cfg = config || new TrackingConfig();
    this.reset();
  }

  reset() {
    this.tracks = [];
    this.lost = [];
    this.nextId = 0;
    this.t = null;
    this.frame = 0;
    this.lastDetectFrame = -(10 ** 9);
    this.lastDetectT = -Infinity;
    this.detBoxes = new Map();
    this.crops = new Map(); // this frame's crop [cx, cy, side, angle] per track
    this.inherited = new Map(); // this frame's lost track whose id a new track took (_inherit)
    this.frameWh = [1, 1]; // this frame's width and height
    this.detectorCalls = 0;
    this.modelPasses = 0;
  }

  // -- helpers ----------------------------------------------------------------------------
  _clock(t) {
    const step = 1.0 / this.cfg.fps;
    if (this.t === null) return t == null ? 0.0 : t; // null or undefined: no timestamp
    if (t == null || !(t > this.t)) return this.t + step;
    return t;
  }

  async _detect(img, user) {
    if (user != null) return [...user];
    this.detectorCalls += 1;
    return (await this.detect(img)).sort((p, q) => q.score - p.score).slice(0, this.maxFaces);
  }

  /** A remembered box moved so that its centre lies in the frame: a face that left at an edge is
   * expected back at that edge, not further along the path it left on. */
  _inFrame(box) {
    const [w, h] = this.frameWh, cx = (box[0] + box[2]) / 2, cy = (box[1] + box[3]) / 2;
    const dx = Math.min(Math.max(cx, 0), w - 1) - cx, dy = Math.min(Math.max(cy, 0), h - 1) - cy;
    return [box[0] + dx, box[1] + dy, box[2] + dx, box[3] + dy];
  }

  /** [overlap, track]: the lost track whose remembered path overlaps `box` most (the first of equals). */
  _bestRemembered(box, t) {
    let best = null, bestIou = 0.0;
    for (const r of this.lost) {
      const v = boxIou(this._inFrame(r.rememberedBox(t)), box);
      if (best === null || v > bestIou) { best = r; bestIou = v; }
    }
    return [bestIou, best];
  }

  /** Whether a lost face's remembered path overlaps detection `box` more than a tracked face's box does (iou). */
  _lostFaceExplains(box, iou, t) { return this._bestRemembered(box, t)[0] > iou; }

  _newTrack(d, t) { return new Track(this.nextId++, d.box.slice(), d.score, t); }

  /** Greedy IoU matching of detections to the tracks' predicted boxes; returns matched track ids.
   * Tracks in `lost` (lost on their own crop this frame) take a detection from reviveIou, as a remembered
   * track does. Unmatched detections revive a remembered track on their path, else start a new one. */
  _associate(dets, t, boxes, healthy, lost = new Set()) {
    const pairs = [];
    this.tracks.forEach((tr, i) => dets.forEach((d, j) => pairs.push([boxIou(boxes.get(tr.id), d.box), i, j])));
    pairs.sort((p, q) => q[0] - p[0]); // stable, as Python's sorted(key=-iou)
    const usedT = new Set(), usedD = new Set();
    for (const [iou, i, j] of pairs) {
      const gate = lost.has(this.tracks[i].id) ? this.cfg.reviveIou : MATCH_IOU; // lost on its crop: as remembered
      if (iou < gate || usedT.has(i) || usedD.has(j)) continue;
      const tr = this.tracks[i], d = dets[j];
      if (healthy.has(tr.id) && iou < KEEP_IOU && this._lostFaceExplains(d.box, iou, t)) {
        usedT.add(i); tr.misses = 0; // a face lost lately explains it better: it confirms this track (own crop kept)
        continue; // and is left to revive that face
      }
      usedT.add(i); usedD.add(j);
      tr.score = d.score; tr.misses = 0;
      this.detBoxes.set(tr.id, d.box.slice());
      if (iou < KEEP_IOU || !healthy.has(tr.id)) {
        boxes.set(tr.id, d.box.slice()); this.crops.set(tr.id, boxCrop(d.box)); tr.fromDetection = true;
      }
    }
    const matched = new Set([...usedT].map((i) => this.tracks[i].id));
    for (let j = 0; j < dets.length; j++) {
      if (usedD.has(j)) continue;
      if (this.tracks.length >= this.maxFaces) break;
      const d = dets[j];
      const [bestIou, best] = this._bestRemembered(d.box, t);
      let tr;
      if (best !== null && bestIou >= this.cfg.reviveIou) {
        this.lost.splice(this.lost.indexOf(best), 1);
        tr = best;
        tr.score = d.score; tr.misses = 0; tr.velocity = [0, 0]; tr.zoomRate = 0.0; tr.revived = true;
      } else {
        tr = this._newTrack(d, t);
      }
      tr.fromDetection = true; tr.restart = true;
      this.tracks.push(tr);
      boxes.set(tr.id, d.box.slice()); this.crops.set(tr.id, boxCrop(d.box));
      matched.add(tr.id);
    }
    return matched;
  }

  /** [lost, cropOff] for landmarks `pts` predicted on `crop` ([cx, cy, side, angle]). */
  _check(tr, pts, sigma, crop, w, h) {
    if (!allFinite(pts)) return [true, false];
    const lb = landmarkBox(pts), side = Math.max(lb[2] - lb[0], lb[3] - lb[1]);
    if (side < MIN_FACE_SIDE) return [true, false];
    const iw = Math.max(0.0, Math.min(lb[2], w - 1) - Math.max(lb[0], 0));
    const ih = Math.max(0.0, Math.min(lb[3], h - 1) - Math.max(lb[1], 0));
    if (iw * ih < TRACK_MIN_INSIDE * Math.max((lb[2] - lb[0]) * (lb[3] - lb[1]), 1e-9)) return [true, false];
    const c = this.cfg;
    if (sigma !== null && sigma !== undefined) {
      const level = Math.max(tr.sigmaLevel !== null ? tr.sigmaLevel : 0.0, c.sigmaFloor);
      if (sigma > c.maxSigma || (tr.sigmaLevel !== null && sigma > c.sigmaJump * level)) return [true, false];
    }
    const u = inCrop(pts, crop), ub = landmarkBox(u);
    if (sigma !== null && sigma !== undefined && this.maxRatio !== null && uncertaintyRatio(u, sigma) > this.maxRatio) {
      return [true, false];
    }
    if (ub[0] < c.edge || ub[1] < c.edge || ub[2] > 1 - c.edge || ub[3] > 1 - c.edge) return [true, true];
    const centre = [(ub[0] + ub[2]) / 2 - 0.5, (ub[1] + ub[3]) / 2 - 0.5];
    const ratio = CROP_SCALE * Math.max(ub[2] - ub[0], ub[3] - ub[1]); // landmark side / the side the crop expects
    const off = Math.hypot(centre[0], centre[1]) > c.maxShift || Math.abs(Math.log(Math.max(ratio, 1e-9))) > c.maxScale;
    return [false, off];
  }

  /** One model pass for tracks `ids` on this.crops[id]; results stored in res[id] (with the track's
   * box as cropBox). */
  async _pass(img, ids, boxes, res) {
    if (!ids.length) return;
    const out = await this.run(img, ids.map((i) => this.crops.get(i)));
    this.modelPasses += 1;
    ids.forEach((i, k) => res.set(i, { ...out[k], cropBox: boxes.get(i).slice() }));
  }

  _byId(i) { return this.tracks.find((tr) => tr.id === i); }

  // -- one frame ----------------------------------------------------------------------------
  /** img: {data, width, height, channels}; t: seconds or null; user: [{box, score}] or null. */
  async step(img, t = null, user = null) {
    const c = this.cfg;
    t = this._clock(t);
    const gap = this.t !== null && t - this.t > c.smoothGapS;
    const dt = this.t === null ? Infinity : t - this.t;
    this.t = t;
    this.frameWh = [img.width, img.height];
    this.lost = this.lost.filter((r) => t - r.t <= c.lostKeepS);
    const motion = c.predictMotion && !gap;
    const firstNew = this.nextId; // tracks with ids from here on start on this frame
    const boxes = new Map(this.tracks.map((tr) => [tr.id, tr.predictedBox(t, motion)]));
    this.crops = new Map(this.tracks.map((tr) => [tr.id, tr.predictedCrop(t, motion)]));
    const healthy = new Set(this.tracks.filter((tr) => !tr.fromDetection).map((tr) => tr.id));
    const due = this.frame - this.lastDetectFrame >= c.redetectEvery || t - this.lastDetectT >= c.redetectS
      || this.lost.length > 0; // a face was lost lately: look for it on every frame
    let detected = user != null || !this.tracks.length || due;
    let matched = new Set();
    this.detBoxes = new Map(); // this frame's detection matched to each track
    this.inherited = new Map();
    if (detected) {
      matched = this._associate(await this._detect(img, user), t, boxes, healthy);
      this.lastDetectFrame = this.frame; this.lastDetectT = t;
      for (const tr of this.tracks) if (!matched.has(tr.id)) tr.misses += 1;
    }
    this.frame += 1;
    const res = new Map(), verdict = new Map(), { width: w, height: h } = img;
    const check = (i) => verdict.set(i, this._check(this._byId(i), res.get(i).pts, res.get(i).sigma, this.crops.get(i), w, h));

    const runAndCheck = async (ids) => {
      await this._pass(img, ids, boxes, res);
      const two = new Set(ids.filter((i) => this._byId(i).fromDetection)); // detector box: re-crop around pass 1
      ids.forEach(check);
      const again = ids.filter((i) => (two.has(i) || (verdict.get(i)[1] && !verdict.get(i)[0]))
                                      && allFinite(res.get(i).pts));
      for (const i of again) { boxes.set(i, landmarkBox(res.get(i).pts)); this.crops.set(i, landmarkCrop(res.get(i).pts)); }
      await this._pass(img, again, boxes, res);
      again.forEach(check);
    };

    await runAndCheck(this.tracks.map((tr) => tr.id));
    const bad = this.tracks.filter((tr) => verdict.get(tr.id)[0]);
    const retry = bad.filter((tr) => this.detBoxes.has(tr.id) && !tr.fromDetection);
    if (retry.length && detected) { // lost on its own crop, but this frame's detection matched it: restart from that
      for (const tr of retry) {
        boxes.set(tr.id, this.detBoxes.get(tr.id)); tr.fromDetection = true;
        this.crops.set(tr.id, boxCrop(boxes.get(tr.id)));
        tr.sigmaLevel = null; tr.restart = true;
      }
      await runAndCheck(retry.map((tr) => tr.id));
    } else if (bad.length && !detected) { // lost: look for the faces on this very frame
      const before = new Set(this.tracks.map((tr) => tr.id)), badIds = new Set(bad.map((tr) => tr.id));
      for (const tr of bad) { tr.sigmaLevel = null; tr.restart = true; }
      matched = this._associate(await this._detect(img, null), t, boxes,
                                new Set([...healthy].filter((i) => !badIds.has(i))), badIds);
      this.lastDetectFrame = this.frame - 1; this.lastDetectT = t;
      const redo = this.tracks.filter((tr) => !before.has(tr.id) || (matched.has(tr.id) && verdict.get(tr.id)[0]))
        .map((tr) => tr.id);
      for (const tr of this.tracks) if (before.has(tr.id) && !matched.has(tr.id)) tr.misses += 1;
      await runAndCheck(redo);
      detected = true;
    }
    const dropped = [];
    for (const tr of [...this.tracks]) { // lost, or a scheduled detection missed it too often: drop
      const lost = verdict.get(tr.id)[0];
      if (lost || tr.misses >= c.maxMisses || (detected && !matched.has(tr.id) && tr.fromDetection)) {
        this._drop(tr);
        if (lost && tr.landmarks !== null) dropped.push(tr);
      }
    }
    this._inherit(dropped, firstNew, res, t, motion);
    this._dropDuplicates(res, t, dt <= PULL_MAX_DT);
    const out = [];
    for (const tr of this.tracks) {
      const r = res.get(tr.id);
      this._update(tr, r, t, gap);
      const shown = c.smooth ? tr.smoother.filter(r.pts, t, pointsSide(r.pts)) : Float64Array.from(r.pts);
      out.push([tr, r, shown]);
    }
    return out;
  }

  _drop(tr) {
    this.tracks.splice(this.tracks.indexOf(tr), 1);
    if (tr.landmarks !== null) { // remembered on its path (box and velocity of its last good frame)
      tr.smoother = null; tr.restart = true;
      const pb = tr.predictedBox(this.t, this.cfg.predictMotion), [w, h] = this.frameWh;
      tr.leftBox = pb[0] < 0 || pb[1] < 0 || pb[2] > w - 1 || pb[3] > h - 1 ? pb : null;
      this.lost.push(tr);
    } else if (this.inherited.has(tr.id)) { // a new track that took a lost one's id: that face stays remembered
      this.lost.push(this.inherited.get(tr.id));
      this.inherited.delete(tr.id);
    }
  }

  /** A track started on this frame takes the id of a track lost on it (`dropped`) when its landmarks
   * lie within INHERIT_SPEED landmark-box sides a second (at most INHERIT_MAX_SHIFT) of the lost
   * track's motion prediction, at a similar size; closest pairs first; the lost track is not remembered
   * (again if the new track is dropped on this frame). */
  _inherit(dropped, firstNew, res, t, motion) {
    const pairs = [];
    for (const d of dropped) {
      const pb = d.predictedBox(t, motion), reach = Math.min(INHERIT_MAX_SHIFT, INHERIT_SPEED * (t - d.t));
      for (const f of this.tracks.filter((tr) => tr.id >= firstNew)) {
        const lb = landmarkBox(res.get(f.id).pts), dist = centreOffset(lb, pb);
        const zoom = Math.abs(Math.log(boxSide(lb) / boxSide(pb)));
        if (dist <= reach && zoom <= INHERIT_MAX_ZOOM) pairs.push([dist, d.id, f.id, d, f]);
      }
    }
    pairs.sort((a, b) => (a[0] - b[0]) || (a[1] - b[1]) || (a[2] - b[2]));
    const done = new Set();
    for (const [, , , d, f] of pairs) {
      if (done.has(d) || done.has(f)) continue;
      done.add(d); done.add(f);
      res.set(d.id, res.get(f.id)); res.delete(f.id); // only this frame's results are keyed by id from here on
      f.id = d.id;
      this.lost.splice(this.lost.indexOf(d), 1);
      this.inherited.set(f.id, d);
    }
  }

  /** Two tracks on one face (landmark boxes overlapping > DUPLICATE_IOU), or overlapping
   * (> OVERLAP_IOU) while one of them jumped away from its motion prediction: drop the one that
   * jumped more (ties: the younger); it is remembered. */
  _dropDuplicates(res, t, pull = true) {
    const off = (tr, pb) => centreOffset(landmarkBox(res.get(tr.id).pts), pb);
    const jump = (tr) => {
      if (tr.landmarks === null) return 1.0;
      const drift = tr.path.length > 0 ? off(tr, tr.rememberedBox(t)) * MAX_JUMP / MAX_DRIFT : null;
      if (tr.revived && drift !== null) return drift; // its last box is old, its motion reset: only its path predicts it
      const j = off(tr, tr.predictedBox(t, this.cfg.predictMotion));
      return drift === null ? j : Math.max(j, drift);
    };
    const jumps = new Map(this.tracks.map((tr) => [tr.id, jump(tr)]));
    const keep = [];
    const paths = this.lost.filter((r) => pull && t - r.t <= PULL_S).map((r) => [r.box, this._inFrame(r.rememberedBox(t))]);
    const order = [...this.tracks].sort((a, b) => (jumps.get(a.id) - jumps.get(b.id)) || (a.id - b.id));
    for (const tr of order) {
      const lb = landmarkBox(res.get(tr.id).pts);
      const ious = keep.map((k) => boxIou(lb, landmarkBox(res.get(k.id).pts)));
      const pulled = paths // another face's path (not a former duplicate of this one)
        .filter(([last]) => tr.landmarks !== null && boxIou(last, tr.box) <= DUPLICATE_IOU)
        .map(([, b]) => boxIou(lb, b));
      if (ious.some((i) => i > DUPLICATE_IOU) || ([...ious, ...pulled].some((i) => i > OVERLAP_IOU) && jumps.get(tr.id) > MAX_JUMP)) {
        this._drop(tr);
      } else {
        keep.push(tr);
      }
    }
  }

  _update(tr, r, t, gap) {
    const pts = Float64Array.from(r.pts), lb = landmarkBox(pts);
    if (tr.landmarks !== null && !gap && t > tr.t) { // the same face (matched, or revived on its path)
      const dt = t - tr.t;
      const v = [((lb[0] + lb[2]) - (tr.box[0] + tr.box[2])) / 2 / dt, ((lb[1] + lb[3]) - (tr.box[1] + tr.box[3])) / 2 / dt];
      const z = Math.log(pointsSide(pts) / Math.max(boxSide(tr.box), 1e-9)) / dt;
      tr.velocity = [0, 1].map((k) => (1 - VELOCITY_MEMORY) * v[k] + VELOCITY_MEMORY * tr.velocity[k]);
      tr.zoomRate = (1 - VELOCITY_MEMORY) * z + VELOCITY_MEMORY * tr.zoomRate;
    } else {
      tr.velocity = [0, 0]; tr.zoomRate = 0.0;
    }
    if (r.sigma !== null && r.sigma !== undefined) {
      tr.sigmaLevel = tr.sigmaLevel === null ? r.sigma : SIGMA_MEMORY * tr.sigmaLevel + (1 - SIGMA_MEMORY) * r.sigma;
    }
    if (tr.smoother === null || tr.restart || gap) tr.smoother = new FaceSmoother({ fps: this.cfg.fps });
    tr.landmarks = pts; tr.box = lb; tr.t = t; tr.roll = rollDeg(pts);
    tr.leftBox = null;
    tr.fromDetection = false; tr.restart = false; tr.revived = false;
    if (this.tracks.every((o) => o === tr || boxIou(lb, o.box) <= OVERLAP_IOU)) {
      tr.remember(lb, t);
    }
  }
}
