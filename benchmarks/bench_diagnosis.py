"""Planted failures: does the diagnosis flag them on the right epochs, and nothing else?

    python benchmarks/bench_diagnosis.py [--epochs 5] [--image-size 64] [--keep DIR]

On a demo data set (core.data.demo), with every run diagnosed by core.diagnostics.diagnose_run:

  healthy        no skips, denoise objective                      truth: no flag at any epoch
  copying        every skip, reconstruct objective (trained)      truth: identity_copy (or a flag
                 that names pixel unusable) at every epoch whose real pixel AUROC < 0.6
  collapse       the healthy run plus two epochs whose output head was zeroed (uniform grey)
                                                                  truth: collapsed at those epochs
  dead_deep      the healthy run plus an epoch whose bottleneck weights were zeroed and whose
                 logged gradients there vanished                  truth: dead_layers at that epoch,
                 and collapsed (without skips every output passes the zeroed bottleneck)
  ssim_deep      a depth-4 net without skips trained on SSIM alone (the classic case); reported as
                 measured: it has no planted truth
  synthetic_gap  a discriminative run (its seg network learns the synthetic defects) judged on a
                 copy of the data whose "defective" test images are normal ones: real AUROC ~0.5
                 by construction      truth: synthetic_gap at every epoch and method whose
                 synthetic AUROC exceeds 0.75

Prints, per flag, recall (flagged truth epochs / truth epochs) and false alarms (flagged epochs
outside the truth, counted on every run), and per run the suggested epoch and method with its
real AUROC against that method's best epoch.
"""

from __future__ import annotations

import argparse
import copy
import shutil
import sys
import tempfile
import time
from pathlib import Path

ERROR_FLAGS = ("identity_copy", "collapsed", "dead_layers", "nan")
GAP_TRUTH_SYNTHETIC = 0.75


def train(data: Path, run: Path, epochs: int, size: int, **overrides):
    """A real training run on the demo data (one torch thread, seed 0); a finished run already in
    the --keep folder is reused."""
    from core.config import TrainConfig
    from core.runs.folder import Run
    from core.training.loop import train_one

    if Run(run).epochs() and Run(run).status().get("state") == "finished":
        return Run(run)
    config = TrainConfig(data=str(data), run=str(run), image_size=size, epochs=epochs, batch_size=4,
                         seed=0, num_threads=1).with_overrides(overrides)
    train_one(config, progress=False, log=lambda _: None)
    return Run(run)


def plant(source, target: Path, edits: dict[int, callable]):
    """A copy of run `source` (no cache) plus one epoch per edit: edit(state, metrics) changes a
    copy of the last checkpoint's weights and its metrics record in place."""
    from core.runs.checkpoint import open_checkpoint
    from core.runs.folder import Run, save_checkpoint

    if target.is_dir():
        shutil.rmtree(target)
    shutil.copytree(source.path, target, ignore=shutil.ignore_patterns("cache", "*.lock"))
    run = Run(target)
    last = run.epochs()[-1]
    payload = open_checkpoint(run, last).payload()
    record = next(m for m in run.metrics() if int(m["epoch"]) == last)
    for epoch, edit in sorted(edits.items()):
        state, metrics = copy.deepcopy(payload["model"]), copy.deepcopy(record)
        metrics["epoch"] = epoch
        edit(state, metrics)
        save_checkpoint(target / f"epoch_{epoch:03d}.pt", {**payload, "model": state, "epoch": epoch})
        run.append_metrics(metrics)
    return run


def zero_head(state, metrics) -> None:
    state["head.weight"].zero_()
    state["head.bias"].zero_()


def zero_bottleneck(depth: int):
    def edit(state, metrics) -> None:
        deep = [k for k in state if k.startswith(f"down.{depth - 1}.") and k.endswith("weight") and state[k].ndim == 4]
        for name in deep:
            state[name].zero_()
        metrics["grad_norm"] = {k: v * (1e-5 if k in deep else 1.0) for k, v in (metrics.get("grad_norm") or {}).items()}
    return edit


def no_defects(data: Path, target: Path) -> Path:
    """A copy of the data whose defective test images are normal test images of their category."""
    if target.is_dir():
        shutil.rmtree(target)
    shutil.copytree(data, target)
    for category in sorted(p for p in target.iterdir() if (p / "test" / "good").is_dir()):
        goods = sorted((category / "test" / "good").glob("*.png"))
        for folder in sorted(p for p in (category / "test").iterdir() if p.is_dir() and p.name != "good"):
            for i, image in enumerate(sorted(folder.glob("*.png"))):
                shutil.copyfile(goods[i % len(goods)], image)
    return target


def flagged(result: dict) -> dict[int, set[str]]:
    """epoch -> names of its error flags, plus "pixel_unusable" and synthetic_gap:<method>."""
    out = {int(r["epoch"]): {f["name"] for f in r["flags"] if f["severity"] == "error"} for r in result["reports"]}
    for r in result["reports"]:
        if "pixel" in (r.get("unusable") or []):
            out[int(r["epoch"])].add("pixel_unusable")
    for gap in (result.get("ranking") or {}).get("gaps", []):
        out.setdefault(int(gap["epoch"]), set()).add(f"synthetic_gap:{gap['method']}")
    return out


def truth_of(name: str, result: dict, planted: list[int]) -> dict[int, set[str]]:
    ranking = result.get("ranking") or {}
    epochs = [int(r["epoch"]) for r in result["reports"]]
    truth: dict[int, set[str]] = {e: set() for e in epochs}
    if name == "copying":
        for e, v in (ranking.get("real", {}).get("pixel") or {}).items():
            if v < 0.6:
                truth[int(e)].add("identity_copy")
    elif name == "collapse":
        for e in planted:
            truth[e].add("collapsed")
    elif name == "dead_deep":
        for e in planted:  # without skips every output passes the bottleneck: zeroed, it ignores the input
            truth[e] |= {"dead_layers", "collapsed"}
    elif name == "synthetic_gap":
        for method, by_epoch in (ranking.get("values", {}).get("synthetic_auroc") or {}).items():
            for e, v in by_epoch.items():
                if v > GAP_TRUTH_SYNTHETIC:
                    truth[int(e)].add(f"synthetic_gap:{method}")
    return truth


def warm_up(found: dict[int, set[str]]) -> set[int]:
    """Leading collapsed epochs before the first one that is not: an untrained net outputs one
    image for every input; core.diagnostics.timeline.collapse_start does not call that a collapse."""
    epochs = sorted(found)
    first_live = next((e for e in epochs if "collapsed" not in found[e]), None)
    return set() if first_live is None else {e for e in epochs if e < first_live}


UNJUDGED = {"synthetic_gap": {"identity_copy", "defects_missed", "pixel_unusable"}}  # no defects there


def score(name: str, result: dict, truth: dict[int, set[str]], tally: dict) -> list[str]:
    found = flagged(result)
    early = warm_up(found)
    lines = []
    for epoch in sorted(truth):
        want, got = truth[epoch], found.get(epoch, set())
        for flag in want:
            hit = flag in got or (flag == "identity_copy" and "pixel_unusable" in got)
            tally.setdefault(flag.split(":")[0], [0, 0, 0])[0] += hit
            tally[flag.split(":")[0]][1] += 1
        extra = {f for f in got - want if f != "pixel_unusable"} - UNJUDGED.get(name, set())
        if epoch in early and "collapsed" in extra:
            extra.discard("collapsed")
            tally.setdefault("collapsed (warm-up)", [0, 0, 0])[2] += 1
        for flag in extra:
            tally.setdefault(flag.split(":")[0], [0, 0, 0])[2] += 1
        real = (result.get("ranking") or {}).get("real", {}).get("pixel", {}).get(str(epoch))
        lines.append(f"  {name:13s} epoch {epoch}: truth {sorted(want) or '-'}; flagged {sorted(got) or '-'}"
                     + (f"; real pixel AUROC {real:.3f}" if real is not None else ""))
    s = result["suggestion"]
    if s.get("method"):
        lines.append(f"  {name:13s} suggests epoch {s['epoch']} with {s['method']} by {s['criterion']}: real AUROC "
                     f"{s.get('real_auroc') or float('nan'):.3f}, best epoch of {s['method']} "
                     f"{s.get('best_real_auroc') or float('nan'):.3f}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--image-size", type=int, default=64,
                        help="64 keeps a 4x4 bottleneck at depth 4 (instance norm over 2x2 erases the image)")
    parser.add_argument("--gap-epochs", type=int, default=10,
                        help="epochs of the discriminative run (its seg network needs some to learn the synthetic defects)")
    parser.add_argument("--keep", help="work in this folder and keep it (default: a temporary one)")
    args = parser.parse_args(argv)
    import torch

    from core.data.demo import DemoSpec, generate_demo_dataset
    from core.diagnostics import diagnose_run

    torch.set_num_threads(1)
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-diagnosis-"))
    started = time.perf_counter()
    data = work / "demo"
    if not data.is_dir():
        generate_demo_dataset(data, DemoSpec(size=64, n_train=40, n_test_good=6, n_test_per_defect=3,
                                             categories=("carpet", "grid", "bottle", "pill")))
    e, size = args.epochs, args.image_size
    healthy = train(data, work / "healthy", e, size, **{"model.skips": "none", "objective": "denoise"})
    runs = {
        "healthy": (healthy, None, []),
        "copying": (train(data, work / "copying", e, size, **{"model.skips": "all", "objective": "reconstruct"}),
                    None, []),
        "collapse": (plant(healthy, work / "collapse", {e + 1: zero_head, e + 2: zero_head}), None, [e + 1, e + 2]),
        "dead_deep": (plant(healthy, work / "dead_deep", {e + 1: zero_bottleneck(healthy.config().model.depth)}),
                      None, [e + 1]),
        "ssim_deep": (train(data, work / "ssim_deep", e, size, **{"model.skips": "none", "model.depth": 4,
                                                                  "objective": "reconstruct", "loss": "ssim"}),
                      None, []),
        "synthetic_gap": (train(data, work / "discriminative", args.gap_epochs, size, **{"objective": "discriminative"}),
                          no_defects(data, work / "no_defects"), []),
    }
    tally: dict[str, list[int]] = {}
    lines = []
    for name, (run, data_root, planted) in runs.items():
        result = diagnose_run(run, data_root=data_root, cluster=False).to_dict()
        truth = truth_of(name, result, planted)
        if name == "ssim_deep":
            lines += [f"  ssim_deep     epoch {ep}: flagged {sorted(f) or '-'} (no planted truth)"
                      for ep, f in sorted(flagged(result).items())]
            continue
        lines += score(name, result, truth, tally)
    print(f"planted-failure suite: {e} epochs at {size} px on demo data, {time.perf_counter() - started:.0f} s")
    print("\n".join(lines))
    print("\nflag                 recall   false alarms (epochs flagged without that failure)")
    for flag, (hits, total, false) in sorted(tally.items()):
        recall = f"{hits}/{total}" if total else "-"
        print(f"  {flag:19s} {recall:8s} {false}")
    print("(warm-up: leading epochs of a run whose untrained output is still one image for every input;\n"
          " the timeline's collapse_starts ignores them. In synthetic_gap the test set has no defects,\n"
          " so copy flags are shown but not scored there.)")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
