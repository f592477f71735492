// The overlays of core/overlays.py on a canvas 2D context: graph edges coloured (plasma) and
// thickened by the per-image edge weight (strongest on top), 1-sigma / 2-sigma error ellipses,
// points, landmark box. Sizes scale with the face as in overlays.py.
const PLASMA = "0d088710078813078916078a19068c1b068d1d068e20068f2206902406912605912805922a05932c05942e05952f059631059733059735049837049938049a3a049a3c049b3e049c3f049c41049d43039e44039e46039f48039f4903a04b03a14c02a14e02a25002a25102a35302a35502a45601a45801a45901a55b01a55c01a65e01a66001a66100a76300a76400a76600a76700a86900a86a00a86c00a86e00a86f00a87100a87201a87401a87501a87701a87801a87a02a87b02a87d03a87e03a88004a88104a78305a78405a78606a68707a68808a68a09a58b0aa58d0ba58e0ca48f0da4910ea3920fa39410a29511a19613a19814a099159f9a169f9c179e9d189d9e199da01a9ca11b9ba21d9aa31e9aa51f99a62098a72197a82296aa2395ab2494ac2694ad2793ae2892b02991b12a90b22b8fb32c8eb42e8db52f8cb6308bb7318ab83289ba3388bb3488bc3587bd3786be3885bf3984c03a83c13b82c23c81c33d80c43e7fc5407ec6417dc7427cc8437bc9447aca457acb4679cc4778cc4977cd4a76ce4b75cf4c74d04d73d14e72d24f71d35171d45270d5536fd5546ed6556dd7566cd8576bd9586ada5a6ada5b69db5c68dc5d67dd5e66de5f65de6164df6263e06363e16462e26561e26660e3685fe4695ee56a5de56b5de66c5ce76e5be76f5ae87059e97158e97257ea7457eb7556eb7655ec7754ed7953ed7a52ee7b51ef7c51ef7e50f07f4ff0804ef1814df1834cf2844bf3854bf3874af48849f48948f58b47f58c46f68d45f68f44f79044f79143f79342f89441f89540f9973ff9983ef99a3efa9b3dfa9c3cfa9e3bfb9f3afba139fba238fca338fca537fca636fca835fca934fdab33fdac33fdae32fdaf31fdb130fdb22ffdb42ffdb52efeb72dfeb82cfeba2cfebb2bfebd2afebe2afec029fdc229fdc328fdc527fdc627fdc827fdca26fdcb26fccd25fcce25fcd025fcd225fbd324fbd524fbd724fad824fada24f9dc24f9dd25f8df25f8e125f7e225f7e425f6e626f6e826f5e926f5eb27f4ed27f3ee27f3f027f2f227f1f426f1f525f0f724f0f921"; // cv2.COLORMAP_PLASMA, 256 RGB entries
export const POINT_COLOR = "rgb(0,255,128)";
export const BOX_COLOR = "rgb(255,200,0)";
export const ELLIPSE_COLORS = ["rgb(255,64,64)", "rgb(255,170,0)"]; // 1-sigma, 2-sigma

function plasma(v) {
  const i = Math.round(Math.min(1, Math.max(0, v)) * 255) * 6;
  return "#" + PLASMA.slice(i, i + 6);
}

/** Undirected edges i < j of an (N x N) 0/1 neighbourhood (flat array). */
export function graphEdges(neighbours, n) {
  const edges = [];
  for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) {
    if (neighbours[i * n + j] > 0 || neighbours[j * n + i] > 0) edges.push([i, j]);
  }
  return edges;
}

export function faceScale(pts) {
  let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity, k = 0;
  for (let i = 0; i < pts.length; i += 2) {
    if (!Number.isFinite(pts[i]) || !Number.isFinite(pts[i + 1])) continue;
    x0 = Math.min(x0, pts[i]); x1 = Math.max(x1, pts[i]); y0 = Math.min(y0, pts[i + 1]); y1 = Math.max(y1, pts[i + 1]); k++;
  }
  return k < 2 ? 100 : Math.max(x1 - x0, y1 - y0, 1);
}

const thickness = (scale, f = 1) => Math.max(1, Math.round(f * scale / 200));

/** Semi-axes (major first) and angle (rad, from +x towards +y) of the k-sigma ellipse of [c00, c01, c10, c11]. */
export function ellipseAxes(c00, c01, c10, c11, k = 1) {
  const b = (c01 + c10) / 2, tr = (c00 + c11) / 2, dd = Math.hypot((c00 - c11) / 2, b);
  const l1 = Math.max(tr + dd, 0), l2 = Math.max(tr - dd, 0);
  const ang = 0.5 * Math.atan2(2 * b, c00 - c11);
  return [k * Math.sqrt(l1), k * Math.sqrt(l2), ang];
}

export function drawGraph(ctx, pts, edges, adj, n) {
  if (!edges.length) return;
  const w = edges.map(([i, j]) => (adj ? Math.max(adj[i * n + j], adj[j * n + i]) : 1));
  const lo = Math.min(...w), hi = Math.max(...w);
  const rel = w.map((v) => (hi - lo > 1e-9 ? (v - lo) / (hi - lo) : 0.6));
  const scale = faceScale(pts), tmax = Math.max(2, scale / 90);
  // one path per (colour, width): same picture as edge-by-edge strokes in weight order, fewer calls
  const groups = new Map();
  rel.forEach((r, e) => {
    const c = Math.round(Math.min(1, Math.max(0, 0.15 + 0.85 * r)) * 255);
    const key = c * 1024 + Math.max(1, Math.round(1 + r * (tmax - 1)));
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push(e);
  });
  ctx.lineCap = "round";
  for (const key of [...groups.keys()].sort((a, b) => a - b)) { // weakest first, strongest on top
    ctx.strokeStyle = plasma(Math.floor(key / 1024) / 255);
    ctx.lineWidth = key % 1024;
    ctx.beginPath();
    for (const e of groups.get(key)) {
      const [i, j] = edges[e];
      ctx.moveTo(pts[2 * i], pts[2 * i + 1]); ctx.lineTo(pts[2 * j], pts[2 * j + 1]);
    }
    ctx.stroke();
  }
}

export function drawEllipses(ctx, pts, cov, limit) {
  ctx.lineWidth = thickness(faceScale(pts));
  [1, 2].forEach((k, c) => {
    ctx.strokeStyle = ELLIPSE_COLORS[c];
    ctx.beginPath();
    for (let i = 0; i < pts.length / 2; i++) {
      const [a, b, ang] = ellipseAxes(cov[4 * i], cov[4 * i + 1], cov[4 * i + 2], cov[4 * i + 3], k);
      if (![a, b, pts[2 * i], pts[2 * i + 1]].every(Number.isFinite)) continue;
      ctx.moveTo(pts[2 * i] + Math.min(a, limit) * Math.cos(ang), pts[2 * i + 1] + Math.min(a, limit) * Math.sin(ang));
      ctx.ellipse(pts[2 * i], pts[2 * i + 1], Math.min(a, limit), Math.min(b, limit), ang, 0, 2 * Math.PI);
    }
    ctx.stroke();
  });
}

export function drawPoints(ctx, pts) {
  const r = Math.max(1.5, faceScale(pts) / 110);
  ctx.fillStyle = POINT_COLOR;
  ctx.beginPath();
  for (let i = 0; i < pts.length; i += 2) {
    if (!Number.isFinite(pts[i]) || !Number.isFinite(pts[i + 1])) continue;
    ctx.moveTo(pts[i] + r, pts[i + 1]);
    ctx.arc(pts[i], pts[i + 1], r, 0, 2 * Math.PI);
  }
  ctx.fill();
}

export function drawBox(ctx, box) {
  const [x0, y0, x1, y1] = box;
  ctx.strokeStyle = BOX_COLOR;
  ctx.lineWidth = thickness(Math.max(x1 - x0, y1 - y0));
  ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
}

/** One face with the chosen overlays, back to front: box, graph, ellipses, points (overlays.draw_face). */
export function drawFace(ctx, face, edges, n, opts, width, height) {
  if (opts.box && face.box) drawBox(ctx, face.box);
  if (opts.graph && edges) drawGraph(ctx, face.landmarks, edges, face.adjacency, n);
  if (opts.ellipses && face.covariance) drawEllipses(ctx, face.landmarks, face.covariance, 4 * Math.max(width, height));
  if (opts.points) drawPoints(ctx, face.landmarks);
}
