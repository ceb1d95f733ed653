"""Evaluating expressions: arithmetic, comparisons and names, within archgen's integer limits
(E202, E300, E302, E303). Nothing is ever evaluated as Python."""

from __future__ import annotations

import math
from typing import Any

from .. import symbolic
from .. import syntax as ast
from ..diagnostics import did_you_mean
from ..layers.base import describe
from ..limits import MAX_INT
from .common import (
    _CONSTANTS,
    _UNKNOWN,
    _EvalError,
    _is_int,
    _Scope,
    _text,
    _Unknown,
    _Value,
    _Word,
)


class Evaluator:
    # -- expressions ---------------------------------------------------------------------------
    def eval(self, e: ast.Expr, scope: _Scope) -> _Value | None:
        """Evaluate an expression; None after reporting an error, or silently when it uses a
        value unknown after an earlier error (in_channels after an unknown layer)."""
        try:
            return _Value(self._eval(e, scope), e.span)
        except _EvalError as err:
            self.error(err.code, err.message, err.span, helps=err.helps)
            return None
        except _Unknown:
            return None

    def _eval(self, e: ast.Expr, scope: _Scope) -> Any:
        try:
            value = self._eval_any(e, scope)
        except (OverflowError, ZeroDivisionError):  # float // and % of extreme operands
            raise _EvalError("E302", f"{_text(e)} is not a finite number", e.span) from None
        if isinstance(value, float) and not math.isfinite(value):
            raise _EvalError("E302", f"{_text(e)} is not a finite number", e.span)
        if _is_int(value) and not -MAX_INT - 1 <= value <= MAX_INT:
            raise _EvalError("E303", f"{_text(e)} is larger than 2**63 - 1 = {MAX_INT:,}, "
                             f"the largest integer archgen computes with", e.span,
                             ["sizes, counts and strides are far smaller; check the "
                              "arithmetic"])
        return value

    def _eval_any(self, e: ast.Expr, scope: _Scope) -> Any:
        self._visit(e.span)  # every value computed is a step of the bounded expansion
        if isinstance(e, ast.Num):
            return e.value
        if isinstance(e, ast.Str):
            return e.value
        if isinstance(e, ast.Word):
            if e.name in scope.env:
                if scope.env[e.name] is _UNKNOWN:  # an earlier error already said why
                    raise _Unknown
                return scope.env[e.name]
            if e.name in _CONSTANTS:
                return _CONSTANTS[e.name]
            word = _Word(e.name)
            word.span, word.names = e.span, list(scope.env)
            return word
        if isinstance(e, ast.TupleExpr):
            return tuple(self._eval(i, scope) for i in e.items)
        if isinstance(e, ast.FuncCall):
            return self._function(e, scope)
        if isinstance(e, ast.UnaryOp):
            v = self._eval(e.operand, scope)
            if e.op == "not":
                return not self._truth(v, e.operand, scope)
            self._need_number(v, e.operand, scope)
            return -v if e.op == "-" else v
        if isinstance(e, ast.BinOp):
            left = self._eval(e.left, scope)
            if e.op in ("and", "or"):
                lv = self._truth(left, e.left, scope)
                if (e.op == "and") != lv:
                    return lv
                return self._truth(self._eval(e.right, scope), e.right, scope)
            right = self._eval(e.right, scope)
            if e.op in ("==", "!="):
                return (left == right) == (e.op == "==")
            self._need_number(left, e.left, scope)
            self._need_number(right, e.right, scope)
            if e.op in ("<", "<=", ">", ">="):
                return {"<": left < right, "<=": left <= right, ">": left > right,
                        ">=": left >= right}[e.op]
            if e.op in ("//", "%") and right == 0:
                raise _EvalError("E302", f"division by zero in {_text(e)}", e.span)
            if e.op == "/":
                if right == 0:
                    raise _EvalError("E302", "division by zero", e.span)
                if _is_int(left) and _is_int(right):  # exact: never through a float
                    if left % right:
                        raise _EvalError(
                            "E302", f"{left} / {right} is not a whole number", e.span,
                            [f"use // for integer division ({left} // {right} = "
                             f"{left // right})"])
                    return left // right
                return left / right
            return {"+": lambda: left + right, "-": lambda: left - right,
                    "*": lambda: left * right, "//": lambda: left // right,
                    "%": lambda: left % right}[e.op]()
        raise AssertionError(type(e))

    def _function(self, e: ast.FuncCall, scope: _Scope) -> Any:
        """max(a, b, ...) and min(...) of numbers, as Python's (`_make_divisible`)."""
        if e.func not in _FUNCTIONS:
            hint = did_you_mean(e.func, list(_FUNCTIONS))
            raise _EvalError("E209", f"unknown function '{e.func}' in an expression",
                             e.func_span or e.span,
                             [hint or "the functions in expressions are max() and min()"])
        if len(e.items) < 2:
            raise _EvalError("E300", f"{e.func}() needs at least two values, received "
                             f"{len(e.items)}", e.span,
                             [f"write {e.func}(a, b), e.g. {e.func}(8, channels // 4)"])
        values = [self._eval(i, scope) for i in e.items]
        for v, i in zip(values, e.items):
            if isinstance(v, bool) or isinstance(v, (str, tuple, type(None))) and \
                    not isinstance(v, _Word):
                raise _EvalError("E300", f"{e.func}() compares numbers, received "
                                 f"{describe(v)}", i.span)
            self._need_number(v, i, scope)
        return _FUNCTIONS[e.func](values)

    def _need_number(self, v: Any, e: ast.Expr, scope: _Scope) -> None:
        if isinstance(v, symbolic.Sym):
            raise symbolic.SymbolicBranch(f"{_text(e)} is the symbolic size {v}; arithmetic "
                                          f"on it in a spec is not followed")
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            if isinstance(v, _Word):
                raise self._undefined(v, e, scope)
            raise _EvalError("E300", f"arithmetic needs numbers, received {describe(v)}", e.span)

    def _truth(self, v: Any, e: ast.Expr, scope: _Scope) -> bool:
        if isinstance(v, _Word):
            raise self._undefined(v, e, scope)
        if not isinstance(v, bool):
            raise _EvalError("E300", f"a condition must be true or false, received "
                             f"{describe(v)}", e.span,
                             ["compare explicitly, e.g. if stride == 1:"])
        return v

    def _undefined(self, word: str, e: ast.Expr, scope: _Scope) -> _EvalError:
        hint = did_you_mean(word, scope.env)
        return _EvalError("E202", f"'{word}' is not defined", e.span,
                          [hint or f"the names defined here are: "
                                   f"{', '.join(sorted(scope.env)) or 'none'}"])

    def _peek(self, e: ast.Expr, scope: _Scope) -> Any:
        """An expression's value without reporting anything (None when it has an error)."""
        try:
            return self._eval(e, scope)
        except (_EvalError, _Unknown):
            return None


_FUNCTIONS = {"max": max, "min": min}  # the functions an expression may call
