"""Safe catalogue filters: a whitelisted Python-like boolean expression, evaluated with pandas.

Only column names, literals (str, int, float, bool, None, and lists/tuples/sets of them),
comparisons (`== != < <= > >=`, chained), `in` / `not in`, and `and` / `or` / `not` are
accepted. The expression is parsed with `ast` and walked node by node into vectorised pandas
operations; user text never reaches `eval`, `DataFrame.query` or `DataFrame.eval`.

Missing values follow Python's rules: `==`, `<`, `in` ... are False on a missing cell, while
`!=` and `not in` are True (so `usage != "Casual"` keeps the rows without a usage).
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd

from headwater.errors import InputError

MAX_LENGTH = 10_000

_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}
_MIRROR: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Eq: ast.Eq,
    ast.NotEq: ast.NotEq,
    ast.Lt: ast.Gt,
    ast.LtE: ast.GtE,
    ast.Gt: ast.Lt,
    ast.GtE: ast.LtE,
}
_REFUSED: dict[type[ast.AST], str] = {
    ast.Call: "function calls",
    ast.Attribute: "attribute access",
    ast.Subscript: "subscripts",
    ast.Lambda: "lambdas",
    ast.NamedExpr: "assignments",
    ast.ListComp: "comprehensions",
    ast.SetComp: "comprehensions",
    ast.DictComp: "comprehensions",
    ast.GeneratorExp: "comprehensions",
    ast.IfExp: "conditional expressions",
    ast.BinOp: "arithmetic",
    ast.JoinedStr: "f-strings",
    ast.Starred: "starred expressions",
    ast.Await: "await",
    ast.Yield: "yield",
    ast.Dict: "dicts",
}


def _where(node: ast.AST, text: str) -> str:
    col = getattr(node, "col_offset", None)
    return f" at column {col + 1}" if col is not None else ""


class _Compiler:
    """Turns a validated AST into a boolean pandas Series over `frame`."""

    def __init__(self, frame: pd.DataFrame, text: str, columns: Sequence[str]) -> None:
        self.frame = frame
        self.text = text
        self.columns = list(columns)

    def fail(self, problem: str, node: ast.AST | None = None) -> InputError:
        where = _where(node, self.text) if node is not None else ""
        return InputError(
            f"filter {self.text!r}: {problem}{where}; columns: {', '.join(self.columns)}"
        )

    # ---- literals and columns ------------------------------------------------------------
    def literal(self, node: ast.AST) -> Any:
        if isinstance(node, ast.Constant) and (
            node.value is None or isinstance(node.value, str | int | float | bool)
        ):
            return node.value
        if (
            isinstance(node, ast.UnaryOp)
            and isinstance(node.op, ast.USub | ast.UAdd)
            and isinstance(node.operand, ast.Constant)
            and isinstance(node.operand.value, int | float)
            and not isinstance(node.operand.value, bool)
        ):
            return -node.operand.value if isinstance(node.op, ast.USub) else node.operand.value
        raise self.refuse(node)

    def refuse(self, node: ast.AST) -> InputError:
        for kind, what in _REFUSED.items():
            if isinstance(node, kind):
                return self.fail(f"{what} are not allowed", node)
        if isinstance(node, ast.Constant):
            return self.fail(f"literal {node.value!r} is not allowed", node)
        return self.fail(f"{type(node).__name__} is not allowed", node)

    def column(self, node: ast.Name) -> pd.Series:
        if node.id not in self.columns:
            raise self.fail(f"unknown column {node.id!r}", node)
        return self.frame[node.id]

    def operand(self, node: ast.AST) -> tuple[str, Any]:
        """('column', Series) or ('literal', value) or ('list', [values])."""
        if isinstance(node, ast.Name):
            return "column", self.column(node)
        if isinstance(node, ast.List | ast.Tuple | ast.Set):
            return "list", [self.literal(e) for e in node.elts]
        return "literal", self.literal(node)

    # ---- type checks ---------------------------------------------------------------------
    @staticmethod
    def _kind(series: pd.Series) -> str:
        dtype = series.dtype
        if pd.api.types.is_bool_dtype(dtype):
            return "boolean"
        if pd.api.types.is_numeric_dtype(dtype):
            return "number"
        return "text"

    def check_types(self, series: pd.Series, name: str, value: Any, node: ast.AST) -> None:
        if value is None:
            return
        kind = self._kind(series)
        ok = (
            (kind == "number" and isinstance(value, int | float) and not isinstance(value, bool))
            or (kind == "text" and isinstance(value, str))
            or (kind == "boolean" and isinstance(value, bool))
        )
        if not ok:
            raise self.fail(
                f"column {name!r} holds {kind} values, cannot compare with {value!r}", node
            )

    # ---- nodes ---------------------------------------------------------------------------
    def mask(self, node: ast.AST) -> pd.Series:
        if isinstance(node, ast.Expression):
            return self.mask(node.body)
        if isinstance(node, ast.BoolOp):
            parts = [self.mask(v) for v in node.values]
            out = parts[0]
            for part in parts[1:]:
                out = (out & part) if isinstance(node.op, ast.And) else (out | part)
            return out
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return ~self.mask(node.operand)
        if isinstance(node, ast.Compare):
            left = node.left
            chained: pd.Series | None = None
            for op, right in zip(node.ops, node.comparators, strict=True):
                part = self.compare(left, op, right)
                chained = part if chained is None else (chained & part)
                left = right
            assert chained is not None
            return chained
        if isinstance(node, ast.Name):
            series = self.column(node)
            if self._kind(series) != "boolean":
                raise self.fail(
                    f"column {node.id!r} is not boolean; compare it, e.g. {node.id} == ...", node
                )
            return self._bool(series.fillna(False))
        if isinstance(node, ast.Constant) and isinstance(node.value, bool):
            return pd.Series(node.value, index=self.frame.index, dtype=bool)
        raise self.refuse(node)

    @staticmethod
    def _bool(values: Any, fill: bool = False) -> pd.Series:
        series = values if isinstance(values, pd.Series) else pd.Series(values)
        return series.fillna(fill).astype(bool)

    def compare(self, left: ast.AST, op: ast.cmpop, right: ast.AST) -> pd.Series:
        lkind, lval = self.operand(left)
        rkind, rval = self.operand(right)
        if isinstance(op, ast.In | ast.NotIn):
            if lkind != "column" or rkind != "list":
                raise self.fail(
                    "`in` needs a column on the left and a list of literals on the right", left
                )
            for value in rval:
                self.check_types(lval, left.id, value, right)  # type: ignore[attr-defined]
            present = [v for v in rval if v is not None]
            hit = self._bool(lval.isin(present)) | (lval.isna() if None in rval else False)
            return ~hit if isinstance(op, ast.NotIn) else hit
        if isinstance(op, ast.Is | ast.IsNot):
            raise self.fail("`is` is not allowed; use == or !=", left)
        if lkind == "list" or rkind == "list":
            raise self.fail("a list can only follow `in` / `not in`", right)
        if lkind != "column" and rkind != "column":
            raise self.fail("a comparison needs at least one column", left)
        if lkind != "column":  # literal OP column -> column MIRROR(OP) literal
            lkind, lval, rkind, rval, left, right = rkind, rval, lkind, lval, right, left
            op = _MIRROR[type(op)]()
        not_equal = isinstance(op, ast.NotEq)
        if rkind == "literal":
            self.check_types(lval, left.id, rval, right)  # type: ignore[attr-defined]
            if rval is None:
                if isinstance(op, ast.Eq | ast.NotEq):
                    return lval.notna() if not_equal else lval.isna()
                raise self.fail("None can only be compared with == or !=", right)
        elif self._kind(lval) != self._kind(rval):
            raise self.fail(
                f"columns {left.id!r} and {right.id!r} hold different kinds of values",  # type: ignore[attr-defined]
                left,
            )
        try:
            result = _COMPARE[type(op)](lval, rval)
        except TypeError as exc:
            raise self.fail(f"cannot compare ({exc})", left) from None
        return self._bool(result, fill=not_equal)


def parse_filter(text: str, columns: Sequence[str]) -> ast.Expression:
    """Parse and validate `text` against `columns` (no data needed); raise InputError if bad."""
    if len(text) > MAX_LENGTH:
        raise InputError(f"filter is longer than {MAX_LENGTH} characters")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise InputError(
            f"filter {text!r}: syntax error at column {exc.offset or 0} ({exc.msg}); "
            f"columns: {', '.join(columns)}"
        ) from None
    empty = pd.DataFrame({c: pd.Series([], dtype=object) for c in columns})
    compiler = _Compiler(empty, text, columns)
    for node in ast.walk(tree):  # structural whitelist before any evaluation
        if isinstance(node, tuple(_REFUSED)):
            raise compiler.refuse(node)
        if isinstance(node, ast.Name) and node.id not in columns:
            raise compiler.fail(f"unknown column {node.id!r}", node)
    return tree


def filter_mask(
    frame: pd.DataFrame, text: str | None, columns: Sequence[str] | None = None
) -> pd.Series:
    """Boolean mask of the rows of `frame` that satisfy the filter (all rows for an empty filter).

    Args:
        frame: The catalogue.
        text: The filter expression, e.g. ``gender == "Women" and year >= 2012``.
        columns: The columns the expression may name (default: all of `frame`'s).

    Raises:
        InputError: syntax error, unknown column, a refused construct, or a type mismatch; the
            message names the columns that exist.
    """
    columns = list(columns if columns is not None else frame.columns)
    if text is None or not text.strip():
        return pd.Series(True, index=frame.index, dtype=bool)
    tree = parse_filter(text, columns)
    mask = _Compiler(frame, text, columns).mask(tree)
    if not isinstance(mask, pd.Series):  # a bare True/False
        mask = pd.Series(bool(mask), index=frame.index, dtype=bool)
    return mask.astype(bool)


def apply_filter(
    frame: pd.DataFrame, text: str | None, columns: Sequence[str] | None = None
) -> pd.DataFrame:
    """The rows of `frame` selected by the filter expression."""
    return frame[filter_mask(frame, text, columns).to_numpy()]
