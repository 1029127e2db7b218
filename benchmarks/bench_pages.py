"""First-open time of every dashboard page, in a real browser, while a run trains and after.

    python benchmarks/bench_pages.py [--work DIR] [--size 64] [--epochs 40] [--timeout 300]

Builds a demo set under --work (default benchmarks/results/pages, git-ignored), starts
`streamlit run dashboard/app.py` on 127.0.0.1 over a fresh runs folder and launches one
training job there (core.training.jobs, with its background evaluator, as the Train page does). Once
the first epoch is saved, Debian's chromium (Playwright, executable_path=/usr/bin/chromium;
never `playwright install`) opens every page in a new browser session, one after the other,
and times from the navigation until:

* header: the page's h1 shows (the page is not blank);
* idle: the app's script has finished its first run (what the page computes in place);
* no bar: no progress bar is left on the page (the rest, e.g. epochs still being scored).
  The Train page's bar is the job's own progress, so it has none there ("job").

Each phase starts with one visit to Get started that is not in the table: a new server's first
page pays its imports (torch, plotly), and the warm-up prints that time.

Then the job is stopped, its background evaluator is let finish, the server is restarted (cold
Streamlit caches, the run's disk cache kept) and every page is timed again ("after").
A page that does not get there within --timeout seconds is printed as "> N".
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'
HEADER = '[data-testid="stMain"] h1'
BAR = '[data-testid="stMain"] [data-testid="stProgress"]'
PAGES = {"Overview": "", "Reconstructions": "reconstructions", "Weights": "weights", "Features": "features",
         "Scores": "scores", "Compare": "compare", "Train": "train", "Get started": "start"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(runs: Path, port: int, log: Path) -> subprocess.Popen:
    env = dict(os.environ, RECONSCOPE_CHECKPOINTS=str(runs), PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "dashboard/app.py", "--server.address", "127.0.0.1",
         "--server.port", str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false"],
        cwd=REPO, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    import urllib.request

    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2):
                return process
        except OSError:
            time.sleep(0.5)
    process.terminate()
    raise SystemExit(f"streamlit did not answer on port {port}; see {log}")


def stop_server(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def time_page(browser, url: str, title: str, timeout_s: float) -> dict[str, float | None]:
    """Seconds from navigation to header, idle and no progress bar, in a new session
    (None: not within timeout_s)."""
    context = browser.new_context(viewport={"width": 1280, "height": 1600})
    page = context.new_page()
    started = time.perf_counter()
    page.goto(f"{url}/{PAGES[title]}")
    times: dict[str, float | None] = {"header": None, "idle": None, "no bar": None}
    deadline = started + timeout_s

    def left_ms() -> float:
        return max(1.0, (deadline - time.perf_counter()) * 1000)

    try:
        page.wait_for_selector(HEADER, timeout=left_ms())
        times["header"] = time.perf_counter() - started
        page.wait_for_selector(IDLE, timeout=left_ms())
        times["idle"] = time.perf_counter() - started
        if title != "Train":  # its bar is the job's progress
            while page.locator(BAR).count() or not page.locator(IDLE).count():
                if time.perf_counter() > deadline:
                    raise TimeoutError
                time.sleep(0.2)
            times["no bar"] = time.perf_counter() - started
    except Exception:  # noqa: BLE001 - a timeout: the table says "> timeout"
        pass
    context.close()
    return times


def follower_alive(run: Path) -> bool:
    """Whether a `python -m core follow` process for this run is still running (Linux /proc)."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            words = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if b"follow" in words and any(str(run).encode() in w for w in words):
            return True
    return False


def measure_all(browser, url: str, timeout_s: float) -> dict[str, dict[str, float | None]]:
    """Every page once, each in a new session, after one warm-up visit that pays the server's
    first imports (torch, plotly): that cost is printed, not put in the table."""
    warm = time_page(browser, url, "Get started", timeout_s)
    print(f"  warm-up (a new server's first page, Get started): header {_fmt(warm['header'], timeout_s)} s",
          flush=True)
    results = {}
    for title in PAGES:
        results[title] = time_page(browser, url, title, timeout_s)
        shown = ", ".join(f"{k} {_fmt(v, timeout_s, title == 'Train' and k == 'no bar')}"
                          for k, v in results[title].items())
        print(f"  {title}: {shown}", flush=True)
    return results


def _fmt(value: float | None, timeout_s: float, train: bool = False) -> str:
    if train:
        return "job"
    return f"{value:.1f}" if value is not None else f"> {timeout_s:.0f}"


def table(during: dict, after: dict, timeout_s: float) -> str:
    lines = ["| page | during: header s | idle s | no bar s | after: header s | idle s | no bar s |",
             "|---|---|---|---|---|---|---|"]
    for title in PAGES:
        cells = []
        for phase in (during, after):
            for key in ("header", "idle", "no bar"):
                cells.append(_fmt(phase[title][key], timeout_s, train=title == "Train" and key == "no bar"))
        lines.append(f"| {title} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=REPO / "benchmarks" / "results" / "pages")
    parser.add_argument("--size", type=int, default=64, help="image side (px) of data and training")
    parser.add_argument("--n-train", type=int, default=20, help="demo training images per category")
    parser.add_argument("--epochs", type=int, default=40, help="epochs the job is given (it is stopped after)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds a page may take")
    args = parser.parse_args()
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"{CHROMIUM} is absent: install Debian's chromium (never `playwright install`)")
    from playwright.sync_api import sync_playwright

    from core.config import ModelConfig, TrainConfig
    from core.data.demo import DemoSpec, generate_demo_dataset
    from core.runs.folder import Run
    from core.training.jobs import start_training, stop_training, wait_for

    data, runs = args.work / f"data{args.size}", args.work / "runs"
    if not (data / "README.txt").is_file():
        generate_demo_dataset(data, DemoSpec(size=args.size, n_train=args.n_train))
    shutil.rmtree(runs, ignore_errors=True)
    runs.mkdir(parents=True)
    run = Run(runs / "live")
    config = TrainConfig(data=str(data), run=str(run.path), image_size=args.size, epochs=args.epochs,
                         batch_size=16, model=ModelConfig(base_width=16, depth=3), device="cpu")
    print(f"{os.cpu_count()} CPUs; demo data {args.size} px, {args.n_train} training images per category; "
          f"job: base width 16, depth 3, {args.epochs} epochs", flush=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = start_server(runs, port, args.work / "streamlit_during.log")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            start_training(config)
            while not run.epochs():
                if run.status().get("state") == "failed":
                    raise SystemExit(f"the job failed: {run.path / 'train.log'}")
                time.sleep(0.5)
            print(f"during training (epoch {run.epochs()[-1]} saved):", flush=True)
            during = measure_all(browser, url, args.timeout)
            print(f"  the job was at epoch {run.epochs()[-1]} of {args.epochs} when the last page opened")
            if not run.is_training():
                print("  NOTE: the job ended before every page was timed: raise --epochs")
        finally:
            stop_training(run)
            wait_for(run, timeout=120)
            stop_server(server)
        started = time.time()
        while follower_alive(run.path) and time.time() - started < 1800:
            time.sleep(2)
        print(f"after training ({len(run.epochs())} epochs; background evaluation ended "
              f"{time.time() - started:.0f} s after the stop; server restarted):", flush=True)
        server = start_server(runs, port, args.work / "streamlit_after.log")
        try:
            after = measure_all(browser, url, args.timeout)
        finally:
            stop_server(server)
            browser.close()
    print()
    print(table(during, after, args.timeout))
    return 0


if __name__ == "__main__":
    sys.exit(main())
