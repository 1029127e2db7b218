"""`python -m core compare --run-a A --run-b B`: two runs side by side.

Per-layer weight std at the chosen epochs (with the ratio b / a and the mean per part) and both
loss curves, e.g. an L1+SSIM model against an L2 model on bottleneck weight std.
"""

from __future__ import annotations

from core.cli.diagnose import open_run, write_json

VERB = "compare"
HELP = "compare two runs: per-layer weight std at chosen epochs and loss curves"


def add_arguments(parser) -> None:
    parser.add_argument("--run-a", required=True, help="first run folder (or name under checkpoints/)")
    parser.add_argument("--run-b", required=True, help="second run folder (or name under checkpoints/)")
    parser.add_argument("--epoch-a", default="last", help="epoch of the first run: a number, best or last")
    parser.add_argument("--epoch-b", default="last", help="epoch of the second run: a number, best or last")
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
    from core.diagnostics import compare_runs
    from core.runs import jsonable

    run_a, run_b = open_run(args.run_a), open_run(args.run_b)
    result = compare_runs(run_a, run_a.resolve_epoch(args.epoch_a), run_b, run_b.resolve_epoch(args.epoch_b))
    if args.json != "-":
        print("\n".join(format_comparison(result)))
    if args.json:
        write_json(args.json, jsonable({"a": result["a"], "b": result["b"],
                                        **{k: result[k].to_dict(orient="records")
                                           for k in ("weights", "by_part", "losses")}}))
    return 0
