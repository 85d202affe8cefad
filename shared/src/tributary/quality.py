"""Data-quality rules of a dataset: the `quality:` block of its registry entry, in the syntax of
AWS Glue Data Quality's DQDL (a subset: the rule types below, one rule per entry, no composite
rules). The curate job evaluates them on each run (`tributary_curate.quality`).

```yaml
quality:
  - rule: RowCount > 0                               # rows this run read (redeliveries too)
    on_failure: block                                # the run publishes nothing (exit 2)
  - rule: IsComplete "title"                         # every row has a value
  - rule: Completeness "price" >= 0.95               # at least 95% of rows have one
  - rule: IsUnique "id"                              # no value twice, in the whole curated table
  - rule: ColumnValues "userId" between 0 and 11     # every row; or `with threshold >= 0.9`
  - rule: ColumnValues "type" in ["signup", "login"]  # or `not in [...]`; NULL, EMPTY allowed
  - rule: DataFreshness "updated_at" <= 24 hours     # age at the run's time; hours or days
    on_failure: warn                                 # the default: reported, the run publishes
```
A numeric expression is `= n`, `!= n`, `> n`, `>= n`, `< n`, `<= n` or `between a and b`.
`between a and b` is exclusive, as in DQDL (awslabs/dqdl NumberBasedCondition.evaluate:
`metric > a && metric < b`; durations follow it by analogy, DurationBasedCondition has no
evaluate): a value on a bound fails; write `>= a` with
`<= b` rules, or widen the bounds, for an inclusive range.
ColumnValues follows DQDL's null behaviour (the ColumnValues page of the Glue DQDL reference):
a NULL row fails every expression but the negated ones, `!=` and `not in`, which it passes;
`in [..., NULL]` lets NULL pass and `not in [..., NULL]` fails it; `EMPTY` is the empty string.
Columns are the curated ones (after rename and flatten), `_id` included.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

from tributary.schema import FieldType


class RuleType(StrEnum):
    """The DQDL rule types the curate job evaluates."""

    ROW_COUNT = "RowCount"
    IS_COMPLETE = "IsComplete"
    COMPLETENESS = "Completeness"
    IS_UNIQUE = "IsUnique"
    COLUMN_VALUES = "ColumnValues"
    DATA_FRESHNESS = "DataFreshness"


class OnFailure(StrEnum):
    """What a failed rule does to the run."""

    WARN = "warn"  # reported (bookmark, status, metrics); the run publishes
    BLOCK = "block"  # the run publishes nothing and exits 2; its raw objects stay new


class Op(StrEnum):
    """A comparison of a rule's figure (or a value) with the expression's operands."""

    EQ = "="
    NE = "!="
    GT = ">"
    GE = ">="
    LT = "<"
    LE = "<="
    BETWEEN = "between"
    IN = "in"
    NOT_IN = "not in"


@dataclass(frozen=True, slots=True)
class Expr:
    """`op` with its operands: one for a comparison, two for between, any number for in."""

    op: Op
    operands: tuple[Any, ...]

    def holds(self, value: Any) -> bool:
        """Whether `value` satisfies the expression. None (NULL) satisfies only `!=`, an `in`
        list naming NULL and a `not in` list not naming it (DQDL's null behaviour)."""
        if value is None:
            if self.op is Op.NE:
                return True
            if self.op in (Op.IN, Op.NOT_IN):
                return (None in self.operands) is (self.op is Op.IN)
            return False
        a = self.operands[0]
        match self.op:
            case Op.EQ:
                return bool(value == a)
            case Op.NE:
                return bool(value != a)
            case Op.GT:
                return bool(value > a)
            case Op.GE:
                return bool(value >= a)
            case Op.LT:
                return bool(value < a)
            case Op.LE:
                return bool(value <= a)
            case Op.BETWEEN:
                return bool(a < value < self.operands[1])  # exclusive, as DQDL
            case Op.IN:
                return value in self.operands
            case Op.NOT_IN:
                return value not in self.operands


ALL_ROWS = Expr(Op.EQ, (1.0,))  # a row rule without `with threshold`: every row must pass


@dataclass(frozen=True, slots=True)
class QualityRule:
    """One parsed rule: its type, column, expression (durations in seconds) and the threshold
    on the fraction of rows that pass (row rules only)."""

    text: str
    kind: RuleType
    column: str | None
    expr: Expr | None
    threshold: Expr
    on_failure: OnFailure


class QualityRuleSpec(BaseModel):
    """One entry of a dataset's `quality:` list."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rule: str
    on_failure: OnFailure = OnFailure.WARN

    @field_validator("rule")
    @classmethod
    def _parses(cls, value: str) -> str:
        parse_rule(value)  # raises ValueError saying what is wrong
        return value

    def parsed(self) -> QualityRule:
        """The rule, parsed."""
        return parse_rule(self.rule, self.on_failure)


_TOKEN = re.compile(
    r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*")|(?P<num>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)'
    r"|(?P<op>!=|>=|<=|=|>|<)|(?P<punct>[\[\],])|(?P<word>[A-Za-z_][A-Za-z0-9_]*))"
)
_UNITS = {"hour": 3600.0, "hours": 3600.0, "day": 86400.0, "days": 86400.0}
_COMPARE = {op.value: op for op in Op if op not in (Op.BETWEEN, Op.IN, Op.NOT_IN)}
_KEYWORDS: dict[str, Any] = {"NULL": None, "EMPTY": ""}  # DQDL's list keywords


def _tokens(text: str) -> list[tuple[str, Any]]:
    found: list[tuple[str, Any]] = []
    at = 0
    while at < len(text.rstrip()):
        match = _TOKEN.match(text, at)
        if match is None or match.end() == at:
            raise ValueError(f"cannot read {text[at:].strip()!r} in rule {text!r}")
        at = match.end()
        kind = match.lastgroup or ""
        raw = match.group(kind)
        if kind == "str":
            found.append(("str", raw[1:-1].replace('\\"', '"')))
        elif kind == "num":
            found.append(("num", float(raw) if any(c in raw for c in ".eE") else int(raw)))
        else:
            found.append((kind, raw))
    return found


class _Reader:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.at = 0

    def fail(self, want: str) -> ValueError:
        got = self.tokens[self.at][1] if self.at < len(self.tokens) else "the end"
        return ValueError(f"rule {self.text!r}: expected {want}, found {got!r}")

    def take(self, kind: str, want: str) -> Any:
        if self.at >= len(self.tokens) or self.tokens[self.at][0] != kind:
            raise self.fail(want)
        self.at += 1
        return self.tokens[self.at - 1][1]

    def peek(self, kind: str, value: str) -> bool:
        return self.at < len(self.tokens) and self.tokens[self.at] == (kind, value)

    def number(self, duration: bool = False) -> float:
        value = float(self.take("num", "a number"))
        if duration:
            unit = self.take("word", "a unit (hours or days)")
            if unit not in _UNITS:
                raise ValueError(f"rule {self.text!r}: unit {unit!r} is not hours or days")
            value *= _UNITS[unit]
        return value

    def value_list(self) -> tuple[Any, ...]:
        """`["a", 1, NULL, EMPTY]`: strings, numbers, NULL (None) and EMPTY (""); not empty."""
        self.take("punct", "[")
        items: list[Any] = []
        while not self.peek("punct", "]"):
            if items:
                self.take("punct", ",")
            kind = self.tokens[self.at][0] if self.at < len(self.tokens) else ""
            if kind == "word" and self.tokens[self.at][1] in _KEYWORDS:
                items.append(_KEYWORDS[self.take("word", "a value")])
            else:
                items.append(self.take(kind if kind in ("str", "num") else "str", "a value"))
        self.at += 1
        if not items:
            raise ValueError(f"rule {self.text!r}: an empty list matches no value")
        return tuple(items)

    def expr(self, *, values: bool = False, duration: bool = False) -> Expr:
        if self.peek("word", "between"):
            self.at += 1
            low = self.number(duration)
            if self.take("word", "and") != "and":
                raise self.fail("and")
            high = self.number(duration)
            if low >= high:  # exclusive bounds: `between 5 and 5` holds for nothing
                raise ValueError(f"rule {self.text!r}: between {low:g} and {high:g} is empty")
            return Expr(Op.BETWEEN, (low, high))
        negated = values and self.peek("word", "not")
        if negated:
            self.at += 1
        if values and self.peek("word", "in"):
            self.at += 1
            return Expr(Op.NOT_IN if negated else Op.IN, self.value_list())
        if negated:
            raise self.fail("in")
        text = str(self.take("op", "=, !=, >, >=, <, <=, between" + (", in or not in" * values)))
        op = _COMPARE.get(text)
        if op is None:  # pragma: no cover - the token pattern admits only these operators
            raise self.fail("a comparison")
        if values and self.at < len(self.tokens) and self.tokens[self.at][0] == "str":
            return Expr(op, (self.take("str", "a value"),))
        return Expr(op, (self.number(duration),))


def parse_rule(text: str, on_failure: OnFailure = OnFailure.WARN) -> QualityRule:
    """Parse one DQDL rule; raises `ValueError` naming what is wrong."""
    reader = _Reader(text)
    name = reader.take("word", "a rule type")
    try:
        kind = RuleType(name)
    except ValueError:
        kinds = ", ".join(k.value for k in RuleType)
        raise ValueError(f"rule {text!r}: unknown rule type {name!r} (known: {kinds})") from None
    column = None if kind is RuleType.ROW_COUNT else reader.take("str", 'a "column"')
    expr: Expr | None = None
    threshold = ALL_ROWS
    if kind in (RuleType.ROW_COUNT, RuleType.COMPLETENESS):
        expr = reader.expr()
    elif kind in (RuleType.COLUMN_VALUES, RuleType.DATA_FRESHNESS):
        expr = reader.expr(
            values=kind is RuleType.COLUMN_VALUES, duration=kind is RuleType.DATA_FRESHNESS
        )
        if reader.peek("word", "with"):
            reader.at += 1
            if reader.take("word", "threshold") != "threshold":
                raise reader.fail("threshold")
            threshold = reader.expr()
    if reader.at != len(reader.tokens):
        raise reader.fail("the end of the rule")
    fractions = [threshold] + ([expr] if kind is RuleType.COMPLETENESS and expr else [])
    for fraction in fractions:
        if any(not 0 <= float(v) <= 1 for v in fraction.operands):
            raise ValueError(f"rule {text!r}: a fraction of rows is between 0 and 1")
    return QualityRule(text, kind, column, expr, threshold, on_failure)


_NUMERIC = frozenset({FieldType.INTEGER, FieldType.NUMBER, FieldType.ANY})
_TEXTUAL = frozenset({FieldType.STRING, FieldType.TIMESTAMP, FieldType.ANY})
_INSTANTS = frozenset({FieldType.TIMESTAMP, FieldType.STRING, FieldType.ANY})


def check_columns(
    rule: QualityRule, columns: dict[str, FieldType], renamed: dict[str, str]
) -> None:
    """Raise `ValueError` when `rule` names a column the curated rows do not have (`columns`:
    `tributary.curated.curated_columns`), or one whose type the rule cannot compare: found when
    the registry loads, rather than by every curate run of the dataset failing."""
    if rule.column is None:
        return
    kind = columns.get(rule.column)
    if kind is None:
        hint = (
            f" (curated.rename makes it {renamed[rule.column]!r})" if rule.column in renamed else ""
        )
        raise ValueError(
            f"quality rule {rule.text!r} names column {rule.column!r}{hint}, which the curated "
            f"rows do not have (they have {', '.join(sorted(columns))})"
        )
    wants: frozenset[FieldType] | None = None
    if rule.kind is RuleType.DATA_FRESHNESS:
        wants = _INSTANTS
    elif rule.kind is RuleType.COLUMN_VALUES and rule.expr is not None:
        numbers = [isinstance(v, (int, float)) for v in rule.expr.operands if v is not None]
        wants = _NUMERIC if numbers and all(numbers) else _TEXTUAL if numbers else None
    if wants is not None and kind not in wants:
        raise ValueError(
            f"quality rule {rule.text!r}: column {rule.column!r} is {kind}, which it cannot "
            f"compare (it needs {' or '.join(sorted(t for t in wants if t is not FieldType.ANY))})"
        )
