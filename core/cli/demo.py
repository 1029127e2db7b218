from __future__ import annotations

from pathlib import Path

from core.data.demo import generate_demo_dataset
from core.jobs import DEMO_DATA, DEMO_RUN, DEMO_SPEC, demo_config, demo_data_ready, start_training
from core.runs import Run

VERB = "demo"
HELP = "make the demo data (if missing) and start the demo training job in the background"


def add_arguments(parser) -> None:
    parser.add_argument("--data", default=DEMO_DATA, help=f"demo data folder (default {DEMO_DATA})")
    parser.add_argument("--run", default=DEMO_RUN, help=f"run folder (default {DEMO_RUN})")
    parser.add_argument("--epochs", type=int, default=None, help="override the demo's epoch count")
    parser.add_argument("--wait", action="store_true", help="wait for the job to finish, printing progress")


def main(args) -> int:
    if not demo_data_ready(args.data):
        summary = generate_demo_dataset(args.data, DEMO_SPEC)
        print(f"demo data: {len(summary)} categories written to {args.data}")
    run = Run(Path(args.run))
    if run.is_training():
        print(f"demo run {run.path} is already training (pid {run.status().get('pid')})")
        return 0
    config = demo_config(args.data, args.run)
    if args.epochs:
        config = config.with_overrides({"epochs": args.epochs})
    done = run.epochs()
    if done and done[-1] >= config.epochs:
        print(f"demo run {run.path} already has {done[-1]} epochs; open the dashboard to look at it")
        return 0
    pid = start_training(config, resume=bool(done))
    print(f"demo training started (pid {pid}); log: {run.path / 'train.log'}")
    if args.wait:
        from core.jobs import wait_for

        status = wait_for(run, timeout=3600)
        print(f"demo run {status['state']}: {status.get('message', '')}")
        return 0 if status["state"] == "finished" else 1
    print("now open the dashboard: streamlit run dashboard/app.py")
    return 0
