"""The registry's `quality:` rules: DQDL syntax for the six rule types, parsed at load time; a
rule that does not parse fails the registry with the dataset, the rule and what is wrong."""

from __future__ import annotations

import pytest

from tributary.dataset import DatasetRegistry
from tributary.errors import ConfigError
from tributary.quality import OnFailure, Op, RuleType, parse_rule

REGISTRY = """
datasets:
  posts:
    id_field: id
    quality:
      - {rule: RULE, on_failure: block}
"""


@pytest.mark.parametrize(
    ("text", "kind", "column", "op", "operands", "threshold"),
    [
        ("RowCount between 10 and 20", RuleType.ROW_COUNT, None, Op.BETWEEN, (10, 20), (1.0,)),
        ('IsComplete "title"', RuleType.IS_COMPLETE, "title", None, None, (1.0,)),
        ('Completeness "price" > 0.95', RuleType.COMPLETENESS, "price", Op.GT, (0.95,), (1.0,)),
        ('IsUnique "id"', RuleType.IS_UNIQUE, "id", None, None, (1.0,)),
        ('ColumnValues "t" in ["a", "b"]', RuleType.COLUMN_VALUES, "t", Op.IN, ("a", "b"), (1.0,)),
        ('ColumnValues "n" in [1, 2]', RuleType.COLUMN_VALUES, "n", Op.IN, (1, 2), (1.0,)),
        ('ColumnValues "c" in ["]", "a"]', RuleType.COLUMN_VALUES, "c", Op.IN, ("]", "a"), (1.0,)),
        (
            'ColumnValues "c" in ["a", NULL, EMPTY]',
            RuleType.COLUMN_VALUES,
            "c",
            Op.IN,
            ("a", None, ""),
            (1.0,),
        ),
        (
            'ColumnValues "n" not in [1, NULL]',
            RuleType.COLUMN_VALUES,
            "n",
            Op.NOT_IN,
            (1, None),
            (1.0,),
        ),
        (
            'ColumnValues "n" <= 5 with threshold > 0.8',
            RuleType.COLUMN_VALUES,
            "n",
            Op.LE,
            (5,),
            (0.8,),
        ),
        ('DataFreshness "d" <= 24 hours', RuleType.DATA_FRESHNESS, "d", Op.LE, (86400,), (1.0,)),
        (
            'DataFreshness "d" between 2 days and 5 days',
            RuleType.DATA_FRESHNESS,
            "d",
            Op.BETWEEN,
            (172800, 432000),
            (1.0,),
        ),
    ],
)
def test_rules_parse_as_dqdl_spells_them(
    text: str,
    kind: RuleType,
    column: str | None,
    op: Op | None,
    operands: tuple[object, ...] | None,
    threshold: tuple[float, ...],
) -> None:
    rule = parse_rule(text, OnFailure.BLOCK)
    assert (rule.kind, rule.column, rule.on_failure) == (kind, column, OnFailure.BLOCK)
    assert (rule.expr.op if rule.expr else None) == op
    assert (rule.expr.operands if rule.expr else None) == operands
    assert rule.threshold.operands == threshold


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("Rowcount > 0", "unknown rule type 'Rowcount'"),
        ("RowCount", "expected =, !="),
        ("IsComplete title", 'expected a "column"'),
        ('ColumnValues "a" in [1,', "expected a value"),
        ('DataFreshness "d" <= 3 weeks', "unit 'weeks' is not hours or days"),
        ("RowCount > 0 and IsUnique", "expected the end of the rule"),
        ('ColumnValues "c" in []', "an empty list matches no value"),
        ("RowCount between 5 and 1", "between 5 and 1 is empty"),
        ("RowCount between 5 and 5", "between 5 and 5 is empty"),  # exclusive bounds
        ('Completeness "c" >= 1.5', "a fraction of rows is between 0 and 1"),
        ('ColumnValues "c" > 1 with threshold >= 2', "a fraction of rows is between 0 and 1"),
        ('ColumnValues "c" not > 1', "expected in"),
    ],
)
def test_a_bad_rule_fails_the_registry_saying_why(text: str, problem: str) -> None:
    yaml_rule = text.replace('"', '\\"')
    with pytest.raises(ConfigError, match="posts") as caught:
        DatasetRegistry.from_yaml(REGISTRY.replace("RULE", f'"{yaml_rule}"'))
    assert problem in str(caught.value)


@pytest.mark.parametrize(
    ("text", "null_passes"),
    [
        ('ColumnValues "c" != 1', True),
        ('ColumnValues "c" not in [1, 2]', True),
        ('ColumnValues "c" not in [1, NULL]', False),
        ('ColumnValues "c" in [1, NULL]', True),
        ('ColumnValues "c" in [1, 2]', False),
        ('ColumnValues "c" = 1', False),
        ('ColumnValues "c" between 0 and 2', False),
    ],
)
def test_null_rows_pass_only_negated_expressions_as_in_dqdl(text: str, null_passes: bool) -> None:
    """The Glue DQDL ColumnValues page: NULL fails every ColumnValues rule but `!=` and
    `not in`; a list may name NULL to allow it (`in`) or to refuse it (`not in`)."""
    expr = parse_rule(text).expr
    assert expr is not None
    assert expr.holds(None) is null_passes
    assert expr.holds(1) is (expr.op in (Op.EQ, Op.IN, Op.BETWEEN))  # and 1 is in range


@pytest.mark.parametrize(("value", "holds"), [(0, False), (0.5, True), (4.5, True), (5, False)])
def test_between_is_exclusive_as_in_dqdl(value: float, holds: bool) -> None:
    """DQDL's `between a and b` excludes its bounds (Deequ's DQDL translation, which Glue Data
    Quality runs: awslabs/deequ ColumnValuesRuleSpec, "BETWEEN ... with exclusive bounds")."""
    for text in ('ColumnValues "c" between 0 and 5', "RowCount between 0 and 5"):
        expr = parse_rule(text).expr
        assert expr is not None
        assert expr.holds(value) is holds


def test_shipped_rules_load(registry: DatasetRegistry) -> None:
    assert registry["posts"].quality[0].text == "RowCount > 0"
    assert registry["items"].quality[0].on_failure is OnFailure.BLOCK
    assert all(d.quality for d in registry.values())


COLUMNS = """
datasets:
  comments:
    id_field: id
    schema:
      fields:
        id: {type: integer, required: true}
        name: {type: string}
        email: {type: string, required: true}
        address: {type: object, fields: {city: {type: string}, zip: {type: integer}}}
        price: {type: string}
    curated:
      rename: {email: author_email}
      cast: {price: "decimal(10,2)"}
      drop: [name]
    quality:
      - {rule: RULE, on_failure: warn}
"""


@pytest.mark.parametrize(
    ("rule", "problem"),
    [
        ('IsComplete "email"', "names column 'email' (curated.rename makes it 'author_email')"),
        ('IsComplete "name"', "names column 'name'"),  # dropped
        ('IsComplete "address"', "names column 'address'"),  # flattened away
        ('ColumnValues "author_email" > 5', "'author_email' is string, which it cannot compare"),
        ('ColumnValues "id" in ["a", "b"]', "'id' is integer, which it cannot compare"),
        ('DataFreshness "address_zip" <= 2 days', "'address_zip' is integer"),
    ],
)
def test_a_rule_naming_a_column_the_curated_rows_lack_fails_the_registry(
    rule: str, problem: str
) -> None:
    """Found at load (API, consumer, importer, curate start-up), not by every curate run of
    the dataset exiting 2 — even for a `warn` rule."""
    with pytest.raises(ConfigError, match="comments") as caught:
        DatasetRegistry.from_yaml(COLUMNS.replace("RULE", rule.replace('"', '\\"').join('""')))
    assert problem in str(caught.value)


@pytest.mark.parametrize(
    "rule",
    [
        'IsComplete "author_email"',
        'IsComplete "address_city"',
        'ColumnValues "address_zip" between 1 and 99999',
        'ColumnValues "price" >= 0',  # cast to a decimal: a number
        'DataFreshness "_received_at" <= 24 hours',
        'IsUnique "_id"',
        'ColumnValues "day" in ["01", "02"]',
    ],
)
def test_rules_on_curated_columns_load(rule: str) -> None:
    registry = DatasetRegistry.from_yaml(
        COLUMNS.replace("RULE", rule.replace('"', '\\"').join('""'))
    )
    assert registry["comments"].quality[0].text == rule


def test_no_shipped_rule_is_implied_by_the_schema(registry: DatasetRegistry) -> None:
    """A rule the schema already enforces can never fail (rules see only valid rows): no
    IsComplete/Completeness on a required, non-nullable field, no ColumnValues bound the
    field's own minimum/maximum already gives (on an optional field it would only count nulls,
    a Completeness rule by another name)."""
    for name, dataset in registry.items():
        fields = dataset.schema.fields
        renamed = {new: old for old, new in dataset.curated.rename.items()}
        for rule in dataset.quality:
            spec = fields.get(renamed.get(rule.column or "", rule.column or ""))
            if spec is None or (rule.expr is None and rule.kind is not RuleType.IS_COMPLETE):
                continue
            required = spec.required and not spec.nullable
            assert not (required and rule.kind in (RuleType.IS_COMPLETE, RuleType.COMPLETENESS)), (
                f"{name}: {rule.text} cannot fail: the schema requires {rule.column}"
            )
            if rule.kind is RuleType.COLUMN_VALUES and rule.expr is not None:
                low = spec.minimum if spec.minimum is not None else float("-inf")
                high = spec.maximum if spec.maximum is not None else float("inf")
                op, operands = rule.expr.op, rule.expr.operands
                implied = (
                    (op in (Op.GE, Op.GT) and operands[0] < low)
                    or (op is Op.GE and operands[0] == low)
                    or (op in (Op.LE, Op.LT) and operands[0] > high)
                    or (op is Op.LE and operands[0] == high)
                    or (op is Op.BETWEEN and operands[0] <= low and operands[1] >= high)
                )
                assert not implied, f"{name}: {rule.text} is implied by the schema's bounds"
