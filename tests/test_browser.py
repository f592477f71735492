"""End-to-end: the app in headless Chromium (Playwright driving the Debian `chromium` package), every
tab on a desktop (1366x900) and a phone (390x844) viewport:
- Upload: the astronaut photo gives an annotated result and a zoom per face; on the phone the result
  starts on the first screen (the test fails if it is below it); a bad upload shows a message.
- Webcam: streams Chromium's fake camera (a still of the astronaut) with its FPS / device line
  (desktop); the tab and its camera control show on the phone.
- Occlusion: opening the tab runs the comparison; the legend sits beside the images on the
  desktop; typing a slider value and pressing Enter reruns it.
- Benchmark: one table with the models, the CED legend below the plot area (not over it), and on
  the phone the table scrolls sideways to its last column; the "Webcam frames" set shows its rows.

CI needs:  apt-get install -y chromium   and   pip install playwright   (no `playwright install`:
the system Chromium is used). Skipped, with the reason, when either is missing.
PNG captures of each check go to $SDFL_BROWSER_SHOTS when that is set."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from browser_env import CHROMIUM, CHROMIUM_ARGS, NO_CHROMIUM, chromium_found, free_port

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

ROOT = Path(__file__).resolve().parent.parent
ASTRONAUT = ROOT / "app" / "examples" / "astronaut.jpg"
VIEWPORTS = {"desktop": {"width": 1366, "height": 900}, "phone": {"width": 390, "height": 844}}
SHOTS = os.environ.get("SDFL_BROWSER_SHOTS")

if not chromium_found():
    pytest.skip(NO_CHROMIUM, allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="needs Playwright (pip install playwright)")


@pytest.fixture(scope="module")
def url(tiny_weights, tiny_fc_weights):
    from app.ui import build_demo, launch

    demo = build_demo(tiny_weights, tiny_fc_weights, webcam_slots=1)  # Benchmark tab: benchmarks/results
    port = free_port()
    launch(demo, "127.0.0.1", port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/"
    demo.close()


def fake_camera(path: Path) -> Path:
    """An MJPEG 'camera' for Chromium's --use-file-for-fake-video-capture: the astronaut's face,
    640x480."""
    import cv2

    img = cv2.imread(str(ASTRONAUT))
    ok, buf = cv2.imencode(".jpg", cv2.resize(img[0:300, 100:400], (640, 480)))
    assert ok
    path.write_bytes(buf.tobytes() * 10)
    return path


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    camera = fake_camera(tmp_path_factory.mktemp("camera") / "face.mjpeg")
    args = CHROMIUM_ARGS + ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                            f"--use-file-for-fake-video-capture={camera}"]
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=args)
        yield b
        b.close()


@pytest.fixture(scope="module", params=list(VIEWPORTS))
def page(request, browser, url):
    phone = request.param == "phone"
    context = browser.new_context(viewport=VIEWPORTS[request.param], permissions=["camera"],
                                  is_mobile=phone, has_touch=phone, device_scale_factor=2 if phone else 1)
    # Only the local server: no fonts/CDNs from the internet (CI runs offline).
    local = ("http://127.0.0.1", "data:", "blob:")
    context.route("**/*", lambda route: route.continue_() if route.request.url.startswith(local) else route.abort())
    pg = context.new_page()
    pg.set_default_timeout(180_000)
    pg.set_default_navigation_timeout(300_000)  # a busy CI machine serves the page slowly
    pg.viewport_name = request.param
    pg.goto(url, wait_until="domcontentloaded")
    yield pg
    context.close()


def shot(page, name: str):
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / f"{page.viewport_name}_{name}.png"), full_page=True)


def wait_text(page, selector: str, pattern: str, timeout: int = 180_000):
    page.wait_for_function(
        "([sel, pat]) => { const e = document.querySelector(sel); return e && new RegExp(pat).test(e.innerText); }",
        arg=[selector, pattern], timeout=timeout)


def open_tab(page, name: str):
    """Click a tab, through Gradio's "More tabs" menu when the screen is too narrow for all."""
    page.locator("[role=tab]").first.wait_for(state="visible")  # the tab bar has rendered
    tab = page.get_by_role("tab", name=name, exact=True)
    if tab.count() and tab.first.is_visible():
        tab.first.click()
        return
    page.get_by_role("button", name="More tabs").click()
    page.locator(".overflow-dropdown button", has_text=name).first.click()


def test_upload_result_on_the_first_screen(page):
    page.reload(wait_until="domcontentloaded")
    page.locator("#upload-input input[type=file]").set_input_files(str(ASTRONAUT))
    result = page.locator("#upload-output img")
    result.wait_for(state="visible", timeout=180_000)
    wait_text(page, "#upload-status", r"face\(s\)")
    assert "1 face(s)" in page.locator("#upload-status").inner_text()
    page.locator("#upload-faces img").first.wait_for(state="visible")  # the zoom on the face
    box = result.bounding_box()
    assert box and box["width"] > 100 and box["height"] > 100
    top = box["y"] + page.evaluate("window.scrollY")  # in page coordinates: independent of scrolling
    screen = VIEWPORTS[page.viewport_name]["height"]
    assert top + 0.5 * box["height"] <= screen, (
        f"{page.viewport_name}: the result starts {top:.0f} px down, half of it below the first screen ({screen} px)")
    src = result.get_attribute("src") or ""
    assert src.startswith(("http", "/", "data:image", "blob:"))
    assert page.locator("#upload-json a, #upload-json [download]").count() >= 1  # JSON to download
    shot(page, "upload")


def test_bad_upload_shows_a_message(page, tmp_path):
    bad = tmp_path / "notes.jpg"
    bad.write_text("not an image\n" * 50)
    page.reload(wait_until="domcontentloaded")
    page.locator("#upload-input input[type=file]").set_input_files(str(bad))
    wait_text(page, "#upload-status", "not an image", 120_000)


def test_webcam_tab(page):
    page.reload(wait_until="domcontentloaded")
    open_tab(page, "Webcam")
    access = page.get_by_text("Click to Access Webcam")
    access.wait_for(state="visible")
    if page.viewport_name == "phone":  # the tab and its camera control fit the phone
        box = access.bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= VIEWPORTS["phone"]["width"] + 1
        shot(page, "webcam")
        return
    access.click()
    page.locator("#webcam-input button:has-text('Record')").first.click()
    wait_text(page, "#webcam-status", r"FPS[\s\S]*Device", 120_000)  # the labelled readout (app.webcam)
    page.locator("#webcam-output img").wait_for(state="visible")
    status = page.locator("#webcam-status").inner_text()
    assert "Frames received from the browser" in status and "ms per frame" in status and "face" in status
    shot(page, "webcam")
    page.locator("#webcam-input button:has-text('Stop')").first.click()


def test_occlusion_tab(page):
    page.reload(wait_until="domcontentloaded")
    open_tab(page, "Occlusion")
    wait_text(page, "#occlusion-graph-text", "moved")
    wait_text(page, "#occlusion-status", "Reading")
    graph, legend = page.locator("#occlusion-graph"), page.locator("#occlusion-legend")
    assert "1σ" in legend.inner_text() and "ground truth" in legend.inner_text()
    if page.viewport_name == "desktop":  # legend beside the images, not below them
        g, lg = graph.bounding_box(), legend.bounding_box()
        assert lg["x"] > g["x"] + g["width"] - 1 and lg["y"] < g["y"] + g["height"]
    before = page.locator("#occlusion-graph-text").inner_text()
    box = page.locator("#occlusion-x input[type=number]")
    box.fill("0.3")
    box.press("Enter")
    page.wait_for_function("(old) => document.querySelector('#occlusion-graph-text').innerText !== old",
                           arg=before, timeout=180_000)
    shot(page, "occlusion")


def test_benchmark_tab(page):
    page.reload(wait_until="domcontentloaded")
    open_tab(page, "Benchmark")
    table = page.locator("#benchmark-table")
    table.wait_for(state="visible")
    wait_text(page, "#benchmark-table", "dlib")
    text = table.inner_text()
    assert "flagship" in text and "fast tier" in text and "may have seen these test photos" in text
    assert "skipped" not in page.locator("#benchmark-note").inner_text()
    plot = page.locator("#benchmark-plot")
    plot.locator(".legend").first.wait_for(state="attached")
    legend = plot.locator(".legend").first.bounding_box()
    area = plot.locator(".nsewdrag").first.bounding_box()  # plotly's plotting area
    assert legend["y"] >= area["y"] + area["height"] - 1, "the CED legend covers the curves"
    if page.viewport_name == "phone":  # the last column can be reached by scrolling the table sideways
        last = page.locator("#benchmark-table th").last
        last.scroll_into_view_if_needed()
        b = last.bounding_box()
        assert b and b["x"] < VIEWPORTS["phone"]["width"] and b["x"] + b["width"] > 0
    shot(page, "benchmark")
    page.locator("#benchmark-set").get_by_text("Webcam frames").click()  # the camera protocol's rows
    wait_text(page, "#benchmark-note", "dim webcam")
    text = table.inner_text()
    assert "flagship" in text and "dlib" in text
    shot(page, "benchmark_webcam")
