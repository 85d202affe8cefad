"""The registry's record rules compiled to Spark SQL Column expressions.

`line_rules(line, dataset, schema)` gives, for each raw line, the same verdict and the same
field/message list as `Envelope.from_json` + `RecordValidator.errors` (the API's validator), in
the JVM: no Python worker sees a valid line.

How JSON is read. A plain `from_json` cannot tell `"5"` from `5`, nor a missing field from a null
one. Every JSON string token is first rewritten to a string holding its own quotes
(`"x"` → `"\\"x\\""`), so each value read as Spark text says its JSON type: `"…"` a string, `{`
an object, `[` an array, `true`/`false`, a number, and SQL null a JSON null. Objects are read as
`map<string,string>` (a key present with a null value is a JSON null; an absent key is missing;
undeclared keys are the map's other keys). The line is read wrapped in `[…]` so that trailing
content after the envelope makes the read fail, as it does for orjson.

Python decides where an expression cannot (`python` is true; the caller sends those lines to the
Python validator):
- lines Spark's JSON reader rejects, or that hold a surrogate escape (`\\ud8xx`, orjson refuses
  a lone one), an exponent of 3 digits or a 300-digit number (orjson: infinity, an error);
- timestamps other than `YYYY-MM-DD[T ]HH:MM:SS[.fff|.ffffff][Z|±HH:MM]` in years 0002..9998
  (`datetime.fromisoformat` accepts many more forms);
- patterns outside the subset whose Python and Java meaning is the same (see `java_pattern`);
- enums listing something other than strings, booleans and numbers within ±2^53;
- messages quoting a value Python's `repr` prints in a way not rebuilt here: a float
  (`must be >= 1, got 0.5`), a string other than printable ASCII, a list or an object.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from tributary.schema import AdditionalFields, FieldSpec, FieldType, SchemaSpec

# A JSON string token; scanning left to right, every match is a whole token (quotes occur only
# in strings), so the rewrite changes nothing but strings.
STRING_TOKEN = r'"((?:[^"\\]|\\.)*)"'
QUOTED_TOKEN = r'"\\"$1\\""'
# What Spark's JSON reader must refuse as orjson does.
JSON_OPTIONS = {
    "allowNonNumericNumbers": "false",
    "allowSingleQuotes": "false",
    "allowUnquotedFieldNames": "false",
    "allowNumericLeadingZeros": "false",
    "allowBackslashEscapingAnyCharacter": "false",
    "allowUnquotedControlChars": "false",
}
# Lines orjson may judge differently from Jackson: sent to Python.
PYTHON_LINES = r"\\[uU][dD][89abAB]|[eE][+]?[0-9]{3}|[0-9]{300}"
ENVELOPE_NAMES = ("dataset", "id", "source", "received_at")
OBJECT_READ, ARRAY_READ = "map<string,string>", "array<string>"


def _envelope_read(data: str) -> str:
    names = ",".join(f'`"{n}"`:string' for n in ("v", *ENVELOPE_NAMES))
    return f'array<struct<{names},`"data"`:{data}>>'


# The envelope with its data object as a map of texts (one read of the line); a `data` that is
# missing, null or not an object reads as null, and only then is the line read again for it.
ENVELOPE_READ, ENVELOPE_TEXT_READ = _envelope_read(OBJECT_READ), _envelope_read("string")
INT_MIN, INT_MAX = -(2**63), 2**64 - 1  # what orjson reads as int; beyond: a float
TIMESTAMP = (
    r"^(000[2-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-8][0-9]{3}|9[0-8][0-9]{2}|99[0-8][0-9])"
    r"-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[T ]([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
    r"(\.[0-9]{3}|\.[0-9]{6})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])?\z"
)
EXACT_FLOAT = 2**53


@dataclass(frozen=True, slots=True)
class Verdict:
    """Per line: `valid`, `errors` (array<struct<field,message>>, meaningful when not valid and
    not `python`; a null message means Python must word it) and `python`."""

    valid: Column
    errors: Column
    python: Column


@dataclass(frozen=True, slots=True)
class Checked:
    """One value's checks: valid, its errors (evaluated only when not valid), undecided."""

    valid: Column
    errors: Column
    undecided: Column


ERRORS = "array<struct<field:string,message:string>>"


class _Lazy:
    """Columns built on first use (a Column needs a running session)."""

    @property
    def empty(self) -> Column:
        return F.array().cast(ERRORS)

    @property
    def false(self) -> Column:
        return F.lit(False)


_L = _Lazy()


def _error(path: Column, message: Column | str) -> Column:
    text = F.lit(message) if isinstance(message, str) else message
    return F.array(F.struct(path.alias("field"), text.alias("message")))


def _read(text: Column, schema: str) -> Column:
    return F.from_json(text, schema, JSON_OPTIONS)


# ---- what a value's text says -----------------------------------------------------------------


def is_string(t: Column) -> Column:
    return t.startswith('"')


def content(t: Column) -> Column:
    """A string token's value (the text without the quotes the rewrite added)."""
    return t.substr(F.lit(2), F.length(t) - 2)


def is_int_token(t: Column) -> Column:
    return t.rlike(r"^-?[0-9]+\z")


def is_python_int(t: Column) -> Column:
    """An integer orjson reads as an int (outside -2^63..2^64-1 it reads a float)."""
    small = F.length(t) <= 18
    wide = t.cast("decimal(38,0)").between(F.lit(Decimal(INT_MIN)), F.lit(Decimal(INT_MAX)))
    return is_int_token(t) & (small | F.coalesce(wide, _L.false))


def is_number(t: Column) -> Column:
    return t.rlike(r"^-?[0-9]")


def json_type(t: Column) -> Column:
    """The name `_json_type` gives the Python value of a non-null text."""
    return (
        F.when(is_string(t), "string")
        .when(t.startswith("{"), "object")
        .when(t.startswith("["), "array")
        .when(t.isin("true", "false"), "boolean")
        .when(is_python_int(t), "integer")
        .otherwise("number")
    )


def py_repr(t: Column) -> Column:
    """Python's `repr` of the value, or null where it is not rebuilt here (floats, non-ASCII or
    unprintable strings, arrays, objects)."""
    c = content(t)
    escaped = F.regexp_replace(c, r"\\", r"\\\\")
    simple = is_string(t) & c.rlike(r"^[ -~]*\z")
    return (
        F.when(t.isNull(), "None")
        .when(
            simple & c.contains("'") & ~c.contains('"'), F.concat(F.lit('"'), escaped, F.lit('"'))
        )
        .when(simple, F.concat(F.lit("'"), F.regexp_replace(escaped, "'", r"\\'"), F.lit("'")))
        .when(t == "true", "True")
        .when(t == "false", "False")
        .when(is_python_int(t), t)
    )


def java_pattern(pattern: str) -> str | None:
    """`pattern` for Java's regex with the meaning Python's `re.search` gives it, or None when
    this subset does not cover it: ASCII literals (escaped or not), `.`, `^`, `$`, groups
    `(…)`/`(?:…)`, `|`, quantifiers `* + ? {m,n}` (lazy too), classes `[…]` of ASCII literals
    and ranges. `(?d)` makes `.` and `$` treat only `\\n` as a line end, as Python does."""
    i, out, in_class = 0, [], False
    specials = set(".^$|()*+?{}[]")
    while i < len(pattern):
        ch = pattern[i]
        if not 0x20 <= ord(ch) < 0x7F:
            return None
        if ch == "\\":
            if i + 1 >= len(pattern):
                return None
            nxt = pattern[i + 1]
            if nxt.isalnum() or not 0x20 <= ord(nxt) < 0x7F:
                return None  # \d \w \s \b \1 \x… : classes and escapes that differ or vary
            out.append("\\" + nxt)
            i += 2
            continue
        if in_class:
            if ch == "[" or (ch == "&" and pattern[i : i + 2] == "&&"):
                return None  # Java: nested classes and intersections
            if ch == "]":
                in_class = False
            out.append(ch)
        elif ch == "[":
            in_class = True
            out.append(ch)
            if pattern[i + 1 : i + 2] == "^":
                out.append("^")
                i += 1
            if pattern[i + 1 : i + 2] == "]":
                return None  # a leading ] is a literal in Python only
        elif ch == "(" and pattern[i + 1 : i + 2] == "?":
            if pattern[i + 2 : i + 3] != ":":
                return None  # lookarounds, named groups, flags
            out.append("(?:")
            i += 3
            continue
        elif ch == "{":
            m = re.match(r"\{(\d+)(,(\d*))?\}", pattern[i:])
            if m is None or (m.group(3) == "" and m.group(2)):
                return None  # a literal { or {m,}: both read it differently
            out.append(m.group(0))
            i += len(m.group(0))
            continue
        elif ch not in specials and not ch.isalnum() and ch != " ":
            out.append("\\" + ch if ch in "<>-=!&~#@%'\",;:/`" else ch)
        else:
            out.append(ch)
        i += 1
    if in_class:
        return None
    try:
        re.compile(pattern)
    except re.error:
        return None
    return "(?d)" + "".join(out)


# ---- the compiler -----------------------------------------------------------------------------


def _ceil_limit(low: float) -> Decimal:
    """The least integer not below `low`, clamped beyond any int orjson reads."""
    return Decimal(max(min(math.ceil(low), 2**70), -(2**70)))


def _floor_limit(high: float) -> Decimal:
    return Decimal(max(min(math.floor(high), 2**70), -(2**70)))


def _dec(t: Column) -> Column:
    return t.cast("decimal(38,0)")


class _Compiler:
    """Builds the checks; the texts they read are columns of their own, added level by level
    (`levels`), so each JSON read and map look-up runs once per line and the expression trees
    stay small. Inside array items (lambdas) the checks are inline (`level` None)."""

    def __init__(self) -> None:
        self.levels: list[dict[str, Column]] = []

    def stage(self, level: int | None, column: Column) -> Column:
        """`column` as a column of its own at `level` (read from the levels before it)."""
        if level is None:
            return column
        while len(self.levels) <= level:
            self.levels.append({})
        name = f"_rule{sum(len(x) for x in self.levels)}"
        self.levels[level][name] = column
        return F.col(name)

    def field(self, spec: FieldSpec, t: Column, path: Column, level: int | None = None) -> Checked:
        """The checks of one present value `t` (text, SQL null for JSON null), a column at
        `level`."""
        kind = spec.type
        expected = "ISO-8601 timestamp string" if kind is FieldType.TIMESTAMP else kind.value
        type_ok, undecided = self._type(kind, t)
        rules = self._constraints(spec, t, path, level)
        null_ok = spec.nullable or kind is FieldType.ANY
        valid = F.when(t.isNull(), F.lit(null_ok)).otherwise(type_ok & rules.valid)
        errors = (
            F.when(
                t.isNull(), _L.empty if null_ok else _error(path, f"must be {expected}, got null")
            )
            .when(
                ~type_ok,
                _error(path, F.concat(F.lit(f"must be {expected}, got "), json_type(t))),
            )
            .otherwise(rules.errors)
        )
        decide = F.when(t.isNull(), _L.false).otherwise(undecided | (type_ok & rules.undecided))
        return Checked(valid, errors, decide)

    def _type(self, kind: FieldType, t: Column) -> tuple[Column, Column]:
        match kind:
            case FieldType.STRING:
                return is_string(t), _L.false
            case FieldType.INTEGER:
                return is_python_int(t), _L.false
            case FieldType.NUMBER:
                return is_number(t), _L.false
            case FieldType.BOOLEAN:
                return t.isin("true", "false"), _L.false
            case FieldType.OBJECT:
                return t.startswith("{"), _L.false
            case FieldType.ARRAY:
                return t.startswith("["), _L.false
            case FieldType.TIMESTAMP:
                c = content(t)
                day = F.try_to_timestamp(c.substr(1, 10), F.lit("yyyy-MM-dd"))
                common = is_string(t) & c.rlike(TIMESTAMP)
                ok = common & day.isNotNull()
                return ok, is_string(t) & ~common
        return F.lit(True), _L.false  # any

    def _constraints(self, spec: FieldSpec, t: Column, path: Column, level: int | None) -> Checked:
        after = None if level is None else level + 1
        parts: list[Checked] = []
        if spec.minimum is not None:
            low = spec.minimum
            below = F.when(is_python_int(t), _dec(t) < F.lit(_ceil_limit(low))).otherwise(
                t.cast("double") < F.lit(low)
            )
            parts.append(self._fails(below, path, f"must be >= {low:g}, got ", self._num_repr(t)))
        if spec.maximum is not None:
            high = spec.maximum
            above = F.when(is_python_int(t), _dec(t) > F.lit(_floor_limit(high))).otherwise(
                t.cast("double") > F.lit(high)
            )
            parts.append(self._fails(above, path, f"must be <= {high:g}, got ", self._num_repr(t)))
        if spec.min_length is not None or spec.max_length is not None:
            size = (
                F.char_length(content(t))
                if spec.type is FieldType.STRING
                else F.size(_read(t, ARRAY_READ))
            )
            if spec.min_length is not None:
                n = spec.min_length
                parts.append(
                    self._fails(size < n, path, f"length must be >= {n}, got ", size.cast("string"))
                )
            if spec.max_length is not None:
                n = spec.max_length
                parts.append(
                    self._fails(size > n, path, f"length must be <= {n}, got ", size.cast("string"))
                )
        if spec.pattern is not None:
            message = f"must match pattern {spec.pattern!r}"
            java = java_pattern(spec.pattern)
            if java is None:
                parts.append(Checked(F.lit(True), _L.empty, is_string(t)))
            else:
                miss = is_string(t) & ~content(t).rlike(java)
                parts.append(
                    Checked(
                        ~miss, F.when(miss, _error(path, message)).otherwise(_L.empty), _L.false
                    )
                )
        if spec.enum is not None:
            parts.append(self._enum(spec.enum, t, path))
        if spec.fields is not None:
            m = self.stage(after, _read(t, OBJECT_READ))
            parts.append(self.object(spec.fields, spec.additional_fields, m, path, after))
        if spec.items is not None:
            parts.append(self._items(spec.items, _read(t, ARRAY_READ), path))
        if not parts:
            return Checked(F.lit(True), _L.empty, _L.false)
        valid = parts[0].valid
        undecided = parts[0].undecided
        for p in parts[1:]:
            valid, undecided = valid & p.valid, undecided | p.undecided
        return Checked(valid, F.concat(*(p.errors for p in parts)), undecided)

    @staticmethod
    def _num_repr(t: Column) -> Column:
        return F.when(is_python_int(t), t)  # a float's repr: Python words it

    @staticmethod
    def _fails(fails: Column, path: Column, prefix: str, shown: Column) -> Checked:
        errors = F.when(fails, _error(path, F.concat(F.lit(prefix), shown))).otherwise(_L.empty)
        return Checked(~fails, errors, _L.false)

    def _enum(self, allowed: list[Any], t: Column, path: Column) -> Checked:
        message = f"must be one of {allowed!r}, got "
        scalar = all(
            isinstance(a, str | bool)
            or (isinstance(a, int | float) and math.isfinite(a) and abs(a) <= EXACT_FLOAT)
            for a in allowed
        )
        if not scalar:
            return Checked(F.lit(True), _L.empty, F.lit(True))
        # Python's ==: True == 1 == 1.0, and a string equals only a string.
        number = (
            F.when(t == "true", F.lit(1.0))
            .when(t == "false", F.lit(0.0))
            .when(is_number(t), t.cast("double"))
        )
        exact = (
            F.when(t == "true", F.lit(1))
            .when(t == "false", F.lit(0))
            .when(is_python_int(t), _dec(t))
        )
        hits: list[Column] = []
        for a in allowed:
            if isinstance(a, str):
                hits.append(is_string(t) & (content(t) == a))
            elif isinstance(a, float) and not a.is_integer():
                hits.append(~is_python_int(t) & (number == a))
            else:  # an integral number or a bool: exact against ints, as a double against floats
                hits.append(
                    F.when(exact.isNotNull(), exact == F.lit(Decimal(int(a)))).otherwise(
                        F.coalesce(number == float(a), _L.false)
                    )
                )
        inside = F.coalesce(functools.reduce(lambda a, b: a | b, hits, _L.false), _L.false)
        errors = F.when(~inside, _error(path, F.concat(F.lit(message), py_repr(t)))).otherwise(
            _L.empty
        )
        return Checked(inside, errors, _L.false)

    def _items(self, spec: FieldSpec, items: Column, path: Column) -> Checked:
        def at(i: Column) -> Column:
            return F.concat(path, F.lit("["), i.cast("string"), F.lit("]"))

        valid = F.forall(items, lambda x: self.field(spec, x, F.lit("")).valid)
        errors = F.flatten(F.transform(items, lambda x, i: self.field(spec, x, at(i)).errors))
        undecided = F.exists(items, lambda x: self.field(spec, x, F.lit("")).undecided)
        return Checked(valid, errors, undecided)

    def object(
        self,
        fields: dict[str, FieldSpec],
        additional: AdditionalFields,
        m: Column,
        path: Column | None,
        level: int | None = None,
        top: bool = False,
    ) -> Checked:
        """The checks of an object read as a map of texts; `path` None at the record's top."""

        def named(name: str | Column) -> Column:
            text = F.lit(name) if isinstance(name, str) else name
            return text if path is None else F.concat(path, F.lit("."), text)

        valid: Column = F.lit(True)
        undecided: Column = _L.false
        errors: list[Column] = []
        for name, spec in fields.items():
            key = f'"{name}"'
            after = None if level is None else level + 1
            present = self.stage(after, F.map_contains_key(m, key))
            checked = self.field(spec, self.stage(after, m[key]), named(name), after)
            valid = valid & F.when(present, checked.valid).otherwise(F.lit(not spec.required))
            undecided = undecided | (present & checked.undecided)
            missing = _error(named(name), "field required") if spec.required else _L.empty
            errors.append(F.when(present, checked.errors).otherwise(missing))
        if additional is AdditionalFields.REJECT:
            declared = [f'"{n}"' for n in fields]
            extra = F.filter(F.map_keys(m), lambda k: ~k.isin(declared))
            valid = valid & (F.size(extra) == 0)

            def extra_path(k: Column) -> Column:
                if top:  # curate names a top-level field `data.<name>`, and `data` for ""
                    return F.when(content(k) == "", path).otherwise(named(content(k)))
                return named(content(k))

            errors.append(
                F.transform(
                    extra,
                    lambda k: F.struct(
                        extra_path(k).alias("field"),
                        F.lit("field not allowed by the schema").alias("message"),
                    ),
                )
            )
        return Checked(valid, F.concat(*errors) if errors else _L.empty, undecided)


VALID, ERRORS_COLUMN, PYTHON = "_rule_valid", "_rule_errors", "_rule_python"
# Kept for typing without reading the line again: the envelope's texts and the data map.
ENVELOPE_TEXTS, DATA_TEXTS = "_rule_envelope", "_rule_data"


def with_verdict(df: DataFrame, line: str, dataset: str, schema: SchemaSpec) -> DataFrame:
    """`df` with `_rule_valid`, `_rule_errors` (null when valid) and `_rule_python` for its raw
    `line` column, lines of `dataset` (see the module docstring), and the texts read
    (`_rule_envelope`, `_rule_data`: see `text_value`)."""
    c = _Compiler()
    text = F.col(line)
    quoted = F.regexp_replace(text, STRING_TOKEN, QUOTED_TOKEN)
    read = c.stage(0, _read(F.concat(F.lit("["), quoted, F.lit("]")), ENVELOPE_READ))
    env = c.stage(1, read[0])
    python = c.stage(
        1, read.isNull() | (F.size(read) != 1) | read[0].isNull() | text.rlike(PYTHON_LINES)
    )
    wrapped = F.concat(F.lit("["), quoted, F.lit("]"))
    fields = {n: c.stage(2, env[f'"{n}"']) for n in ("v", *ENVELOPE_NAMES)}
    record_map = c.stage(2, env['"data"'])
    data = c.stage(
        2, F.when(env['"data"'].isNull(), _read(wrapped, ENVELOPE_TEXT_READ)[0]['"data"'])
    )
    v = fields["v"]

    # Envelope.from_json, in its order; its first failure is the line's only error.
    v_ok = v.isin("1", "true") | (is_number(v) & ~is_int_token(v) & (v.cast("double") == 1.0))
    checks: list[tuple[Column, Column]] = [
        (~v_ok, F.concat(F.lit("unsupported envelope version "), py_repr(v))),
    ]
    for name in ENVELOPE_NAMES:
        t = fields[name]
        bad = ~F.coalesce(is_string(t) & (t != '""'), _L.false)
        checks.append((bad, F.lit(f"envelope field {name!r} must be a non-empty string")))
    # A null `data` text: the key is missing, or present with a JSON null (read again to tell,
    # only then: `&` stops at a false left side).
    keys = _read(wrapped, f"array<{OBJECT_READ}>")
    missing = (
        record_map.isNull()
        & data.isNull()
        & ~F.coalesce(F.map_contains_key(keys[0], '"data"'), _L.false)
    )
    checks.append((missing, F.lit("envelope field 'data' is missing")))
    name_t = fields["dataset"]
    other = F.coalesce(content(name_t) != dataset, _L.false)
    shown = F.concat(
        F.lit("envelope of dataset "), py_repr(name_t), F.lit(f" under raw/{dataset}/")
    )
    checks.append((other, shown))
    envelope_bad: Column = _L.false
    envelope_error: Column = _L.empty
    for bad, message in reversed(checks):
        bad = F.coalesce(bad, F.lit(True))
        envelope_bad = envelope_bad | bad
        envelope_error = F.when(bad, _error(F.lit(""), message)).otherwise(envelope_error)
    envelope_bad = c.stage(3, envelope_bad)

    # The record: RecordValidator.errors, paths under `data`.
    is_object = c.stage(3, record_map.isNotNull())
    record = c.object(
        schema.fields, schema.additional_fields, record_map, F.lit("data"), 3, top=True
    )
    got = F.when(data.isNull(), "null").otherwise(json_type(data))
    not_object = _error(F.lit("data"), F.concat(F.lit("record must be a JSON object, got "), got))
    valid = F.coalesce(~envelope_bad & is_object & record.valid, _L.false)
    errors = (
        F.when(valid, F.lit(None).cast(ERRORS))
        .when(envelope_bad, envelope_error)
        .when(is_object, record.errors)
        .otherwise(not_object)
    )
    undecided = python | (~envelope_bad & is_object & record.undecided)
    last = len(c.levels)
    c.stage(last, valid.alias(VALID))
    c.stage(last, errors)
    c.stage(last, undecided)
    names = list(c.levels[last])
    c.levels[last] = {
        VALID: c.levels[last][names[0]],
        ERRORS_COLUMN: c.levels[last][names[1]],
        "_rule_undecided": c.levels[last][names[2]],
    }
    worded = F.coalesce(F.exists(ERRORS_COLUMN, lambda e: e["message"].isNull()), _L.false)
    c.levels[last][ENVELOPE_TEXTS] = env
    c.levels[last][DATA_TEXTS] = record_map
    helpers = [n for level in c.levels[:-1] for n in level]
    for level in c.levels:
        df = df.withColumns(level)
    df = df.withColumn(PYTHON, F.col("_rule_undecided") | worded)
    return df.drop(*helpers, "_rule_undecided")


def text_value(t: Column, kind: str) -> Column:
    """A valid value's text as the Spark type `from_json` would read it as (`string`,
    `bigint`, `double`, `boolean`)."""
    match kind:
        case "string":
            return content(t)
        case "boolean":
            return t == "true"
    return t.cast(kind)
