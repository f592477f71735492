// In-browser webcam: camera, detector, landmark model and drawing all run in this page (ONNX
// Runtime Web: WebGPU where the browser has it, WASM otherwise). The server only serves files.
import { Aligner } from "./pipeline.js";
import { FaceDetector } from "./detector.js";
import { drawFace, graphEdges } from "./draw.js";

const BASE = new URL(".", import.meta.url); // .../static/
const ROOT = new URL("..", BASE); // the page's root: config.json, models/, vendor/
const AUTO_SLOW_MS = 30; // auto model: the fast tier when the default model takes longer per frame (median)
const AUTO_FRAMES = 8; // frames measured before that choice
const MAX_THREADS = 4;
const WARMUP_MS = 20000; // WebGPU: first run (shader compilation) allowed this long before WASM takes over
const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const state = { ort: null, backend: null, adapter: "", threads: 1, detector: null, aligner: null, model: null,
                meta: {}, edges: {}, stream: null, running: false, notes: [], autoTimes: [] };
const stats = { framesDrawn: 0, fps: 0, modelMs: 0, frameMs: 0, faces: 0, backend: "", adapter: "", model: "",
                threads: 1, lastFaces: [], ready: false, error: "", times: [] };
window.sdflStats = stats;

function message(text, kind = "info") {
  const el = $("message");
  el.textContent = text;
  el.className = kind;
  el.hidden = !text;
}

function note(text) {
  if (!state.notes.includes(text)) state.notes.push(text);
  $("notes").innerHTML = state.notes.map((n) => `<li>${n}</li>`).join("");
}

async function webgpuAdapter() {
  if (!("gpu" in navigator)) return null;
  try {
    const adapter = await navigator.gpu.requestAdapter();
    if (!adapter) return null;
    const info = adapter.info || (adapter.requestAdapterInfo ? await adapter.requestAdapterInfo() : {});
    const name = [info.vendor, info.architecture, info.device, info.description].filter(Boolean).join(" ");
    const software = info.isFallbackAdapter || adapter.isFallbackAdapter || /swiftshader|llvmpipe|software/i.test(name);
    return { adapter, name: name || "WebGPU adapter", software };
  } catch (e) {
    return null;
  }
}

/** Loads ONNX Runtime Web from this server (never a CDN), WebGPU build where usable. */
async function loadRuntime(config) {
  const want = params.get("backend") || "auto";
  let backend = "wasm";
  if (want !== "wasm") {
    const gpu = config.ort.webgpu ? await webgpuAdapter() : null;
    if (gpu && (!gpu.software || want === "webgpu")) { backend = "webgpu"; state.adapter = gpu.name; }
    else {
      note(gpu ? `WebGPU offers only a software adapter here (${gpu.name}): the model runs on WASM, which is faster.`
        : !("gpu" in navigator) ? "This browser has no WebGPU: the model runs on WASM (CPU)."
          : config.ort.webgpu ? "WebGPU gave no adapter here: the model runs on WASM (CPU)."
            : "The server carries no WebGPU build of ONNX Runtime Web: the model runs on WASM (CPU).");
    }
  }
  if (backend === "wasm") return loadWasmRuntime();
  const ort = await import(new URL("vendor/ort.min.mjs", ROOT).href); // WebGPU through JSEP (+ WASM kernels)
  setUp(ort, "webgpu");
}

async function loadWasmRuntime() {
  setUp(await import(new URL("vendor/ort.wasm.min.mjs", ROOT).href), "wasm");
  state.adapter = "";
}

function setUp(ort, backend) {
  ort.env.wasm.wasmPaths = new URL("vendor/", ROOT).href;
  const cap = Number(params.get("threads")) || MAX_THREADS;
  state.threads = self.crossOriginIsolated ? Math.max(1, Math.min(cap, navigator.hardwareConcurrency || 1)) : 1;
  ort.env.wasm.numThreads = state.threads;
  state.ort = ort;
  state.backend = backend;
}

function sessionOptions() {
  return { executionProviders: state.backend === "webgpu" ? ["webgpu", "wasm"] : ["wasm"],
           graphOptimizationLevel: "all" };
}

/** One run on a blank crop; rejects when WebGPU takes longer than WARMUP_MS (a stalled or
 * software device), so that the page falls back to WASM instead of drawing nothing. */
async function warmUp(session, size) {
  const x = new state.ort.Tensor("float32", new Float32Array(3 * size * size), [1, 3, size, size]);
  let timer;
  const late = new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`no result within ${WARMUP_MS / 1000} s`)), WARMUP_MS); });
  try {
    await Promise.race([session.run({ image: x }), late]);
  } finally {
    clearTimeout(timer);
  }
}

async function loadModel(config, id) {
  const spec = config.models.find((m) => m.id === id) || config.models[0];
  message(`Loading ${spec.label} ...`);
  if (!state.meta[spec.id]) {
    const meta = await (await fetch(new URL(spec.meta, ROOT))).json();
    state.meta[spec.id] = meta;
    state.edges[spec.id] = graphEdges(meta.neighbours, meta.num_landmarks);
  }
  let session;
  try {
    session = await state.ort.InferenceSession.create(new URL(spec.onnx, ROOT).href, sessionOptions());
    if (state.backend === "webgpu") await warmUp(session, state.meta[spec.id].input_size);
  } catch (e) {
    if (state.backend !== "webgpu") throw e;
    const url = new URL(location.href);
    url.searchParams.set("backend", "wasm");
    note(`WebGPU could not run ${spec.label} (${e.message || e}): WASM instead (if no frames appear, ` +
         `<a href="${url.href}">reload on WASM</a>).`);
    // a stalled WebGPU run keeps its runtime busy: a fresh WASM runtime (a separate module) takes over
    await loadWasmRuntime();
    state.detector = await createDetector(config);
    session = await state.ort.InferenceSession.create(new URL(spec.onnx, ROOT).href, sessionOptions());
  }
  state.model = spec;
  state.aligner = new Aligner(state.ort, session, state.meta[spec.id], state.detector,
                              { maxFaces: config.max_faces });
  Object.assign(stats, { model: spec.id, backend: state.backend === "webgpu" ? "WebGPU" : "WASM",
                         adapter: state.adapter, threads: state.threads });
  message("");
}

/** The face detector on WASM: both BlazeFace models (the full-range one loaded on the first call). */
function createDetector(config) {
  return FaceDetector.create(state.ort, new URL(config.detector, ROOT).href, { executionProviders: ["wasm"] },
                             config.detector_full ? new URL(config.detector_full, ROOT).href : null);
}

/** Frame pixels for the model: the video drawn on a work canvas. */
function grab(video, work) {
  const w = video.videoWidth, h = video.videoHeight;
  if (work.width !== w || work.height !== h) { work.width = w; work.height = h; }
  const ctx = work.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(video, 0, 0, w, h);
  const im = ctx.getImageData(0, 0, w, h);
  return { data: im.data, width: w, height: h, channels: 4 };
}

function overlayOptions() {
  return { points: $("ov-points").checked, graph: $("ov-graph").checked, ellipses: $("ov-ellipses").checked,
           box: $("ov-box").checked };
}

function render(canvas, source, faces) {
  const w = source.videoWidth || source.width, h = source.videoHeight || source.height;
  if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.drawImage(source, 0, 0, w, h);
  ctx.translate(0.5, 0.5); // landmarks: pixel centres at integers
  const opts = overlayOptions(), id = state.model.id;
  for (const f of faces) drawFace(ctx, f, state.edges[id], state.meta[id].num_landmarks, opts, w, h);
}

function updateCounter(now) {
  stats.times.push(now);
  while (stats.times.length && now - stats.times[0] > 1000) stats.times.shift();
  stats.fps = stats.times.length > 1 ? (stats.times.length - 1) * 1000 / (now - stats.times[0]) : 0;
  const gpu = stats.backend === "WebGPU" ? ` · GPU: ${stats.adapter || "unnamed adapter"}` : ` · ${stats.threads} thread(s)`;
  $("counter").textContent = `${stats.fps.toFixed(1)} frames/s drawn · model ${stats.modelMs.toFixed(1)} ms/frame · ` +
    `${stats.backend}${gpu} · ${state.model.label} · ${stats.faces} face(s)`;
}

async function maybeAutoSwitch(config) {
  if ((params.get("model") || $("model").value) !== "auto" || state.model.id !== config.default) return;
  state.autoTimes.push(stats.modelMs);
  if (state.autoTimes.length < AUTO_FRAMES) return;
  const t = [...state.autoTimes].sort((a, b) => a - b)[Math.floor(AUTO_FRAMES / 2)];
  state.autoTimes = [];
  if (t > AUTO_SLOW_MS && config.fast) {
    note(`Auto: ${state.model.label} took ${t.toFixed(0)} ms per frame here, so the fast model runs instead.`);
    await loadModel(config, config.fast);
  }
}

/** Processes the newest camera frame as soon as the previous one is drawn (a frame that arrives
 * while the model runs is not waited for twice); each camera frame is drawn at most once. */
async function loop(config, video, canvas, work) {
  let fresh = false, wake = null;
  const arrived = () => {
    fresh = true;
    if (wake) { const w = wake; wake = null; w(); }
    if (state.running) watch();
  };
  let lastTime = -1;
  const poll = () => { // no requestVideoFrameCallback: look for a new frame on every animation frame
    if (video.currentTime !== lastTime) { lastTime = video.currentTime; arrived(); } else if (state.running) watch();
  };
  const watch = () => (video.requestVideoFrameCallback ? video.requestVideoFrameCallback(arrived) : requestAnimationFrame(poll));
  watch();
  while (state.running) {
    if (!fresh) await new Promise((r) => { wake = r; });
    if (!state.running) break;
    fresh = false;
    try {
      const t0 = performance.now();
      const frame = grab(video, work);
      const t1 = performance.now();
      const faces = await state.aligner.predict(frame, null, video.currentTime || t0 / 1000);
      const t2 = performance.now();
      stats.modelMs = state.aligner.modelMs;
      render(canvas, video, faces);
      const t3 = performance.now();
      Object.assign(stats, { grabMs: t1 - t0, predictMs: t2 - t1, renderMs: t3 - t2, frameMs: t3 - t0 });
      stats.faces = faces.length;
      stats.lastFaces = faces.map((f) => ({ landmarks: Array.from(f.landmarks), box: f.box }));
      stats.framesDrawn += 1;
      updateCounter(performance.now());
      await maybeAutoSwitch(config);
    } catch (e) {
      stats.error = String(e.message || e);
      message(`Stopped: ${stats.error}`, "error");
      state.running = false;
    }
  }
}

async function start(config, load) {
  if (state.running) return;
  const video = $("video"), canvas = $("canvas"), work = $("work");
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    message("This page cannot reach a camera (the browser gives no camera API here: it needs https or " +
            "localhost). Use the server-side Webcam tab instead.", "error");
    return;
  }
  try {
    state.stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: false });
  } catch (e) {
    const denied = e && (e.name === "NotAllowedError" || e.name === "SecurityError");
    stats.error = e && e.name ? e.name : String(e);
    message(denied ? "Camera permission denied: allow the camera for this site (the camera icon in the address bar) " +
      "and press Start again, or use the server-side Webcam tab."
      : `No camera available (${stats.error}): connect one and press Start again, or use the server-side Webcam tab.`,
    "error");
    return;
  }
  video.srcObject = state.stream;
  await video.play();
  try {
    await load();
  } catch (e) {
    stop();
    return;
  }
  state.running = true;
  state.aligner.reset();
  $("start").textContent = "Stop";
  loop(config, video, canvas, work);
}

function stop() {
  state.running = false;
  if (state.stream) state.stream.getTracks().forEach((t) => t.stop());
  state.stream = null;
  $("start").textContent = "Start camera";
}

/** For tests and scripts: landmarks of an RGBA frame through the same pipeline. */
async function predictFrame(rgba, width, height, boxes = null, timestamp = null) {
  const faces = await state.aligner.predict({ data: rgba, width, height, channels: 4 }, boxes, timestamp);
  return faces.map((f) => ({ id: f.id, landmarks: Array.from(f.landmarks), box: f.box, score: f.score,
                             covariance: f.covariance && Array.from(f.covariance) }));
}

async function main() {
  let config;
  try {
    config = await (await fetch(new URL("config.json", ROOT))).json();
  } catch (e) {
    message(`Cannot read the page's configuration (${e}).`, "error");
    return;
  }
  if (!config.ort.wasm) {
    message("ONNX Runtime Web is not installed on this server (app/static/vendor/refresh.sh installs it): " +
            "use the server-side Webcam tab.", "error");
    stats.error = "no-runtime";
    return;
  }
  if (typeof WebAssembly !== "object") {
    message("This browser has no WebAssembly: use the server-side Webcam tab.", "error");
    return;
  }
  if (!self.crossOriginIsolated) {
    const solo = window.top === window ? "" : ` Open <a href="${location.href}" target="_blank">this page on its own</a> (sent cross-origin isolated) for threads.`;
    note(`WASM threads off: the page is not cross-origin isolated, so the CPU path uses 1 thread.${solo}`);
  }
  const select = $("model");
  const first = config.models.find((m) => m.id === config.default);
  const auto = first ? first.label.split(" (")[0] : "first model";
  select.innerHTML = `<option value="auto">auto (${auto}; fast tier on a slow device)</option>` +
    config.models.map((m) => `<option value="${m.id}">${m.label}</option>`).join("");
  if (params.get("model")) select.value = params.get("model");
  select.onchange = async () => {
    state.autoTimes = [];
    if (state.aligner) await loadModel(config, select.value === "auto" ? config.default : select.value);
  };
  // The runtime and the models load on the first Start (or window.sdfl.load()), not with the page:
  // a visitor who never opens the camera downloads nothing heavy.
  let loading = null;
  const load = () => {
    loading = loading || (async () => {
      await loadRuntime(config);
      state.detector = await createDetector(config);
      await loadModel(config, select.value === "auto" ? config.default : select.value);
    })().catch((e) => {
      stats.error = String(e.message || e);
      message(`Could not start the in-browser model: ${stats.error}. The server-side Webcam tab still works.`, "error");
      throw e;
    });
    return loading;
  };
  $("start").disabled = false;
  $("start").onclick = () => (state.running ? stop() : start(config, load));
  $("mirror").onchange = () => $("canvas").classList.toggle("mirror", $("mirror").checked);
  window.sdfl = { load, predictFrame: async (...a) => { await load(); return predictFrame(...a); }, state,
                  detect: async (rgba, width, height) => { // the face detector alone (tests)
                    await load();
                    return state.detector.detect({ data: rgba, width, height, channels: 4 });
                  },
                  reset: () => state.aligner && state.aligner.reset(),
                  counters: () => state.aligner && { detectorCalls: state.aligner.tracker.detectorCalls,
                                                     modelPasses: state.aligner.tracker.modelPasses } };
  stats.ready = true;
  $("counter").textContent = "Press Start camera: the detector, the landmark model and the runtime load in this page.";
  if (params.get("autostart")) start(config, load);
}

main();
