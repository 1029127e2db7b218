"""`python -m core compare RUN [RUN ...]` or `--sweep FOLDER`: any number of runs side by side.

Per run at its chosen epoch (pinned, else suggested, else lowest validation loss): settings,
validation loss, synthetic and real AUROC (real only where evaluate already cached scores),
health flags, the deepest layers' weight std, K-Means purity and the most confused category
pairs; then epoch x run validation loss, the per-epoch table, and the best run by each
criterion. The numbers come from core.reports.compare.compare_many, as on the dashboard's Compare page.

The two-run form `--run-a A --run-b B` still prints per-layer weight std at the chosen epochs
(with the ratio b / a and the mean per part) and both loss curves.
"""

from __future__ import annotations

from core.cli.flags import open_run, write_json

VERB = "compare"
HELP = "compare runs or a sweep: losses, AUROC, health, weight std, purity, the best run"


def add_arguments(parser) -> None:
    parser.add_argument("runs", nargs="*", help="run folders (or names under checkpoints/), or sweep folders")
    parser.add_argument("--sweep", action="append", default=[], help="a sweep folder: all its members")
    parser.add_argument("--data", help="test data for real AUROC, health and purity (default: each run's own)")
    parser.add_argument("--criterion", help="the best run by this only: " + ", ".join(
        ["'lowest validation loss'", "'highest synthetic AUROC'", "'highest real AUROC'", "'highest purity'"]))
    parser.add_argument("--no-health", action="store_true", help="skip health flags (faster)")
    parser.add_argument("--no-cluster", action="store_true", help="skip K-Means purity and confused pairs")
    parser.add_argument("--run-a", help="two-run form: first run folder (or name under checkpoints/)")
    parser.add_argument("--run-b", help="two-run form: second run folder (or name under checkpoints/)")
    parser.add_argument("--epoch-a", default="last", help="epoch of the first run: a number, chosen, best or last")
    parser.add_argument("--epoch-b", default="last", help="epoch of the second run: a number, chosen, best or last")
    parser.add_argument("--json", metavar="FILE", help="also write the comparison as JSON ('-' for stdout)")


def _title(side: dict) -> str:
    return f"{side['name']} epoch {side['epoch']} (loss {side['loss']}, skips {side['skips']})"


def format_comparison(result: dict) -> list[str]:
    fmt = {"std_a": "{:.4f}".format, "std_b": "{:.4f}".format, "ratio": "{:.2f}".format}
    lines = [f"a = {_title(result['a'])}", f"b = {_title(result['b'])}", "weight std per layer:"]
    lines += ["  " + line for line in result["weights"].to_string(index=False, formatters=fmt, na_rep="-").splitlines()]
    lines.append("mean weight std per part:")
    lines += ["  " + line for line in result["by_part"].to_string(index=False, formatters=fmt, na_rep="-").splitlines()]
    losses = result["losses"]
    if losses.empty:
        return lines + ["loss curves: none logged"]
    lines.append("loss curves:")
    text = losses.to_string(index=False, float_format=lambda v: f"{v:.4f}", na_rep="-")
    return lines + ["  " + line for line in text.splitlines()]


def main(args) -> int:
    if args.run_a or args.run_b:
        if not (args.run_a and args.run_b):
            raise ValueError("the two-run form needs both --run-a and --run-b")
        return two_runs(args)
    return many_runs(args)


def many_runs(args) -> int:
    import dataclasses

    from core.reports.compare import best_run, compare_many, expand_runs, format_comparison
    from core.runs.folder import jsonable

    items = [open_run(r).path for r in [*args.runs, *args.sweep]]  # names under checkpoints/ too
    if not items:
        raise ValueError("name the runs to compare (folders, or --sweep FOLDER)")
    comparison = compare_many(expand_runs(items), data_root=args.data, health=not args.no_health,
                              cluster=not args.no_cluster)
    if args.criterion:
        best_run(comparison, args.criterion)  # a bad criterion fails before anything is printed
    if args.json != "-":
        print(format_comparison(comparison, args.criterion))
    if args.json:
        write_json(args.json, jsonable({"runs": [dataclasses.asdict(r) for r in comparison.runs],
                                        "epochs": comparison.epochs.to_dict(orient="records")}))
    return 0


def two_runs(args) -> int:
    from core.diagnostics import compare_runs
    from core.runs.folder import jsonable

    run_a, run_b = open_run(args.run_a), open_run(args.run_b)
    from core.cli.flags import resolve_epoch_arg

    result = compare_runs(run_a, resolve_epoch_arg(run_a, args.epoch_a), run_b,
                          resolve_epoch_arg(run_b, args.epoch_b))
    if args.json != "-":
        print("\n".join(format_comparison(result)))
    if args.json:
        write_json(args.json, jsonable({"a": result["a"], "b": result["b"],
                                        **{k: result[k].to_dict(orient="records")
                                           for k in ("weights", "by_part", "losses")}}))
    return 0
