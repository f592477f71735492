// Box geometry, ported from core/detectors.py (box_iou, nms, the MediaPipe box calibrations) and core/tracking.py (landmark_box, in_crop, _side, _side_box). Boxes are [x0, y0, x1, y1]; points are
// interleaved x, y (Float64Array).

import { CROP_SCALE, cropFromBox } from "./imgproc.js";

export const NMS_IOU = 0.4; // overlapping detections of one face are merged
// landmark box from a BlazeFace short-range / full-range box (core.detectors.MP_*_CALIBRATION)
export const MP_SHORT_CALIBRATION = { dx: -0.0049, dy: 0.0433, sw: 0.9629, sh: 0.9330 };
export const MP_FULL_CALIBRATION = { dx: 0.0015, dy: 0.0827, sw: 0.9080, sh: 0.8836 };

/** BoxCalibration.apply: centre (cx + dx w, cy + dy h), size (sw w, sh h). */
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

/** [x0, y0, x1, y1] of interleaved points (NaN when a point is NaN, as numpy's min / max). */
export function landmarkBox(pts) {
  let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
  for (let i = 0; i < pts.length; i += 2) {
    x0 = Math.min(x0, pts[i]); x1 = Math.max(x1, pts[i]);
    y0 = Math.min(y0, pts[i + 1]); y1 = Math.max(y1, pts[i + 1]);
  }
  return [x0, y0, x1, y1];
}

export const allFinite = (pts) => pts.every(Number.isFinite);

/** max(ptp x, ptp y, 1.0) of interleaved points (core.tracking._side). */
export function pointsSide(pts) {
  const [x0, y0, x1, y1] = landmarkBox(pts);
  return Math.max(x1 - x0, y1 - y0, 1.0);
}

/** max(width, height, 1.0) of a box (core.tracking._side_box). */
export const boxSide = (b) => Math.max(b[2] - b[0], b[3] - b[1], 1.0);
/** core.track.centre_offset: distance between the centres of boxes `box` and `ref`, in sides of `ref`. */
export const centreOffset = (box, ref) =>
  Math.hypot(((box[0] + box[2]) - (ref[0] + ref[2])) / 2, ((box[1] + box[3]) - (ref[1] + ref[3])) / 2) / boxSide(ref);

/** Landmarks in crop units of crop = [cx, cy, side, angle] ([0, 1] = inside; the square turned by
 * -angle, as cropMatrix(cx, cy, side, S, -angle)): core.tracking.in_crop. */
export function inCrop(pts, crop) {
  const [cx, cy, side, angle] = crop, a = -angle * Math.PI / 180, co = Math.cos(a), si = Math.sin(a);
  const u = new Float64Array(pts.length);
  for (let i = 0; i < pts.length; i += 2) {
    const dx = pts[i] - cx, dy = pts[i + 1] - cy;
    u[i] = (co * dx - si * dy) / side + 0.5;
    u[i + 1] = (si * dx + co * dy) / side + 0.5;
  }
  return u;
}

/** core.tracking.box_crop: [cx, cy, side, 0], the axis-aligned crop around a landmark-box estimate. */
export const boxCrop = (box) => [...cropFromBox(box), 0.0];

const mean = (pts, from, to) => { // mean point of landmarks from..to-1
  let x = 0, y = 0;
  for (let i = from; i < to; i++) { x += pts[2 * i]; y += pts[2 * i + 1]; }
  return [x / (to - from), y / (to - from)];
};

/** core.image_faces.roll_deg: angle of the eye-centre line (36-41 -> 42-47), degrees, y down. */
export function rollDeg(pts) {
  const r = mean(pts, 36, 42), l = mean(pts, 42, 48);
  return Math.atan2(l[1] - r[1], l[0] - r[0]) * 180 / Math.PI;
}

export const INTEROCULAR_MIN_SHARE = 0.25; // core.image_faces: normaliser floor, share of the landmark box's side

/** core.image_faces.uncertainty_ratio: sigma / max(inter-ocular (points 36, 45), 0.25 x landmark-box side). */
export function uncertaintyRatio(pts, sigma) {
  const iod = Math.hypot(pts[2 * 45] - pts[2 * 36], pts[2 * 45 + 1] - pts[2 * 36 + 1]);
  const [x0, y0, x1, y1] = landmarkBox(pts);
  return sigma / Math.max(iod, INTEROCULAR_MIN_SHARE * Math.max(x1 - x0, y1 - y0), 1e-6);
}

/** core.image_faces.upright_box: [cx, cy, side] of the points' box in the frame turned by -angle
 * about their mean (centre mapped back to the image, side at least 1). */
export function uprightBox(pts, angle) {
  const n = pts.length / 2, c = mean(pts, 0, n), a = -angle * Math.PI / 180;
  const co = Math.cos(a), si = Math.sin(a);
  let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
  for (let i = 0; i < n; i++) {
    const dx = pts[2 * i] - c[0], dy = pts[2 * i + 1] - c[1];
    const qx = co * dx - si * dy + c[0], qy = si * dx + co * dy + c[1];
    x0 = Math.min(x0, qx); x1 = Math.max(x1, qx); y0 = Math.min(y0, qy); y1 = Math.max(y1, qy);
  }
  const mx = (x0 + x1) / 2 - c[0], my = (y0 + y1) / 2 - c[1], b = angle * Math.PI / 180;
  return [Math.cos(b) * mx - Math.sin(b) * my + c[0], Math.sin(b) * mx + Math.cos(b) * my + c[1],
          Math.max(x1 - x0, y1 - y0, 1.0)];
}

/** core.tracking.landmark_crop: [cx, cy, side, angle], the square around landmarks turned upright by their roll. */
export function landmarkCrop(pts) {
  const a = rollDeg(pts), [cx, cy, side] = uprightBox(pts, a);
  return [cx, cy, CROP_SCALE * side, a];
}
