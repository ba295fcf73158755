"""Benchmark the cascade's scorers and the prompt-only router on RouteLLM-format data, offline."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from routing.demo import GPT4_INPUT_PRICE, GPT4_OUTPUT_PRICE, MIXTRAL_PRICE
from routing.engine.offline.benchmark import (
    BenchReport,
    BenchResult,
    LabelledPrompt,
    Prices,
    load_dataset,
    oracle_result,
    run_benchmark,
    split_rows,
)

# The demo's list prices: Mixtral 8x7B in and out, GPT-4 Turbo in and out (USD per 1M tokens).
DEMO_PRICES = Prices(MIXTRAL_PRICE, MIXTRAL_PRICE, GPT4_INPUT_PRICE, GPT4_OUTPUT_PRICE)


class Command(BaseCommand):
    help = (
        "Train the learned scorer and the prompt-only router on one RouteLLM-format CSV and report "
        "CPT(50%), CPT(80%), APGR and savings at 95% of strong quality on another (no database, no model calls)."
    )
    # Engine code only: no system checks, no migrations, no database.
    requires_system_checks: list[str] = []
    requires_migrations_checks = False

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--train", type=Path, help="CSV to train on.")
        parser.add_argument("--eval", type=Path, help="CSV to report on.")
        parser.add_argument("--split-from", type=Path, help="One CSV split into train and eval by a seeded hash.")
        parser.add_argument("--eval-fraction", type=float, default=0.5, help="With --split-from (default 0.5).")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--embeddings", action="store_true", help="Use sentence embeddings if installed.")
        parser.add_argument("--json", action="store_true", help="Print one JSON line instead of a table.")

    def handle(self, *args: Any, **options: Any) -> None:
        train, evaluate = self.datasets(options)
        try:
            report = run_benchmark(
                train, evaluate, prices=DEMO_PRICES, seed=options["seed"], use_embeddings=options["embeddings"]
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        if options["json"]:
            self.stdout.write(json.dumps([finite(result.summary()) for result in report.results]))
        else:
            self.stdout.write(table(report, oracle_result(evaluate, DEMO_PRICES)))

    def datasets(self, options: dict[str, Any]) -> tuple[list[LabelledPrompt], list[LabelledPrompt]]:
        split_from, train, evaluate = options["split_from"], options["train"], options["eval"]
        if split_from is not None and (train is not None or evaluate is not None):
            raise CommandError("give either --split-from, or --train and --eval")
        if split_from is None and (train is None or evaluate is None):
            raise CommandError("give --train and --eval, or --split-from")
        if not 0.0 < options["eval_fraction"] < 1.0:
            raise CommandError("--eval-fraction must be between 0 and 1")
        try:
            if split_from is None:
                return load_dataset(train), load_dataset(evaluate)
            return split_rows(load_dataset(split_from), eval_fraction=options["eval_fraction"], seed=options["seed"])
        except (OSError, ValueError, KeyError) as exc:
            raise CommandError(f"cannot read the data set: {exc}") from exc


def finite(summary: dict[str, Any]) -> dict[str, Any]:
    """NaN (a figure no threshold reaches) as null, so the line stays strict JSON."""
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in summary.items()}


def table(report: BenchReport, oracle: BenchResult) -> str:
    lines = [
        f"train {report.n_train} rows, eval {report.n_eval} rows; on eval: weak quality "
        f"{report.weak_quality:.1%}, strong quality {report.strong_quality:.1%}, "
        f"all-strong baseline ${report.baseline_cost:.4f}",
        "",
        f"{'scorer':<16}{'mode':<9}{'CPT50':>8}{'CPT80':>8}{'CPT50$':>8}{'CPT80$':>8}{'APGR':>8}{'save@95':>9}",
    ]
    lines += [row(result) for result in (*report.results, oracle)]
    lines += [
        "",
        "CPT = share of strong-model calls (CPT$: share of the all-strong cost) needed to recover 50% / 80% "
        "of the weak-to-strong quality gap; random routing needs 50% / 80%. The oracle knows both outcomes.",
    ]
    return "\n".join(lines)


def row(result: BenchResult) -> str:
    m = result.metrics
    figures = "".join(f"{percent(m[key]):>8}" for key in ("cpt50", "cpt80", "cpt50_cost", "cpt80_cost"))
    return f"{result.scorer:<16}{result.mode:<9}{figures}{m['apgr']:>8.3f}{percent(m['savings_at_95']):>9}"


def percent(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.1%}"
