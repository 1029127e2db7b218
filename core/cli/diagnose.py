"""`python -m core diagnose --run R --epoch E|all`: is this model healthy, and which epoch to use.

One epoch: its health flags with evidence, per-layer weight statistics and clustering purity.
`all` (or a list like 3,5,8): the health timeline, where collapse starts, the suggested epoch
with its reasons, and a layer x epoch weight-std table. --json writes everything as JSON.
"""

from __future__ import annotations

import pandas as pd

from core.cli.flags import open_run, resolve_epoch_arg, write_json

VERB = "diagnose"
HELP = "health flags, weight statistics, clustering purity and a best-epoch suggestion for a run"
MAX_TABLE_EPOCHS = 12  # a weight-std table wider than this is sampled evenly (always with the last)


def add_arguments(parser) -> None:
    parser.add_argument("--run", required=True, help="run folder (or its name under checkpoints/)")
    parser.add_argument("--epoch", default="last", help="an epoch, chosen, best, last, all, or a list like 2,5,9 (default last)")
    parser.add_argument("--data", help="dataset folder (default: the one the run was trained on)")
    parser.add_argument("--json", metavar="FILE", help="also write the full diagnosis as JSON ('-' for stdout)")
    parser.add_argument("--no-cluster", action="store_true", help="skip encoder-feature clustering")
    parser.add_argument("--level", default="bottleneck", help="encoder level to cluster: bottleneck, all or 0..depth")
    parser.add_argument("--k", type=int, help="K-Means clusters (default: number of categories)")
    parser.add_argument("--max-points", type=int, default=20000, help="images to cluster at most (default 20000)")
    parser.add_argument("--no-rank", action="store_true",
                        help="with several epochs: skip the label-free epoch ranking (it scores the test set "
                             "with pixel, ssim and knn per epoch; cached)")
    parser.add_argument("--evaluate", action="store_true",
                        help="with several epochs: add real test AUROC columns to the timeline (slow; uses test "
                             "labels; with --no-rank it also weighs into the health-only suggestion)")


def parse_epochs(run, text: str) -> tuple[list[int], bool]:
    """(epochs, many): 'all' and comma lists give a timeline; anything else one epoch."""
    text = str(text).strip().lower()
    if text == "all":
        return run.epochs(), True
    if "," in text:
        return [resolve_epoch_arg(run, part) for part in text.split(",") if part.strip()], True
    return [resolve_epoch_arg(run, text)], False


def _level(text: str):
    return int(text) if str(text).lstrip("-").isdigit() else text


def _fmt(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e-3 and value != 0 else f"{value:.{digits}f}"
    return str(value)


def format_health(health) -> list[str]:
    """Lines of a HealthReport (core.diagnostics.health)."""
    verdict = "healthy" if health.healthy else "UNHEALTHY"
    lines = [f"health: {verdict}" + ("" if health.flags else " (no flags)")]
    lines += [f"  [{f.severity}] {f.name}: {f.sentence}" for f in health.flags]
    if health.unusable:
        lines.append(f"  unusable methods here: {', '.join(health.unusable)}")
    lines += [f"  note: {note}" for note in health.notes]
    numbers = health.numbers
    keys = ("input_dependence", "image_spread_ratio", "pixel_spread_ratio", "hf_ratio", "defect_error_ratio", "output_mean",
            "output_saturated_share", "normal_error", "dead_layers")
    shown = [f"{k} {_fmt(numbers[k])}" for k in keys if k in numbers]
    return lines + (["  numbers: " + ", ".join(shown)] if shown else [])


def format_clustering(clustering: dict | None) -> list[str]:
    if clustering is None:
        return []
    if "skipped" in clustering:
        return [f"clustering: skipped ({clustering['skipped']})"]
    pairs = ", ".join(f"{a}/{b} {share:.2f}" for a, b, share in clustering["confused_pairs"][:5]) or "none"
    lines = [f"clustering ({clustering['level']}, k={clustering['k']}, {clustering['n_points']} images): "
             f"purity {clustering['purity']:.3f}, ARI {clustering['ari']:.3f}; confused pairs: {pairs}"]
    table = pd.DataFrame(clustering["clusters"])
    return lines + ["  " + line for line in table.to_string(index=False).splitlines()] if len(table) else lines


def sampled_columns(columns: list[int], limit: int = MAX_TABLE_EPOCHS) -> list[int]:
    if len(columns) <= limit:
        return columns
    picks = {columns[round(i * (len(columns) - 1) / (limit - 1))] for i in range(limit)}
    return [c for c in columns if c in picks]


def format_std_table(table: pd.DataFrame) -> list[str]:
    if table.empty:
        return ["weight std: no checkpoints"]
    shown = table[sampled_columns(list(table.columns))]
    note = "" if shown.shape[1] == table.shape[1] else f" ({shown.shape[1]} of {table.shape[1]} epochs shown)"
    text = shown.to_string(float_format=lambda v: f"{v:.4f}")
    return [f"weight std per layer (layer x epoch){note}:"] + ["  " + line for line in text.splitlines()]


def _ranges(epochs: list[int]) -> str:
    spans, start, prev = [], None, None
    for epoch in epochs:
        if start is None:
            start = prev = epoch
        elif epoch == prev + 1:
            prev = epoch
        else:
            spans.append((start, prev))
            start = prev = epoch
    if start is not None:
        spans.append((start, prev))
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)


def format_timeline(result) -> list[str]:
    """Lines of a RunDiagnosis (core.diagnostics.results)."""
    columns = ["epoch", "healthy", "flags", "unusable", "val_loss", "input_dependence", "hf_ratio",
               "defect_localisation_auc", "pasted_kept_share", "bottleneck_std", "purity"]
    rows = [{**{c: r.get(c) for c in columns}, "flags": ",".join(r["flags"]) or "-",
             "unusable": ",".join(r.get("unusable") or []) or "-",
             **{k: r[k] for k in r if k.startswith(("synthetic_auroc_", "real_auroc_"))}} for r in result.timeline]
    frame = pd.DataFrame(rows).map(lambda v: _fmt(v) if isinstance(v, float) or v is None else v)
    lines = ["timeline:"] + ["  " + line for line in frame.to_string(index=False).splitlines()]
    seen: dict[str, list[dict]] = {}
    for report in result.reports:
        for flag in report.flags:
            seen.setdefault(flag.name, []).append({"epoch": report.epoch, "severity": flag.severity,
                                                   "sentence": flag.sentence})
    for name, hits in seen.items():
        last = hits[-1]
        lines.append(f"  {name} ({last['severity']}) in epochs {_ranges([h['epoch'] for h in hits])}; "
                     f"epoch {last['epoch']}: {last['sentence']}")
    lines += format_ranking(None if result.ranking is None else result.ranking.to_dict())
    starts = result.collapse_starts
    lines.append(f"collapse starts: {'epoch ' + str(starts) if starts is not None else 'no collapse'}")
    suggestion = result.suggestion
    method = f" with {suggestion.method}" if suggestion.method else ""
    head = (f"suggested epoch: {suggestion.epoch}{method}" if suggestion.epoch is not None
            else "suggested epoch: none")
    return lines + [head] + [f"  - {reason}" for reason in suggestion.reasons] + \
        [f"note: {note}" for note in result.notes]


def format_ranking(ranking: dict | None) -> list[str]:
    """Label-free criteria against real AUROC: one Spearman per criterion x method."""
    if not ranking:
        return []
    methods = ranking["methods"]
    gaps = ["synthetic_gap (warning) at epoch {epoch}: {sentence}".format(**g) for g in ranking.get("gaps", [])]
    if not ranking["agreements"]:
        return gaps + [f"label-free criteria: {_why_no_real_auroc(ranking)}, so their agreement "
                       "with real AUROC cannot be measured on this run"]
    rho = {(a["criterion"], a["method"]): a["spearman"] for a in ranking["agreements"]}
    rows = [{"criterion": c, **{m: _fmt(rho.get((c, m)), 2) for m in methods}} for c in ranking["values"]]
    table = pd.DataFrame(rows).to_string(index=False)
    return gaps + (["label-free criteria vs real image AUROC across epochs (Spearman rank correlation; "
                    "- = under 3 epochs or constant):"] + ["  " + line for line in table.splitlines()])


def _why_no_real_auroc(ranking: dict) -> str:
    """No agreement was measured: because the test set has no labels, or because no epoch
    could be scored (NaN weights, unreadable data: the notes say which)."""
    if any(ranking.get("real", {}).values()):
        return "too few epochs have a real AUROC"
    if ranking.get("notes") or ranking.get("unusable"):
        return "no epoch has a real AUROC (see the notes)"
    return "the test set has no labels here"


def readable_epochs(run, epochs: list[int]) -> list[int]:
    """The epochs whose checkpoint loads (a damaged older one must not hide the table)."""
    from core.diagnostics import weight_stats
    from core.runs.folder import RunError

    readable = []
    for epoch in epochs:
        try:
            weight_stats(run, epoch)
        except RunError:
            continue
        readable.append(epoch)
    return readable


def main(args) -> int:
    from core.diagnostics import diagnose_epoch, diagnose_run, weight_std_table

    run = open_run(args.run)
    epochs, many = parse_epochs(run, args.epoch)
    options = {"data_root": args.data, "cluster": not args.no_cluster, "level": _level(args.level),
               "max_points": args.max_points}
    if many:
        result = diagnose_run(run, epochs, evaluate=args.evaluate, rank=not args.no_rank, **options)
        lines = [f"run {run.path}: {len(epochs)} epochs"] + format_timeline(result)
        std_table = weight_std_table(run, [row["epoch"] for row in result.timeline])
    else:
        result = diagnose_epoch(run, epochs[0], k=args.k, **options)
        lines = [f"run {run.path}: epoch {epochs[0]}"] + format_health(result.health)
        lines += format_clustering(result.clustering)
        # its history up to this epoch, so a std shrinking since epoch 1 shows
        std_table = weight_std_table(run, readable_epochs(run, [e for e in run.epochs() if e <= epochs[0]]))
    lines += format_std_table(std_table)
    if args.json != "-":
        print("\n".join(lines))
    if args.json:
        from core.runs.folder import jsonable

        record = result.to_dict()
        record["weight_std"] = jsonable({str(layer): {str(e): v for e, v in row.items()}
                                         for layer, row in std_table.iterrows()})
        write_json(args.json, record)
    return 0
