from __future__ import annotations

from core.training.demo_job import DEMO_DATA, DEMO_RUN, launch_demo

# the address .streamlit/config.toml serves on (headless: no browser is opened for you)
WATCH = ("watch it in the dashboard at http://127.0.0.1:8501 (started by `streamlit run dashboard/app.py`, "
         "the README's command)")

VERB = "demo"
HELP = "make the demo data (if missing) and start the demo training job in the background"


def add_arguments(parser) -> None:
    parser.add_argument("--data", default=DEMO_DATA, help=f"demo data folder (default {DEMO_DATA})")
    parser.add_argument("--run", default=DEMO_RUN, help=f"run folder (default {DEMO_RUN})")
    parser.add_argument("--epochs", type=int, default=None, help="override the demo's epoch count")
    parser.add_argument("--wait", action="store_true", help="wait for the job to finish, printing progress")


def main(args) -> int:
    launch = launch_demo(args.data, args.run, args.epochs)
    run = launch.run
    if launch.categories_written:
        print(f"demo data: {launch.categories_written} categories written to {args.data}")
    if launch.state == "training":
        print(f"demo run {run.path} is already training (pid {launch.pid})")
        return 0
    if launch.state == "done":
        print(f"demo run {run.path} already has {run.epochs()[-1]} epochs; {WATCH}")
        return 0
    print(f"demo training started (pid {launch.pid}); log: {run.path / 'train.log'}")
    if args.wait:
        from core.training.jobs import wait_for

        status = wait_for(run, timeout=3600)
        print(f"demo run {status['state']}: {status.get('message', '')}")
        return 0 if status["state"] == "finished" else 1
    print(WATCH)
    return 0
