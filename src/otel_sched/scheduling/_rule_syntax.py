r"""Priority rules, the language: a small language that puts every span and log record in a priority class.

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

This module is the language (:func:`parse_rules`, :class:`Rule`, :func:`format_rules`);
:mod:`._priority_rules` compiles rules into the per-item matcher.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry.trace import SpanKind, StatusCode

from ._task import PriorityClass

__all__ = [
    "DEFAULT_RULES",
    "Condition",
    "Rule",
    "RuleSyntaxError",
    "format_rules",
    "parse_rules",
]

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
