r"""Priority rules: a small language that puts every span and log record in a priority class.

Rules are given in code (a list of :class:`Rule`, rule strings or callables) or in the
environment variable ``OTEL_PYTHON_SCHED_PRIORITY_RULES``. They are compiled once per signal
into a :class:`PriorityClassifier`, which the classify stage calls for every item on its
background thread: each condition becomes a closure over pre-parsed values, so nothing is
re-parsed and no regular expression runs per item.

Syntax::

  rules     := rule ((";" | newline) rule)*          blank rules ignored; "#" starts a comment to end of line
  rule      := condition ("&" condition)* "->" class
  class     := low | normal | high                   (case-insensitive)
  condition := "*"                                   (always true)
             | field "exists"
             | field op value
  field     := status | kind | name | severity | scope | event_name
             | attr.<key> | resource.<key>           (<key> may contain dots, e.g. attr.http.route)
  op        := "==" | "!=" | "in" | "not in" | ">=" | ">" | "<=" | "<"
  value     := bare word (no spaces, no , ; ( ) & characters) | "double-quoted string" (\" and \\ escapes)
             | "(" value ("," value)* ")"           (only with in / not in)

Examples::

    status == error -> high
    attr.http.route in ("/health", "/ready") -> low
    scope == opentelemetry.instrumentation.* & kind == server -> normal
    severity >= warn & resource.deployment.environment == prod -> high
    resource.service.name == "billing api" -> high     # quoted: the value has a space

Evaluation:

* Rules are tried in order and the first rule whose conditions all hold decides the class.
  User rules come first, then :data:`DEFAULT_RULES` (``status == error -> high;
  severity >= error -> high``) unless ``include_defaults=False``, then the ``default``
  class (normal unless configured).
* ``status``: span status code, ``unset``, ``ok`` or ``error`` (case-insensitive).
  ``kind``: span kind, ``internal``, ``server``, ``client``, ``producer`` or ``consumer``.
  ``name``: span name. These three are false for log records.
* ``severity``: log severity, a name ``trace``, ``debug``, ``info``, ``warn``, ``error``,
  ``fatal`` or a number 1..24; a log record without a severity number has severity 0.
  A name stands for its whole range of four numbers (``error`` is 17..20): ``==`` / ``in``
  match any number in the range and ``!=`` / ``not in`` any number outside it; ``>= error``
  and ``< error`` compare with the lowest number of the range (17), ``> error`` and
  ``<= error`` with the highest (20). ``event_name``: the log record's event name (an empty
  one counts as missing). These two are false for spans.
* ``scope``: instrumentation scope name. A value ending in ``*`` matches by prefix, e.g.
  ``scope == opentelemetry.instrumentation.*`` (quoted or not; ``*`` alone matches any scope).
* ``attr.<key>`` is the span's or log record's attribute, ``resource.<key>`` the resource's.
  ``==``, ``!=``, ``in`` and ``not in`` compare the attribute's text form with the given
  strings: ``str(value)``, except that booleans read ``true`` / ``false``, so
  ``attr.http.status_code == 500`` matches both the int 500 and the string "500".
  ``>=``, ``>``, ``<=`` and ``<`` compare numbers: the rule value must be a number, and the
  condition is false unless the attribute is an int or float (not a bool) or a string that
  parses as a number.
* A missing value never matches: for a missing attribute, a missing scope or event name every
  operator is false, ``!=`` and ``not in`` included, and ``exists`` is false.
* ``>=``, ``>``, ``<=`` and ``<`` are only allowed on ``severity``, ``attr.<key>`` and
  ``resource.<key>``; on any other field they are a syntax error.
* Operator keywords (``in``, ``not in``, ``exists``) and class names are case-insensitive; field
  names are not. A bare word also ends before ``->``, and ``#`` outside quotes always starts a
  comment, so quote values that contain ``->``, ``#``, ``"``, spaces, ``,``, ``;``, ``(``, ``)``
  or ``&``. A quoted string cannot span lines.
* A callable rule receives the item (a ``ReadableSpan`` or a log record) and returns a class,
  its name or its integer value, or ``None`` to defer to the following rules.
* Evaluation never raises: a rule that raises, or a callable that returns something that is
  not a class, counts as no match and increments :attr:`PriorityClassifier.errors`.
* Rules that can never match a signal (``kind`` for logs, ``severity`` for spans, ...) are
  dropped when compiling for that signal, and rules after one that always matches are dropped.
"""

from __future__ import annotations

import logging
import operator
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, TypeAlias

from opentelemetry.trace import SpanKind, Status, StatusCode

from otel_sched.scheduling._task import PriorityClass, Signal

from .._sdk_fields import FAST_ATTRIBUTES, FAST_SPAN, FAST_SPANS

__all__ = [
    "DEFAULT_RULES",
    "Condition",
    "PriorityClassifier",
    "Rule",
    "RuleFunction",
    "RuleLike",
    "RuleSyntaxError",
    "compile_rules",
    "format_rules",
    "parse_rules",
]

_logger = logging.getLogger(__name__)

_STATUS = {code.name.lower(): code for code in StatusCode}
_KIND = {kind.name.lower(): kind for kind in SpanKind}
_SEVERITY = {"trace": 1, "debug": 5, "info": 9, "warn": 13, "error": 17, "fatal": 21}
_MAX_SEVERITY = 24

_LIST_OPS = ("in", "not in")
_EQ_OPS = ("==", "!=", *_LIST_OPS)
_ORDER_OPS = (">=", ">", "<=", "<")
_OPS = (*_EQ_OPS, *_ORDER_OPS, "exists")
_SYMBOL_OPS = ("==", "!=", ">=", "<=", ">", "<")  # two-character operators first
_FIELDS = ("status", "kind", "name", "severity", "scope", "event_name")
_KEYED = ("attr", "resource")
_SPAN_ONLY = frozenset({"status", "kind", "name"})
_LOG_ONLY = frozenset({"severity", "event_name"})
_UNORDERED = frozenset({"status", "kind", "name", "scope", "event_name"})

_OPS_TEXT = "one of ==, !=, in, not in, >=, >, <=, <, exists"
_FIELDS_TEXT = "one of status, kind, name, severity, scope, event_name, attr.<key>, resource.<key>"
_CLASSES_TEXT = "one of " + ", ".join(p.name.lower() for p in PriorityClass)

_FIELD_RE = re.compile(r'[^\s=!<>&,;()"#]+')
_BARE_RE = re.compile(r'(?:[^\s,;()&"\-]|-(?!>))+')
# Stricter than what the parser accepts, so that format_rules quotes anything doubtful.
_PLAIN_RE = re.compile(r'(?:[^\s,;()&"#\\\-]|-(?!>))+')
_WORD_RE = re.compile(r"[A-Za-z_]+")
_NOT_IN_RE = re.compile(r"\s+in\b", re.IGNORECASE)
_WS_RE = re.compile(r"\s*")
_TOKEN_RE = re.compile(r'->|[=!<>]+|[(),&;]|"[^"]*"?|[^\s,;()&"=!<>]+')


class RuleSyntaxError(ValueError):
    """A priority rule that does not parse (or names an unknown field, value or class).

    The message names the rule, its 1-based index among the non-blank rules of the text,
    the column and token where the problem is and what was expected there.
    """

    def __init__(self, problem: str, rule: str, index: int, column: int, token: str, expected: str) -> None:
        self.problem = problem
        self.rule = rule
        self.index = index
        self.column = column
        self.token = token
        self.expected = expected
        where = f"at {token!r}" if token else "at end of rule"
        super().__init__(
            f"priority rule {index} {rule!r}: {problem} (column {column}, {where}); expected {expected}"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # The default reduce would call __init__ with the message only.
        return (
            type(self),
            (self.problem, self.rule, self.index, self.column, self.token, self.expected),
        )


class _Problem(Exception):
    """An invalid condition; ``part`` (and ``index`` for values) says where to point."""

    def __init__(self, message: str, expected: str, part: str, index: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.expected = expected
        self.part = part
        self.index = index


def _split_field(field: str) -> tuple[str, str]:
    """Return (base, key): ``attr.http.route`` -> ("attr", "http.route"), ``kind`` -> ("kind", "")."""
    if field in _FIELDS:
        return field, ""
    base, dot, key = field.partition(".")
    if dot and base in _KEYED:
        if key:
            return base, key
        raise _Problem(
            f"field {field!r} has no attribute key", f"{base}.<key>, e.g. {base}.service.name", "field"
        )
    raise _Problem(f"unknown field {field!r}", _FIELDS_TEXT, "field")


def _severity_bounds(value: str) -> tuple[int, int]:
    """Severity numbers a value stands for: a name covers its range of four, a number itself."""
    low = _SEVERITY.get(value.lower())
    if low is not None:
        return low, low + 3
    if value.isascii() and value.isdigit() and 1 <= int(value) <= _MAX_SEVERITY:
        return int(value), int(value)
    raise _Problem(
        f"unknown severity {value!r}",
        f"one of {', '.join(_SEVERITY)} or a number 1..{_MAX_SEVERITY}",
        "value",
    )


def _normalise(field: str, op: str, values: tuple[str, ...]) -> tuple[str, ...]:
    """Validate one condition and return its values in canonical form."""
    if field == "*":
        if op != "*" or values:
            raise _Problem("'*' takes no operator or value", "'&' or '->' after '*'", "op")
        return ()
    base, _ = _split_field(field)
    if op not in _OPS:
        raise _Problem(f"unknown operator {op!r}", _OPS_TEXT, "op")
    if op == "exists":
        if values:
            raise _Problem("'exists' takes no value", "'&' or '->' after 'exists'", "value")
        return ()
    if op in _ORDER_OPS and base in _UNORDERED:
        raise _Problem(
            f"ordering operator {op!r} is not supported for field {field!r}",
            "one of ==, !=, in, not in, exists",
            "op",
        )
    if not values:
        what = "empty value list" if op in _LIST_OPS else f"{op!r} needs a value"
        raise _Problem(what, "at least one value", "value")
    if op not in _LIST_OPS and len(values) != 1:
        raise _Problem(
            f"{op!r} takes a single value", "a single value (lists need 'in' or 'not in')", "value", 1
        )
    out: list[str] = []
    for i, value in enumerate(values):
        if not isinstance(value, str):
            raise _Problem(f"value {value!r} is not a string", "a string", "value", i)
        if base == "status" or base == "kind":
            table: dict[str, Any] = _STATUS if base == "status" else _KIND
            if value.lower() not in table:
                raise _Problem(f"unknown {base} {value!r}", "one of " + ", ".join(table), "value", i)
            value = value.lower()
        elif base == "severity":
            try:
                _severity_bounds(value)
            except _Problem as exc:
                exc.index = i
                raise
            value = value.lower() if value.lower() in _SEVERITY else str(int(value))
        elif op in _ORDER_OPS:  # attr / resource
            try:
                float(value)
            except ValueError:
                raise _Problem(f"{value!r} is not a number", f"a number after {op!r}", "value", i) from None
        out.append(value)
    return tuple(out)


@dataclass(frozen=True)
class Condition:
    """One parsed condition: ``Condition("attr.http.route", "in", ("/a", "/b"))``.

    ``*`` is ``Condition("*", "*", ())`` and ``exists`` has no values. Status, kind and
    severity names are stored lowercase so equal conditions compare equal.
    """

    field: str
    op: str
    values: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.field, str) or not isinstance(self.op, str):
            raise TypeError(f"Condition field and op must be strings, got {self.field!r} and {self.op!r}")
        values = self.values
        if isinstance(values, str) or not isinstance(values, Sequence):
            raise TypeError(f"Condition values must be a tuple of strings, got {values!r}")
        try:
            normalised = _normalise(self.field, self.op, tuple(values))
        except _Problem as exc:
            raise ValueError(
                f"invalid condition {self.field} {self.op} {tuple(values)!r}: {exc.message}; "
                f"expected {exc.expected}"
            ) from None
        object.__setattr__(self, "values", normalised)

    def __str__(self) -> str:
        if self.field == "*":
            return "*"
        if _FIELD_RE.fullmatch(self.field) is None:
            raise ValueError(f"field {self.field!r} cannot be written in rule syntax")
        if self.op == "exists":
            return f"{self.field} exists"
        if self.op in _LIST_OPS:
            return f"{self.field} {self.op} ({', '.join(map(_format_value, self.values))})"
        return f"{self.field} {self.op} {_format_value(self.values[0])}"


@dataclass(frozen=True)
class Rule:
    """Conditions that must all hold for an item to get ``priority``."""

    conditions: tuple[Condition, ...]
    priority: PriorityClass

    def __post_init__(self) -> None:
        conditions = tuple(self.conditions)
        if not conditions:
            raise ValueError("a rule needs at least one condition; use '*' to match everything")
        for condition in conditions:
            if not isinstance(condition, Condition):
                raise TypeError(f"Rule conditions must be Condition objects, got {condition!r}")
        object.__setattr__(self, "conditions", conditions)
        object.__setattr__(self, "priority", PriorityClass.parse(self.priority))

    @classmethod
    def parse(cls, text: str) -> Rule:
        """Parse text holding exactly one rule (comments allowed)."""
        rules = parse_rules(text)
        if len(rules) != 1:
            pieces = list(_split(text))
            rule = pieces[1] if len(pieces) > 1 else text.strip()
            raise RuleSyntaxError(
                f"expected exactly one rule, found {len(rules)}",
                rule,
                min(len(rules) + 1, 2),
                1,
                _token_at(rule, 0),
                "a single rule (use parse_rules for several)",
            )
        return rules[0]

    def __str__(self) -> str:
        conditions = " & ".join(str(c) for c in self.conditions)
        return f"{conditions} -> {self.priority.name.lower()}"


def _format_value(value: str) -> str:
    if "\n" in value:
        raise ValueError(f"value {value!r} cannot be written in rule syntax: it contains a newline")
    if _PLAIN_RE.fullmatch(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def format_rules(rules: Sequence[Rule]) -> str:
    """Write rules back in the rule language; ``parse_rules`` of the result gives them back."""
    for rule in rules:
        if not isinstance(rule, Rule):
            raise TypeError(f"format_rules takes Rule objects, got {rule!r}")
    return "; ".join(str(rule) for rule in rules)


def _split(text: str) -> Iterator[str]:
    """Yield the text of each non-blank rule, comments removed.

    Quotes are tracked so that ``;`` and ``#`` inside a value don't split, but never across a
    line: an unterminated quote is then reported against its own rule instead of swallowing
    every rule after it.
    """
    for line in text.split("\n"):
        start = 0
        end = len(line)
        in_quote = False
        i = 0
        while i < end:
            ch = line[i]
            if in_quote:
                if ch == "\\":
                    i += 1
                elif ch == '"':
                    in_quote = False
            elif ch == '"':
                in_quote = True
            elif ch == ";":
                piece = line[start:i].strip()
                if piece:
                    yield piece
                start = i + 1
            elif ch == "#":
                end = i
            i += 1
        piece = line[start:end].strip()
        if piece:
            yield piece


def _token_at(text: str, pos: int) -> str:
    if pos >= len(text):
        return ""
    match = _TOKEN_RE.match(text, pos)
    token = match.group() if match else text[pos]
    return token if len(token) <= 40 else token[:37] + "..."


class _RuleParser:
    """Recursive descent over one rule's text; only runs at compile time."""

    def __init__(self, text: str, index: int) -> None:
        self.text = text
        self.index = index
        self.pos = 0

    def fail(self, problem: str, expected: str, pos: int | None = None) -> RuleSyntaxError:
        pos = self.pos if pos is None else pos
        return RuleSyntaxError(problem, self.text, self.index, pos + 1, _token_at(self.text, pos), expected)

    def skip(self) -> None:
        match = _WS_RE.match(self.text, self.pos)
        if match:
            self.pos = match.end()

    def at(self, literal: str) -> bool:
        return self.text.startswith(literal, self.pos)

    def rule(self) -> Rule:
        conditions = [self.condition()]
        while True:
            self.skip()
            if self.at("->"):
                self.pos += 2
                break
            if self.at("&"):
                self.pos += 1
                conditions.append(self.condition())
                continue
            raise self.fail("expected '&' or '->' after a condition", "'&' and a condition, or '-> <class>'")
        self.skip()
        start = self.pos
        word = self.text[start:].split(None, 1)[0] if start < len(self.text) else ""
        if word.upper() not in PriorityClass.__members__:
            problem = "unknown priority class" if word else "missing priority class after '->'"
            raise self.fail(problem, _CLASSES_TEXT, start)
        self.pos = start + len(word)
        self.skip()
        if self.pos < len(self.text):
            raise self.fail(
                "unexpected text after the priority class", "end of rule (separate rules with ';')"
            )
        return Rule(tuple(conditions), PriorityClass[word.upper()])

    def condition(self) -> Condition:
        self.skip()
        field_pos = self.pos
        if self.at("*"):
            self.pos += 1
            return Condition("*", "*", ())
        match = _FIELD_RE.match(self.text, self.pos)
        if match is None:
            raise self.fail("expected a condition", f"'*' or a field ({_FIELDS_TEXT})")
        field = match.group()
        try:
            _split_field(field)
        except _Problem as exc:
            raise self.fail(exc.message, exc.expected, field_pos) from None
        self.pos = match.end()
        self.skip()
        op_pos = self.pos
        op = self.operator()
        values: list[str] = []
        positions: list[int] = []
        self.skip()
        if op in _LIST_OPS:
            if not self.at("("):
                raise self.fail(f"{op!r} needs a parenthesised list of values", "'(' as in (a, b)")
            self.pos += 1
            self.skip()
            if self.at(")"):
                raise self.fail("empty value list", "at least one value")
            while True:
                self.skip()
                positions.append(self.pos)
                values.append(self.value())
                self.skip()
                if self.at(","):
                    self.pos += 1
                elif self.at(")"):
                    self.pos += 1
                    break
                else:
                    raise self.fail("unfinished value list", "',' and another value, or ')'")
        elif op != "exists":
            if self.at("("):
                raise self.fail(
                    f"a list of values is not allowed with {op!r}", "a single value (or use 'in')"
                )
            positions.append(self.pos)
            values.append(self.value())
        try:
            normalised = _normalise(field, op, tuple(values))
        except _Problem as exc:
            if exc.part == "field":
                pos = field_pos
            elif exc.part == "op":
                pos = op_pos
            else:
                pos = positions[exc.index] if exc.index < len(positions) else self.pos
            raise self.fail(exc.message, exc.expected, pos) from None
        return Condition(field, op, normalised)

    def operator(self) -> str:
        for symbol in _SYMBOL_OPS:
            if self.at(symbol):
                self.pos += len(symbol)
                return symbol
        match = _WORD_RE.match(self.text, self.pos)
        word = match.group().lower() if match else ""
        if match and word in ("in", "exists"):
            self.pos = match.end()
            return word
        if match and word == "not":
            after = _NOT_IN_RE.match(self.text, match.end())
            if after:
                self.pos = after.end()
                return "not in"
        raise self.fail("expected an operator", _OPS_TEXT)

    def value(self) -> str:
        if self.at('"'):
            return self.quoted()
        match = _BARE_RE.match(self.text, self.pos)
        if match is None:
            raise self.fail("expected a value", 'a word or a "quoted string"')
        self.pos = match.end()
        return match.group()

    def quoted(self) -> str:
        text = self.text
        start = self.pos
        chars: list[str] = []
        i = start + 1
        while i < len(text):
            ch = text[i]
            if ch == '"':
                self.pos = i + 1
                return "".join(chars)
            if ch == "\\" and i + 1 < len(text):
                escaped = text[i + 1]
                if escaped not in ('"', "\\"):
                    raise self.fail(f"unknown escape '\\{escaped}'", 'only \\" and \\\\ inside quotes', i)
                chars.append(escaped)
                i += 2
                continue
            chars.append(ch)
            i += 1
        raise self.fail("unterminated quoted string", "a closing '\"' on the same line", start)


def parse_rules(text: str) -> list[Rule]:
    """Parse rules separated by ``;`` or newlines; blank rules and comments are skipped."""
    if not isinstance(text, str):
        raise TypeError(f"priority rules must be a string, got {text!r}")
    return [_RuleParser(piece, index).rule() for index, piece in enumerate(_split(text), 1)]


DEFAULT_RULES: tuple[Rule, ...] = tuple(parse_rules("status == error -> high; severity >= error -> high"))

RuleFunction: TypeAlias = Callable[[Any], PriorityClass | int | str | None]
RuleLike: TypeAlias = Rule | str | RuleFunction

# --- compilation ---------------------------------------------------------------------------

_Predicate = Callable[[Any], bool]
_Matcher = Callable[[Any], "PriorityClass | None"]

_ORDER_FN: dict[str, Callable[[Any, Any], bool]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
}


def _always(item: Any) -> bool:
    return True


def _scope_name(item: Any) -> Any:
    scope = item.instrumentation_scope
    return None if scope is None else scope.name


def _event_name(item: Any) -> Any:
    return item.log_record.event_name or None


# The attribute getters below read the dict inside the SDK's BoundedAttributes: its ``get`` is
# Mapping.get, which raises and catches KeyError on every miss (several times slower), and
# ReadableSpan.attributes builds a new MappingProxyType on every access.


def _span_attributes(item: Any) -> Any:
    if item.__class__ is not FAST_SPAN:  # another span class, or an SDK whose fields moved
        return item.attributes
    attributes = item._attributes
    return attributes._dict if attributes.__class__ is FAST_ATTRIBUTES else attributes


def _log_attributes(item: Any) -> Any:
    attributes = item.log_record.attributes
    return attributes._dict if attributes.__class__ is FAST_ATTRIBUTES else attributes


def _resource_attributes(item: Any) -> Any:
    resource = item.resource
    if resource is None:
        return None
    attributes = resource.attributes
    return attributes._dict if attributes.__class__ is FAST_ATTRIBUTES else attributes


def _attr_text(value: Any) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    return str(value)


def _attr_number(value: Any) -> Any:
    """The attribute as a number, or None if it isn't one."""
    cls = value.__class__
    if cls is int or cls is float:
        return value
    if cls is str:
        try:
            return float(value)
        except ValueError:
            return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    return None


def _attr_predicate(
    get_attributes: Callable[[Any], Any], key: str, op: str, values: tuple[str, ...]
) -> _Predicate:
    if op == "exists":

        def exists(item: Any) -> bool:
            attributes = get_attributes(item)
            return bool(attributes) and key in attributes

        return exists

    if op in _ORDER_OPS:
        compare = _ORDER_FN[op]
        threshold = float(values[0])

        def ordered(item: Any) -> bool:
            attributes = get_attributes(item)
            if not attributes:
                return False
            value = attributes.get(key)
            if value is None:
                return False
            number = _attr_number(value)
            return number is not None and compare(number, threshold)

        return ordered

    targets = frozenset(values)
    if op in ("==", "in"):

        def member(item: Any) -> bool:
            attributes = get_attributes(item)
            if not attributes:
                return False
            value = attributes.get(key)
            if value is None:
                return False
            if value.__class__ is not str:
                value = _attr_text(value)
            return value in targets

        return member

    def not_member(item: Any) -> bool:
        attributes = get_attributes(item)
        if not attributes:
            return False
        value = attributes.get(key)
        if value is None:
            return False
        if value.__class__ is not str:
            value = _attr_text(value)
        return value not in targets

    return not_member


def _enum_predicate(get: Callable[[Any], Any], op: str, members: tuple[Any, ...]) -> _Predicate:
    # Tuples, not sets: Enum.__hash__ is Python code while identity checks in a tuple are not.
    if op == "exists":
        return _always
    if op in ("==", "in"):
        return lambda item: get(item) in members
    return lambda item: get(item) not in members


def _severity_predicate(op: str, values: tuple[str, ...]) -> _Predicate:
    if op == "exists":
        return lambda item: item.log_record.severity_number is not None
    bounds = [_severity_bounds(v) for v in values]
    if op in _ORDER_OPS:
        compare = _ORDER_FN[op]
        low, high = bounds[0]
        threshold = low if op in (">=", "<") else high

        def ordered(item: Any) -> bool:
            number = item.log_record.severity_number
            # ``_value_`` is a plain attribute; ``.value`` goes through a descriptor.
            return compare(0 if number is None else number._value_, threshold)

        return ordered

    numbers = frozenset(n for low, high in bounds for n in range(low, high + 1))
    negate = op in ("!=", "not in")

    def member(item: Any) -> bool:
        number = item.log_record.severity_number
        return ((0 if number is None else number._value_) in numbers) is not negate

    return member


def _text_predicate(
    get: Callable[[Any], Any], op: str, values: tuple[str, ...], prefixes: bool
) -> _Predicate:
    if op == "exists":
        return lambda item: get(item) is not None
    exact = frozenset(v for v in values if not (prefixes and v.endswith("*")))
    starts = tuple(v[:-1] for v in values if prefixes and v.endswith("*"))
    positive = op in ("==", "in")
    if not starts:
        if positive:
            return lambda item: get(item) in exact
        return lambda item: (value := get(item)) is not None and value not in exact

    def matches(item: Any) -> bool:
        value = get(item)
        if value is None:
            return False
        return (value in exact or value.startswith(starts)) is positive

    return matches


_status_code_of = attrgetter("status.status_code")


def _span_status_code(item: Any) -> Any:
    # ReadableSpan.status and Status.status_code are properties returning a field: for the exact
    # SDK classes (the usual case) the fields are read directly, as the encoder does.
    if item.__class__ in FAST_SPANS:
        status = item._status
        if status.__class__ is Status:
            return status._status_code
    return _status_code_of(item)


def _compile_condition(condition: Condition, signal: Signal) -> _Predicate | None:
    """A predicate for the condition, or None if it can never hold for ``signal``."""
    field, op, values = condition.field, condition.op, condition.values
    if field == "*":
        return _always
    base, key = _split_field(field)
    if (signal is Signal.LOGS and base in _SPAN_ONLY) or (signal is Signal.TRACES and base in _LOG_ONLY):
        return None
    if base == "attr":
        getter = _span_attributes if signal is Signal.TRACES else _log_attributes
        return _attr_predicate(getter, key, op, values)
    if base == "resource":
        return _attr_predicate(_resource_attributes, key, op, values)
    if base == "status":
        return _enum_predicate(_span_status_code, op, tuple(_STATUS[v] for v in values))
    if base == "kind":
        return _enum_predicate(attrgetter("kind"), op, tuple(_KIND[v] for v in values))
    if base == "severity":
        return _severity_predicate(op, values)
    if base == "name":
        return _text_predicate(attrgetter("name"), op, values, prefixes=False)
    if base == "event_name":
        return _text_predicate(_event_name, op, values, prefixes=False)
    return _text_predicate(_scope_name, op, values, prefixes=True)


def _compile_rule(rule: Rule, signal: Signal) -> tuple[_Matcher, bool] | None:
    """(matcher, always matches) for the rule, or None if it can never match ``signal``."""
    predicates: list[_Predicate] = []
    for condition in rule.conditions:
        predicate = _compile_condition(condition, signal)
        if predicate is None:
            return None
        if predicate is not _always:
            predicates.append(predicate)
    priority = rule.priority
    if not predicates:
        return (lambda item: priority), True
    if len(predicates) == 1:
        (first,) = predicates
        return (lambda item: priority if first(item) else None), False
    if len(predicates) == 2:
        first, second = predicates
        return (lambda item: priority if first(item) and second(item) else None), False
    chain = tuple(predicates)

    def match_all(item: Any) -> PriorityClass | None:
        for predicate in chain:
            if not predicate(item):
                return None
        return priority

    return match_all, False


def _wrap_callable(function: RuleFunction) -> _Matcher:
    def call(item: Any) -> PriorityClass | None:
        result = function(item)
        if result is None or result.__class__ is PriorityClass:
            return result
        # Raises ValueError for "urgent", 7, True, ...: counted as an error by the classifier.
        return PriorityClass.parse(result)

    return call


class PriorityClassifier:
    """Compiled rules for one signal: ``classifier(item)`` returns the item's class.

    ``errors`` counts evaluations that raised (or callables that returned a non-class); they
    are treated as no match. The increment is not atomic, which is fine for a statistic.
    """

    __slots__ = ("_matchers", "default", "errors", "rules", "signal")

    def __init__(
        self,
        rules: tuple[RuleLike, ...],
        matchers: tuple[_Matcher, ...],
        default: PriorityClass,
        signal: Signal,
    ) -> None:
        self.rules = rules
        self._matchers = matchers
        self.default = default
        self.signal = signal
        self.errors = 0

    def __call__(self, item: Any) -> PriorityClass:
        for match in self._matchers:
            try:
                priority = match(item)
            except Exception:  # noqa: BLE001 - a rule may raise anything: counted, logged once by _raised
                self._raised()
                continue
            if priority is not None:
                return priority
        return self.default

    def _raised(self) -> None:
        """Count a rule that raised (called from its ``except``); logs the first one only."""
        self.errors += 1
        if self.errors == 1:
            # Once only: a broken rule would otherwise log for every item.
            _logger.warning(
                "a priority rule raised; treating it as no match (counted in errors)", exc_info=True
            )

    @property
    def status_rule_only(self) -> bool:
        """For spans, the default rules alone: HIGH for an ERROR status, else NORMAL (what a
        compiled classifier may hard-code)."""
        return (
            self.signal is Signal.TRACES
            and self.default is PriorityClass.NORMAL
            and self.rules == DEFAULT_RULES[:1]
        )

    def function(self) -> Callable[[Any], int]:
        """The classifier as a plain function returning an int, specialised to the rule count.

        Same results and error counting as calling the classifier; the scheduler calls it once
        per item, so the loop and the ``__call__`` dispatch are left out where they can be.
        """
        default = int(self.default)
        matchers = self._matchers
        if not matchers:
            return lambda item: default
        if len(matchers) > 1:
            call = self.__call__
            return lambda item: int(call(item))
        (match,) = matchers

        def classify_one(item: Any) -> int:
            try:
                priority = match(item)
            except Exception:  # noqa: BLE001 - as in __call__
                self._raised()
                return default
            return default if priority is None else int(priority)

        return classify_one

    def __repr__(self) -> str:
        return (
            f"PriorityClassifier(signal={self.signal.value!r}, rules={len(self.rules)}, "
            f"default={self.default.name.lower()}, errors={self.errors})"
        )


def compile_rules(
    rules: Sequence[RuleLike] | str | None,
    signal: str,
    *,
    default: PriorityClass = PriorityClass.NORMAL,
    include_defaults: bool = True,
) -> PriorityClassifier:
    """Compile user rules, then DEFAULT_RULES (if ``include_defaults``), then ``default``.

    ``signal`` is ``"traces"`` or ``"logs"``. String entries may hold several rules.
    """
    try:
        sig = Signal(signal)
    except ValueError:
        raise ValueError(f"signal must be 'traces' or 'logs', got {signal!r}") from None
    default = PriorityClass.parse(default)

    entries: list[Rule | RuleFunction] = []
    if rules is None:
        pass
    elif isinstance(rules, str):
        entries.extend(parse_rules(rules))
    elif isinstance(rules, Sequence) and not isinstance(rules, (bytes, bytearray, memoryview)):
        for i, entry in enumerate(rules):
            if isinstance(entry, Rule):
                entries.append(entry)
            elif isinstance(entry, str):
                entries.extend(parse_rules(entry))
            elif callable(entry):
                entries.append(entry)
            else:
                raise TypeError(
                    f"priority_rules[{i}] must be a Rule, a rule string or a callable(item) returning a "
                    f"priority class or None; got {entry!r} ({type(entry).__name__})"
                )
    else:
        # Sets and other unordered iterables are refused too: first match wins, so order matters.
        raise TypeError(
            "priority_rules must be a rule string, a list or tuple of rules (Rule, rule string or "
            f"callable) or None; got {rules!r} ({type(rules).__name__})"
        )
    if include_defaults:
        entries.extend(DEFAULT_RULES)

    effective: list[RuleLike] = []
    matchers: list[_Matcher] = []
    for entry in entries:
        if isinstance(entry, Rule):
            compiled = _compile_rule(entry, sig)
            if compiled is None:
                continue
            matcher, always = compiled
        else:
            matcher, always = _wrap_callable(entry), False
        effective.append(entry)
        matchers.append(matcher)
        if always:
            break  # nothing after it can be reached
    return PriorityClassifier(tuple(effective), tuple(matchers), default, sig)
