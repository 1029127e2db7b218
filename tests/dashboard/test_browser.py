"""One real-browser pass: `streamlit run dashboard/app.py` on 127.0.0.1 with the fixture run,
Debian's chromium driven by Playwright opens every page, waits until the app is idle, checks
that plots and images rendered and that no exception is shown, and saves screenshots into
tests/screenshots/ (git-ignored).

Skipped only when /usr/bin/chromium is absent (.ci/run installs it). Never `playwright
install`: the system chromium is used through executable_path.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[2]
SHOTS = REPO / "tests" / "screenshots"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'
# url path -> (screenshot name, what must have rendered)
PAGES = {
    "": ("overview", ("plot",)),
    "reconstructions": ("reconstructions", ("image",)),
    "weights": ("weights", ("plot",)),
    "features": ("features", ("plot",)),
    "scores": ("scores", ("plot", "table")),
    "compare": ("compare", ("plot", "table", "image")),  # opens on the sweep beside the run
    "train": ("train", ()),
    "start": ("start", ()),
}
SELECTORS = {"plot": '[data-testid="stPlotlyChart"] .main-svg', "image": '[data-testid="stImage"] img',
             "table": '[data-testid="stDataFrame"]'}
PAGE_TIMEOUT_MS = 240_000
NAV_TITLES = ("Overview", "Reconstructions", "Weights", "Features", "Scores", "Compare", "Get started", "Train")
NAV_PATHS = {"Overview": "", "Get started": "start"} | {t: t.lower() for t in NAV_TITLES[1:6] + ("Train",)}
LIVE_WORK_MS = 90_000  # how long the live test lets a page finish before clicking on
LIVE_HEADER_MS = 60_000  # header of a page opened during training (it waits for the previous page's work)

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is absent (.ci/run installs it)")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, process: subprocess.Popen, timeout: float = 90.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"streamlit exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"streamlit did not answer at {url} within {timeout}s")


def serve(run_paths: list[Path], tmp_path_factory):
    """`streamlit run dashboard/app.py` on 127.0.0.1 over copies of runs (or sweep folders);
    yields (url, runs folder)."""
    root = tmp_path_factory.mktemp("browser_runs")
    for run_path in run_paths:
        shutil.copytree(run_path, root / run_path.name, ignore=shutil.ignore_patterns("cache"))
    port = free_port()
    log = (tmp_path_factory.mktemp("browser_log") / "streamlit.log").open("w")
    env = dict(os.environ, RECONSCOPE_CHECKPOINTS=str(root), PYTHONUNBUFFERED="1")
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "dashboard/app.py", "--server.address", "127.0.0.1",
         "--server.port", str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false",
         "--client.showErrorDetails", "full"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process)
        yield url, root
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@pytest.fixture(scope="module")
def served(tiny_run, tiny_sweep, tmp_path_factory):
    yield from serve([tiny_run.path, tiny_sweep], tmp_path_factory)


@pytest.fixture(scope="module")
def server(served):
    return served[0]


@pytest.fixture(scope="module")
def flat_server(flat_run, tmp_path_factory):
    for url, _root in serve([flat_run.path], tmp_path_factory):
        yield url


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield instance
        instance.close()


def settle(page) -> None:
    """Idle twice with a pause between: a page may rerun once after its first run."""
    page.wait_for_selector('[data-testid="stMain"] h1', timeout=PAGE_TIMEOUT_MS)
    page.wait_for_selector(IDLE, timeout=PAGE_TIMEOUT_MS)
    time.sleep(1.0)
    page.wait_for_selector(IDLE, timeout=PAGE_TIMEOUT_MS)


def page_problems(page, name: str) -> list[str]:
    """An exception or an error box on the page, as sentences."""
    problems = []
    if page.locator('[data-testid="stException"]').count():
        problems.append(f"{name}: exception shown: {page.locator('[data-testid=stException]').first.inner_text()}")
    for box in page.locator('[data-testid="stAlertContentError"]').all():
        problems.append(f"{name}: error box: {box.inner_text()[:300]}")
    return problems


def open_every_page(url: str, browser, prefix: str = "") -> list[str]:
    """Visits every page; returns what went wrong (a missing plot or image, an exception or
    error box), and saves a screenshot of each page."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1440, "height": 2600})
    problems = []
    for path, (name, needs) in PAGES.items():
        page.goto(f"{url}/{path}")
        settle(page)
        for need in needs:
            try:
                page.wait_for_selector(SELECTORS[need], timeout=30_000)
            except Exception:  # noqa: BLE001 - collected and reported together below
                problems.append(f"{name}: no {need} rendered")
        problems += page_problems(page, name)
        page.screenshot(path=str(SHOTS / f"{prefix}{name}.png"), full_page=True)
    page.close()
    return problems


def test_every_page_renders_in_a_real_browser(server, browser):
    problems = open_every_page(server, browser)
    assert not problems, "\n".join(problems)


def test_every_page_opens_on_a_flat_unlabeled_run(flat_server, browser):
    """The homework job: flat train/ with a category CSV, an unlabeled shuffled test/."""
    problems = open_every_page(flat_server, browser, prefix="flat_")
    assert not problems, "\n".join(problems)


def test_moving_the_epoch_slider_redraws_reconstructions(server, browser):
    page = browser.new_page(viewport={"width": 1440, "height": 2600})
    page.goto(f"{server}/reconstructions")
    settle(page)
    first_image = page.locator(SELECTORS["image"]).first
    first_image.wait_for(timeout=30_000)
    before = first_image.get_attribute("src")
    thumb = page.locator('[data-testid="stSidebar"] [data-testid="stSlider"] input[type="range"]').first
    thumb.focus()
    at_start = thumb.get_attribute("value") == thumb.get_attribute("min")
    thumb.press("End" if at_start else "Home")  # to the other end of the epochs
    page.wait_for_function(
        "before => { const img = document.querySelector('[data-testid=\"stImage\"] img');"
        " return img && img.getAttribute('src') !== before; }", arg=before, timeout=PAGE_TIMEOUT_MS)
    settle(page)
    assert not page.locator('[data-testid="stException"]').count()
    page.screenshot(path=str(SHOTS / "reconstructions_other_epoch.png"), full_page=True)
    page.close()


def pick_run(page, label: str) -> None:
    """Selects a run in the sidebar's run picker by its label (e.g. "grid2x2/loss-l1_skips-all")."""
    page.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"]').first.click()
    page.get_by_role("option", name=label, exact=True).click()
    settle(page)


def open_from_sidebar(page, title: str) -> None:
    """Opens a page by its navigation link: the session (and its run choice) is kept."""
    page.locator('[data-testid="stSidebarNav"]').get_by_text(title, exact=True).click()
    page.wait_for_function("t => [...document.querySelectorAll('[data-testid=\"stMain\"] h1')]"
                           ".some(h => h.innerText.trim() === t)", arg=title, timeout=PAGE_TIMEOUT_MS)
    settle(page)


def test_start_training_with_a_missing_data_folder_creates_no_run_and_says_why(served, browser):
    url, root = served
    page = browser.new_page(viewport={"width": 1280, "height": 2000})
    page.goto(f"{url}/train")
    settle(page)
    missing = root.parent / "no_such_data_folder"
    for name, value in (("Run name", "nodata"), ("Data folder", str(missing))):
        box = page.locator('[data-testid="stMain"]').get_by_role("textbox", name=name, exact=True)
        box.fill(value)
        box.press("Enter")
        settle(page)
    page.get_by_role("button", name="Start training").click()
    refusal = page.locator('[data-testid="stAlertContentError"]').filter(has_text="Cannot start")
    refusal.wait_for(timeout=30_000)
    settle(page)
    page.screenshot(path=str(SHOTS / "train_refused_missing_data.png"), full_page=True)
    assert str(missing) in refusal.inner_text(), refusal.inner_text()
    assert not (root / "nodata").exists(), "a refused launch created a run folder"
    assert not page.locator('[data-testid="stException"]').count()
    page.close()


def test_compare_opens_on_all_four_runs_of_a_2x2_sweep(served, browser):
    url, _root = served
    page = browser.new_page(viewport={"width": 1280, "height": 2600})
    page.goto(f"{url}/weights")
    settle(page)
    pick_run(page, "grid2x2/loss-l2_skips-none")
    open_from_sidebar(page, "Compare")
    members = ("loss-l1_skips-all", "loss-l1_skips-none", "loss-l2_skips-all", "loss-l2_skips-none")
    caption = page.get_by_text("4 runs: ", exact=False)
    caption.wait_for(timeout=30_000)
    assert all(m in caption.inner_text() for m in members), caption.inner_text()
    page.wait_for_selector(SELECTORS["plot"], timeout=60_000)
    legend = set(page.locator('[data-testid="stPlotlyChart"]').first.locator(".legendtext")
                 .evaluate_all("texts => texts.map(t => t.textContent.trim())"))
    assert legend == set(members), f"the curves show {sorted(legend)}"
    page.screenshot(path=str(SHOTS / "compare_sweep_default.png"), full_page=True)
    assert not page_problems(page, "Compare")
    page.close()


def test_clicking_a_point_on_the_overview_opens_that_epoch(served, browser):
    """A click on the loss chart moves the sidebar's epoch (every page follows it)."""
    from core.runs.folder import Run

    url, root = served
    epochs = Run(root / "tiny").epochs()
    page = browser.new_page(viewport={"width": 1280, "height": 2000})
    page.goto(f"{url}/reconstructions")
    settle(page)
    pick_run(page, "tiny")
    open_from_sidebar(page, "Overview")
    slider = page.locator('[data-testid="stSidebar"] [data-testid="stSlider"] input[type="range"]').first
    at_start = slider.get_attribute("value") == slider.get_attribute("min")
    target, end = (epochs[-1], "max") if at_start else (epochs[0], "min")
    points = page.locator('[data-testid="stPlotlyChart"]').first.locator(".scatterlayer .trace").first
    box = points.locator("path.point").nth(-1 if at_start else 0).bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_function("end => { const s = document.querySelector('[data-testid=\"stSidebar\"] "
                           "[data-testid=\"stSlider\"] input[type=\"range\"]'); return s && s.value === "
                           "s.getAttribute(end); }", arg=end, timeout=60_000)
    settle(page)
    header = page.locator('[data-testid="stMain"] [data-testid="stCaptionContainer"]').first.inner_text()
    assert f"epoch {target}" in header, header
    page.screenshot(path=str(SHOTS / "overview_clicked_epoch.png"), full_page=True)
    page.close()


def test_launch_from_the_train_page_then_browse_while_it_trains(served, browser):
    """Start training switches to the new run's live panel within seconds; every page opens
    while it trains, its header within seconds, without an error box."""
    from core.runs.folder import Run
    from core.training.jobs import stop_training, wait_for

    url, root = served
    page = browser.new_page(viewport={"width": 1440, "height": 2600})
    page.goto(f"{url}/train")
    settle(page)
    page.get_by_role("textbox", name="Run name").fill("live")
    page.get_by_role("textbox", name="Run name").press("Enter")
    settle(page)
    page.get_by_role("spinbutton", name="Epochs", exact=True).fill("500")  # still training while the pages are opened
    page.get_by_role("spinbutton", name="Epochs", exact=True).press("Enter")
    settle(page)
    started = time.time()
    page.get_by_role("button", name="Start training").click()
    run = Run(root / "live")
    try:
        page.get_by_text("Job of live").wait_for(timeout=15_000)  # the assert below names the time
        switched_s = time.time() - started
        page.screenshot(path=str(SHOTS / "live_train_launched.png"), full_page=True)
        picker = page.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"]').first
        shown = picker.locator("input").first.input_value() or picker.inner_text()
        assert "live" in shown, f"the sidebar's run picker shows {shown!r}"
        print(f"live panel after {switched_s:.1f} s")
        assert switched_s < 5, f"the live panel took {switched_s:.1f} s"
        deadline = time.time() + 180
        while not run.epochs():
            assert time.time() < deadline and run.status().get("state") != "failed", run.status()
            time.sleep(0.5)
        problems = []
        for title in NAV_TITLES:
            page.goto(f"{url}/{NAV_PATHS[title]}")
            started = time.time()
            page.wait_for_function("t => [...document.querySelectorAll('[data-testid=\"stMain\"] h1')]"
                                   ".some(h => h.innerText.trim() === t)", arg=title, timeout=LIVE_HEADER_MS)
            header_s = time.time() - started
            time.sleep(4.0)  # what is cached draws; the rest may keep computing under a progress bar
            problems += page_problems(page, title)
            try:  # let the page finish its work before the next click (a click waits for it)
                page.wait_for_selector(IDLE, timeout=LIVE_WORK_MS)
            except Exception:  # noqa: BLE001 - still scoring epochs: move on all the same
                pass
            page.screenshot(path=str(SHOTS / f"live_{title.lower().replace(' ', '_')}.png"), full_page=True)
            print(f"{title}: header after {header_s:.1f} s while training")
        assert run.is_training(), "the run ended before every page was opened: raise its epochs"
        assert not problems, "\n".join(problems)
    finally:
        stop_training(run)
        wait_for(run, timeout=60)
    page.close()
