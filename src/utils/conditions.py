"""A safe evaluator for declarative trigger conditions.

    churn_probability >= 0.6 and network.latency_ms > 70
    billing.bill_shock or ('billing' in interests and sentiment.score < 0)

The text is parsed by Python's own parser (``ast.parse``, never ``eval``) and
only a whitelist of node kinds is accepted: ``and``/``or``/``not``,
comparisons (``< <= > >= == != in``, ``not in``), dotted names, numbers,
strings, booleans, ``None`` and lists. Anything else (calls, arithmetic,
subscripts, lambdas ...) is rejected at load time with its column, so a bad
condition fails when the config loads, not in the middle of a run.

Size is bounded too (length, nesting depth, number of parts): a config file is
input, and CPython's parser and the recursive checks below run out of memory or
stack on hostile nesting such as thousands of ``not``.

Time, when the caller allows it (``allow_time=True``, the flows' customer
filters): ``now()`` is the clock the caller passes to ``evaluate``, and
``interval 'N days'`` (seconds, minutes, hours, days or weeks, SQL style) is a
duration that can be added to or taken from ``now()`` or a date field::

    customer.renewal_date <= now() + interval '30 days'

A date or ISO text compared with a time is read as that instant (a bare date is
midnight in the clock's zone). Nothing else is callable.
"""

from __future__ import annotations

import ast
import io
import operator
import re
import tokenize
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any

_COMPARE: dict[type[ast.cmpop], tuple[str, Callable[[Any, Any], bool]]] = {
    ast.Lt: ("<", operator.lt),
    ast.LtE: ("<=", operator.le),
    ast.Gt: (">", operator.gt),
    ast.GtE: (">=", operator.ge),
    ast.Eq: ("==", operator.eq),
    ast.NotEq: ("!=", operator.ne),
    ast.In: ("in", lambda a, b: a in b),
    ast.NotIn: ("not in", lambda a, b: a not in b),
}


MAX_LENGTH = 4000
"""Characters in one condition: room for a list of a few hundred keywords."""
MAX_DEPTH = 40
"""Levels of syntax-tree nesting; a readable condition needs about ten."""
MAX_NODES = 1000
"""Syntax-tree nodes (names, numbers, operators ...) in one condition."""


class ConditionError(ValueError):
    """A condition that cannot be parsed; ``column`` is 1-based."""

    def __init__(self, message: str, column: int):
        super().__init__(f"{message} at column {column}")
        self.column = column


@dataclass(frozen=True)
class Outcome:
    """Whether the condition held, and the comparisons that made it hold, in words."""

    matched: bool
    because: tuple[str, ...]
    fields: tuple[str, ...] = ()
    """The fields read by the comparisons that made it hold."""


_LITERALS: dict[str, Any] = {"True": True, "False": False, "None": None, "true": True, "false": False, "none": None}


_INTERVAL_TEXT = re.compile(r"""('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")|\binterval\s*('[^']*'|"[^"]*")""")
_INTERVAL_VALUE = re.compile(r"^\s*(\d{1,6}(?:\.\d+)?)\s*(second|minute|hour|day|week)s?\s*$", re.IGNORECASE)
_TIME_FUNCTIONS = ("now", "interval")
MAX_INTERVAL = timedelta(days=36_525)
"""A century: longer intervals are refused (``now() + interval '999999 weeks'`` is past year 9999, a crash, not a date)."""


def _call_interval(text: str) -> str:
    """``interval '30 days'`` (SQL) -> ``interval('30 days')``, which Python parses; strings elsewhere are kept."""
    return _INTERVAL_TEXT.sub(lambda m: m.group(0) if m.group(1) else f"interval({m.group(2)})", text)


def parse_interval(text: str) -> timedelta:
    """``'30 days'`` -> 30 days; seconds, minutes, hours, days and weeks (months and years have no fixed length)."""
    m = _INTERVAL_VALUE.match(text)
    if m is None:
        raise ValueError(f"interval {text!r}: write a number and a unit, e.g. interval '30 days' (seconds, minutes, hours, days, weeks)")
    span = timedelta(**{f"{m.group(2).lower()}s": float(m.group(1))})
    if span > MAX_INTERVAL:
        raise ValueError(f"interval {text!r} is longer than {MAX_INTERVAL.days:,} days (a century); use a shorter one")
    return span


def _time_call(node: ast.AST) -> str | None:
    """``now`` or ``interval`` when ``node`` is a call of one of them, else None."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _TIME_FUNCTIONS:
        return node.func.id
    return None


def _as_instant(value: Any, zone: Any) -> Any:
    """A date or ISO text as an aware datetime (a date is midnight in ``zone``); anything else unchanged."""
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=zone)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=zone)
    if isinstance(value, str):
        try:
            return _as_instant(datetime.fromisoformat(value.strip()), zone)
        except ValueError:
            return value
    return value


def _is_none_literal(node: ast.AST) -> bool:
    return (isinstance(node, ast.Constant) and node.value is None) or (isinstance(node, ast.Name) and node.id in ("None", "none"))


def _signed_number(node: ast.AST) -> float | None:
    """``-0.3`` parses as minus applied to 0.3: accept it as the number it is."""
    if not (isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)) and isinstance(node.operand, ast.Constant)):
        return None
    value = node.operand.value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return -value if isinstance(node.op, ast.USub) else value


def _fields(node: ast.AST) -> list[str]:
    """The dotted names a condition reads (``network.latency_ms``, not ``network`` too)."""
    if isinstance(node, (ast.Name, ast.Attribute)):
        path = _path(node)
        return [path] if path and path not in _LITERALS else []
    if _time_call(node):
        return []
    return [name for child in ast.iter_child_nodes(node) for name in _fields(child)]


def _path(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _path(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


def _check(node: ast.AST, known: frozenset[str] | None, allow_time: bool = False) -> None:
    if allow_time and _check_time(node, known):
        return
    if isinstance(node, ast.BoolOp):
        for value in node.values:
            _check(value, known, allow_time)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        _check(node.operand, known, allow_time)
    elif _signed_number(node) is not None:
        pass
    elif isinstance(node, ast.Compare):
        for op in node.ops:
            if type(op) not in _COMPARE:
                raise ConditionError(f"operator {type(op).__name__} is not allowed", node.col_offset + 1)
        for part in (node.left, *node.comparators):
            _check(part, known, allow_time)
    elif isinstance(node, (ast.Name, ast.Attribute)):
        path = _path(node)
        if path is None:
            raise ConditionError("only dotted names like network.latency_ms are allowed", node.col_offset + 1)
        if known is not None and path not in known and path not in _LITERALS:
            raise ConditionError(f"unknown field {path!r}", node.col_offset + 1)
    elif isinstance(node, ast.Constant):
        if not isinstance(node.value, (int, float, str, bool, type(None))):
            raise ConditionError("only numbers, strings, true/false and None are allowed", node.col_offset + 1)
    elif isinstance(node, (ast.List, ast.Tuple)):
        for element in node.elts:
            _check(element, known, allow_time)
    else:
        column = getattr(node, "col_offset", 0) + 1
        raise ConditionError(f"{type(node).__name__} is not allowed in a condition", column)


def _check_time(node: ast.AST, known: frozenset[str] | None) -> bool:
    """True when ``node`` is a valid time expression (``now()``, ``interval '..'``, ``a + b``/``a - b``); raises when it is a bad one."""
    column = getattr(node, "col_offset", 0) + 1
    kind = _time_call(node)
    if kind is not None:
        assert isinstance(node, ast.Call)
        if node.keywords or (kind == "now" and node.args):
            raise ConditionError("now() takes no arguments", column)
        if kind == "interval":
            arg = node.args[0] if len(node.args) == 1 else None
            if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
                raise ConditionError("interval takes one quoted duration, e.g. interval '30 days'", column)
            try:
                parse_interval(arg.value)
            except ValueError as exc:
                raise ConditionError(str(exc), column) from None
        return True
    if isinstance(node, ast.BinOp):
        if not isinstance(node.op, (ast.Add, ast.Sub)):
            raise ConditionError(f"{type(node.op).__name__} is not allowed in a condition (only + or - of an interval)", column)
        if not any(_time_call(side) == "interval" for side in (node.left, node.right)):
            raise ConditionError("arithmetic is only allowed with an interval, e.g. now() + interval '30 days'", column)
        for side in (node.left, node.right):
            _check(side, known, True)
        return True
    return False


def _too_deep(column: int) -> ConditionError:
    return ConditionError(f"expression too deep (more than {MAX_DEPTH} levels of nesting)", column)


def _has_deep_not_run(text: str) -> bool:
    """True when more than ``MAX_DEPTH`` ``not`` follow each other (parentheses between them allowed): each nests in the last.

    Counted on tokens, before parsing, because CPython's parser itself runs out of
    memory on a long enough run; tokens keep words inside strings out of the count.
    """
    run = 0
    try:
        for token in tokenize.generate_tokens(io.StringIO(text).readline):
            if token.type == tokenize.NAME and token.string == "not":
                run += 1
                if run > MAX_DEPTH:
                    return True
            elif token.string != "(":
                run = 0
    except (tokenize.TokenError, SyntaxError):
        pass  # the parser reports the syntax error with its column
    return False


def _parse(text: str, allow_time: bool = False) -> ast.expr:
    """``text`` parsed as one expression, refused when too deep, too long or too big for the checks that follow.

    Depth is checked first so that the hostile case (thousands of ``not``) is named for what it is.
    """
    if _has_deep_not_run(text):
        raise _too_deep(1)
    if len(text) > MAX_LENGTH:
        raise ConditionError(f"the condition is too long ({len(text)} characters, at most {MAX_LENGTH})", MAX_LENGTH + 1)
    try:
        tree = ast.parse(_call_interval(text) if allow_time else text, mode="eval")
    except SyntaxError as exc:
        if "too many nested" in exc.msg:
            raise _too_deep(exc.offset or 1) from None
        raise ConditionError(f"syntax error ({exc.msg})", exc.offset or 1) from None
    except (MemoryError, RecursionError):
        raise _too_deep(1) from None
    _check_size(tree.body)
    return tree.body


def _check_size(root: ast.expr) -> None:
    """Depth and node count, walked without recursion so a deep tree cannot exhaust the stack here."""
    pending: list[tuple[ast.AST, int]] = [(root, 1)]
    seen = 0
    while pending:
        node, depth = pending.pop()
        seen += 1
        if depth > MAX_DEPTH:
            raise _too_deep(getattr(node, "col_offset", 0) + 1)
        if seen > MAX_NODES:
            raise ConditionError(f"expression too large (more than {MAX_NODES} parts)", 1)
        pending.extend((child, depth + 1) for child in ast.iter_child_nodes(node))


class Condition:
    """A parsed, checked condition, ready to evaluate against a namespace of features."""

    def __init__(self, text: str, known_fields: frozenset[str] | None = None, *, allow_time: bool = False):
        """``allow_time``: accept ``now()`` and ``interval '..'`` (then ``evaluate`` needs ``now``)."""
        self.text = text.strip()
        if not self.text:
            raise ConditionError("the condition is empty", 1)
        body = _parse(self.text, allow_time)
        _check(body, known_fields, allow_time)
        self._body = body
        self.fields = frozenset(_fields(body))
        self.reads_clock = any(_time_call(n) == "now" for n in ast.walk(body))

    def evaluate(self, namespace: Mapping[str, Any], *, now: datetime | None = None) -> Outcome:
        """Evaluate against ``namespace``; a missing value fails a comparison, except an explicit ``== None``/``!= None``.

        ``now`` (aware) is what ``now()`` returns; a condition that reads it needs it.
        """
        if self.reads_clock and (now is None or now.tzinfo is None):
            raise ValueError(f"the condition {self.text!r} reads now(): evaluate it with now= an aware datetime")
        used: list[str] = []
        matched, because = _Evaluation(now).eval(self._body, namespace, used)
        return Outcome(bool(matched), tuple(because), tuple(dict.fromkeys(used))) if matched else Outcome(False, ())


class _Evaluation:
    """One evaluation of a condition at one clock (thread-safe: nothing is stored on the condition)."""

    def __init__(self, now: datetime | None):
        self._now = now
        self._zone = now.tzinfo if now is not None else timezone.utc

    def _time_value(self, node: ast.expr, ns: Mapping[str, Any]) -> Any:
        kind = _time_call(node)
        if kind == "now":
            return self._now
        if kind == "interval":
            return parse_interval(node.args[0].value)  # type: ignore[attr-defined]
        assert isinstance(node, ast.BinOp)
        left = _as_instant(self._value(node.left, ns), self._zone)
        right = _as_instant(self._value(node.right, ns), self._zone)
        if left is None or right is None:
            return None
        try:
            return left + right if isinstance(node.op, ast.Add) else left - right
        except (TypeError, OverflowError):  # not times, or past year 1/9999 (a date field near the end): no value
            return None

    def _value(self, node: ast.expr, ns: Mapping[str, Any]) -> Any:
        if _time_call(node) or isinstance(node, ast.BinOp):
            return self._time_value(node, ns)
        if isinstance(node, ast.Constant):
            return node.value
        if (number := _signed_number(node)) is not None:
            return number
        if isinstance(node, (ast.List, ast.Tuple)):
            return [self._value(e, ns) for e in node.elts]
        path = _path(node)
        if path in _LITERALS:
            return _LITERALS[path]
        value: Any = ns
        for part in (path or "").split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
        return value

    def eval(self, node: ast.expr, ns: Mapping[str, Any], used: list[str]) -> tuple[bool, list[str]]:
        if isinstance(node, ast.BoolOp):
            reasons: list[str] = []
            if isinstance(node.op, ast.And):
                for value in node.values:
                    ok, why = self.eval(value, ns, used)
                    if not ok:
                        return False, []
                    reasons += why
                return True, reasons
            for value in node.values:
                mark = len(used)
                ok, why = self.eval(value, ns, used)
                if ok:
                    return True, why
                del used[mark:]
            return False, []
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            ok, _ = self.eval(node.operand, ns, [])
            used.extend(_fields(node.operand))
            return (not ok), ([f"not ({ast.unparse(node.operand)})"] if not ok else [])
        if isinstance(node, ast.Compare):
            left = self._value(node.left, ns)
            left_node = node.left
            pieces = []
            for op, right_node in zip(node.ops, node.comparators, strict=True):
                right = self._value(right_node, ns)
                if isinstance(left, datetime) or isinstance(right, datetime):
                    left, right = _as_instant(left, self._zone), _as_instant(right, self._zone)
                symbol, fn = _COMPARE[type(op)]
                try:
                    if left is None or right is None:
                        # A missing value fails every comparison, except an explicit ``== None`` / ``!= None``.
                        explicit = _is_none_literal(left_node) or _is_none_literal(right_node)
                        held = explicit and isinstance(op, (ast.Eq, ast.NotEq)) and ((left is right) == isinstance(op, ast.Eq))
                    else:
                        held = fn(left, right)
                except TypeError:
                    held = False
                if not held:
                    return False, []
                label = f"{_path(left_node)} " if _path(left_node) and _path(left_node) not in _LITERALS else ""
                pieces.append(f"{label}{_show(left)} {symbol} {_show(right)}")
                used.extend(_fields(left_node) + _fields(right_node))
                left, left_node = right, right_node
            return True, pieces
        value = self._value(node, ns)
        used.extend(_fields(node))
        return bool(value), ([f"{ast.unparse(node)} is true"] if value else [])


def _show(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple, set, frozenset)):
        return "[" + ", ".join(map(str, value)) + "]"
    return repr(value) if isinstance(value, str) else str(value)
