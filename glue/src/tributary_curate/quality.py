"""A dataset's data-quality rules (`quality:` in the registry, DQDL rule types:
`tributary.quality`), evaluated by each curate run before it writes anything.

What a rule sees: the rows this run read — valid, mapped, filtered and deduped among themselves,
including redeliveries of rows already curated, which the run then drops (the rules run before
the anti-join against what is curated, so a rerun after a crash judges the same rows as the
attempt it repeats, and a `RowCount > 0` cannot wedge on a rerun that curates nothing new).
`IsUnique` alone looks at the whole curated table: every row already curated plus the run's rows
not curated yet (by envelope id, so a row curated by an interrupted attempt counts once and a
redelivery is judged by the curated row, not by its own content). Row rules (`IsComplete`,
`Completeness`, `ColumnValues`, `DataFreshness`) report the fraction of rows that pass (a run of
no rows: 1.0); `RowCount` the count. A failed `block` rule stops the run before it publishes
(`QualityBlockedError`, exit 2): its raw objects stay new, so the next run retries them and, once
the rules pass (relaxed in the registry: raw is never rewritten), curates them once — while raw
is kept (`RawRetentionDays`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from tributary.errors import PermanentError
from tributary.metrics import Metrics
from tributary.quality import Expr, OnFailure, Op, QualityRule, RuleType
from tributary_curate.failures import CurateConfigError
from tributary_curate.transform import ID, not_yet_curated


@dataclass(frozen=True, slots=True)
class RuleResult:
    """One rule's verdict on one run: its figure (a count or a fraction) and whether it held."""

    rule: str
    on_failure: OnFailure
    figure: float
    passed: bool
    rows: int

    def document(self) -> dict[str, Any]:
        """The JSON form (the bookmark's `last_run.quality`, `make status`)."""
        return {
            "rule": self.rule,
            "on_failure": self.on_failure.value,
            "figure": round(self.figure, 6),
            "passed": self.passed,
            "rows": self.rows,
        }

    def describe(self) -> str:
        """`RowCount > 0: 0 (failed, block)`."""
        figure = f"{self.figure:g}" if self.figure == int(self.figure) else f"{self.figure:.4f}"
        verdict = "passed" if self.passed else f"failed, {self.on_failure}"
        return f"{self.rule}: {figure} over {self.rows} rows ({verdict})"


@dataclass(frozen=True, slots=True)
class QualityReport:
    """Every rule's result for one run."""

    results: tuple[RuleResult, ...] = ()

    @property
    def blocking(self) -> tuple[RuleResult, ...]:
        """The failed `block` rules."""
        return tuple(r for r in self.results if not r.passed and r.on_failure is OnFailure.BLOCK)

    def documents(self) -> list[dict[str, Any]]:
        """The JSON form of each result."""
        return [r.document() for r in self.results]

    def record(self, metrics: Metrics, dataset: str) -> None:
        """EMF metrics: rules passed and failed per dataset, each rule's figure, blocked runs."""
        failed = sum(not r.passed for r in self.results)
        metrics.add("QualityRulesPassed", len(self.results) - failed, dataset=dataset)
        metrics.add("QualityRulesFailed", failed, dataset=dataset)
        metrics.add("QualityRunsBlocked", 1 if self.blocking else 0, dataset=dataset)
        for r in self.results:
            metrics.gauge("QualityRuleFigure", r.figure, dataset=dataset, rule=r.rule)


class QualityBlockedError(PermanentError):
    """A `block` rule failed: the run published nothing; its raw objects stay new — until the
    raw lifecycle (`RawRetentionDays`) expires them, so the message says when that is."""

    def __init__(self, dataset: str, report: QualityReport, oldest: str | None = None) -> None:
        failed = "; ".join(r.describe() for r in report.blocking)
        since = f" (the oldest landed in hour {oldest})" if oldest else ""
        super().__init__(
            f"quality rules of {dataset} blocked the run: {failed}. Nothing was published and "
            "its raw objects stay new: the next run retries them and, once the rules pass (or "
            "are relaxed in the registry's quality: block), curates them once. Raw objects are "
            f"kept RawRetentionDays (90 by default) after they land{since}: fix the data or "
            "relax the rule before then, or the objects expire uncurated"
        )
        self.report = report
        self.oldest = oldest  # `year=…/month=…/day=…/hour=…` of the oldest waiting raw object


def unique_columns(rules: tuple[QualityRule, ...]) -> list[str]:
    """The columns `IsUnique` rules need from the curated table."""
    return sorted({r.column for r in rules if r.kind is RuleType.IS_UNIQUE and r.column})


def evaluate(
    dataset: str,
    rules: tuple[QualityRule, ...],
    rows: DataFrame,
    now: datetime,
    curated: DataFrame | None = None,
) -> QualityReport:
    """Every rule on the run's `rows` (`curated`: the rows already curated, for `IsUnique`).
    Raises `CurateConfigError` for a rule naming a column the curated rows do not have."""
    if not rules:
        return QualityReport()
    for rule in rules:
        if rule.column is not None and rule.column not in rows.columns:
            raise CurateConfigError(
                f"quality rule {rule.text!r} of {dataset} names column {rule.column!r}, which "
                f"its curated rows do not have (they have {', '.join(sorted(rows.columns))}); "
                "fix its quality: block in the dataset registry (nothing was written)"
            )
    row_rules = [r for r in rules if r.kind is not RuleType.IS_UNIQUE]
    passing = [F.count_if(_passes(r, now)).alias(f"q{i}") for i, r in enumerate(row_rules)]
    counts = rows.agg(F.count(F.lit(1)).alias("n"), *passing).first()
    assert counts is not None  # an aggregate always has one row
    n = int(counts["n"])
    figures: dict[str, tuple[float, int]] = {}
    for i, rule in enumerate(row_rules):
        ok = int(counts[f"q{i}"])
        figures[rule.text] = (
            (float(n), n)
            if rule.kind is RuleType.ROW_COUNT
            else (
                ok / n if n else 1.0,
                n,
            )
        )
    for rule in rules:
        if rule.kind is RuleType.IS_UNIQUE:
            figures[rule.text] = _uniqueness(str(rule.column), rows, curated)
    results = []
    for rule in rules:
        figure, over = figures[rule.text]
        results.append(RuleResult(rule.text, rule.on_failure, figure, _holds(rule, figure), over))
    return QualityReport(tuple(results))


def _holds(rule: QualityRule, figure: float) -> bool:
    match rule.kind:
        case RuleType.ROW_COUNT | RuleType.COMPLETENESS:
            assert rule.expr is not None
            return rule.expr.holds(figure)
        case RuleType.IS_COMPLETE | RuleType.IS_UNIQUE:
            return figure == 1.0
        case _:
            return rule.threshold.holds(figure)


def _passes(rule: QualityRule, now: datetime) -> Column:
    """Whether one row passes a row rule (null never does); RowCount counts every row."""
    if rule.kind is RuleType.ROW_COUNT:
        return F.lit(True)
    column = F.col(f"`{rule.column}`")
    if rule.kind in (RuleType.IS_COMPLETE, RuleType.COMPLETENESS):
        return column.isNotNull()
    assert rule.expr is not None
    if rule.kind is RuleType.DATA_FRESHNESS:  # age in seconds at the run's time
        column = F.lit(now.timestamp()) - column.cast("timestamp").cast("double")
    # DQDL's null behaviour (Expr.holds): NULL passes `!=`, an `in` list naming NULL and a
    # `not in` list not naming it; it fails every other expression.
    null_passes = rule.kind is RuleType.COLUMN_VALUES and rule.expr.holds(None)
    return F.when(column.isNull(), F.lit(null_passes)).otherwise(
        F.coalesce(_compare(rule.expr, column), F.lit(False))
    )


def _compare(expr: Expr, column: Column) -> Column:
    a = expr.operands
    result: Column
    match expr.op:
        case Op.EQ:
            result = column == a[0]
        case Op.NE:
            result = column != a[0]
        case Op.GT:
            result = column > a[0]
        case Op.GE:
            result = column >= a[0]
        case Op.LT:
            result = column < a[0]
        case Op.LE:
            result = column <= a[0]
        case Op.BETWEEN:
            result = (column > a[0]) & (column < a[1])  # exclusive, as DQDL's between
        case Op.IN:
            result = column.isin([v for v in a if v is not None])
        case Op.NOT_IN:
            result = ~column.isin([v for v in a if v is not None])
    return result


def _uniqueness(column: str, rows: DataFrame, curated: DataFrame | None) -> tuple[float, int]:
    """(rows whose value occurs exactly once / rows with a value, rows with a value) over the
    curated table as this run leaves it: every curated row plus the run's rows not curated yet
    (by envelope id: a redelivery, or a same-id re-POST that first-arrival-wins will drop, is
    judged by the row already curated). The figure is Glue Data Quality's `Uniqueness` (values
    that occur exactly once); `IsUnique` holds when it is 1.0."""
    table = rows.select(ID, F.col(f"`{column}`").alias("value"))
    if curated is not None:
        kept = curated.select(ID, F.col(f"`{column}`").alias("value")).dropDuplicates([ID])
        table = not_yet_curated(table, kept).unionByName(kept)
    counts = (
        table.where(F.col("value").isNotNull())
        .groupBy("value")
        .agg(F.count(F.lit(1)).alias("k"))
        .agg(
            F.coalesce(F.sum("k"), F.lit(0)).alias("n"),
            F.count_if(F.col("k") == 1).alias("once"),
        )
        .first()
    )
    assert counts is not None
    n, once = int(counts["n"]), int(counts["once"])
    return (once / n if n else 1.0), n
