"""Symbolic input sizes: `input [3, H, W]`.

A size is an integer or a `Sym`, an integer expression over the symbols built from `+ - *`,
floor division by a positive integer, `max` and `min`. The layers' shape rules are ordinary
arithmetic, so they compute with a `Sym` as with an int. Where a rule needs a size to pass a
test to go on (a conv needs an output of at least one pixel, add needs equal branches), it asks
`holds(condition)`: on integers that is the test itself; on symbols the condition is recorded as
a requirement on the sizes and checking goes on as if it held. Any other decision on a symbolic
size (`bool()` of a comparison) raises `SymbolicBranch`, which the checker reports (E414): a
rule can never take a branch silently that is right for some sizes only.

So the valid sizes are exactly those that meet every recorded requirement, and the shapes are
the expressions computed, for every valid size: a concrete check at a size n follows the same
path as the symbolic one as long as every requirement holds at n, and fails at the first one
that does not (the rule that asked raises its error there). `solve` turns the requirements into
the valid set of each symbol.

Why the valid set of one symbol is `n >= min (and n <= max), n % modulus in residues`: every
size is built from n by n -> floor((n + a) / s) + b, n -> k * n (integer scale), n -> floor(n *
p / q) (rational scale), sums and max/min of such terms, and floor(floor(x) / p) / q) =
floor(x / (p * q)). Let M be a common multiple of every divisor on the way (`period`). For n = r
+ M * t with r fixed, each floor term is an exact affine function of t, so each requirement
`g(n) >= 0` or `g(n) == 0` is, per residue r, a condition on an affine function alpha * t +
beta of t: all t, no t, t >= t0, t <= t0 or t == t0. (A max/min of two terms growing at the
same rate is one of them for all t of a residue; `period` refuses max/min of different rates.)
Per residue the valid t form an interval; the lower bounds come from sizes that must be
positive or large enough, which grow with n, so they agree across residues and give `min`; an
upper bound (different rates that must be equal: 2 * n == n + 4) gives a finite set, and `max`.
`solve` computes the per-residue intervals from two exact evaluations per residue (t = 0 and 1)
and checks the affine form at two more (t = 2, 3) before it trusts them; requirements of higher
degree in one symbol (flatten -> linear of an [3, S, S] input: S * S) or coupling two symbols
are solved by enumeration over a bounded range instead, and say so.
"""

from __future__ import annotations

import functools
import math
from contextlib import contextmanager
from typing import Any

# -- expressions ----------------------------------------------------------------------------
# A polynomial: {monomial: coefficient}; a monomial is a sorted tuple of atoms (with repeats);
# an atom is ("var", name) | ("div", poly, k) | ("max", poly, poly) | ("min", poly, poly),
# polys inside atoms frozen as sorted tuples of (monomial, coefficient).


class SymbolicBranch(Exception):
    """A rule took a decision that depends on a symbolic size other than a requirement."""


def _freeze(poly: dict) -> tuple:
    return tuple(sorted(poly.items(), key=lambda mc: _mono_key(mc[0])))


def _atom_key(atom) -> str:
    return _atom_text(atom)


def _mono_key(mono: tuple) -> tuple:
    return (-len(mono), tuple(_atom_key(a) for a in mono))


def _padd(a: dict, b: dict, sign: int = 1) -> dict:
    out = dict(a)
    for m, c in b.items():
        v = out.get(m, 0) + sign * c
        if v:
            out[m] = v
        else:
            out.pop(m, None)
    return out


def _pmul(a: dict, b: dict) -> dict:
    out: dict = {}
    for ma, ca in a.items():
        for mb, cb in b.items():
            m = tuple(sorted(ma + mb, key=_atom_key))
            v = out.get(m, 0) + ca * cb
            if v:
                out[m] = v
            else:
                out.pop(m, None)
    return out


def _const(poly: dict) -> int | None:
    if not poly:
        return 0
    if len(poly) == 1 and () in poly:
        return poly[()]
    return None


def _pfloordiv(p: dict, k: int) -> dict:
    """floor(p / k) for a positive integer k, simplified: whole multiples of k come out of the
    floor, and floor((floor(x / q) + c) / k) = floor((x + c * q) / (k * q))."""
    if k == 1:
        return dict(p)
    q_part = {m: c // k for m, c in p.items() if c // k}
    rest = {m: c % k for m, c in p.items() if c % k}
    if not rest:
        return q_part
    c0 = _const(rest)
    if c0 is not None:
        return q_part  # 0 <= c0 < k: floor(c0 / k) = 0
    g = k
    for c in rest.values():
        g = math.gcd(g, c)
    if g > 1:
        rest = {m: c // g for m, c in rest.items()}
        k //= g
        if k == 1:
            return _padd(q_part, rest)
    terms = [m for m in rest if m != ()]
    if len(terms) == 1 and len(terms[0]) == 1 and rest[terms[0]] == 1 \
            and terms[0][0][0] == "div":
        _, inner, q = terms[0][0]
        inner = dict(inner)
        inner = _padd(inner, {(): rest.get((), 0) * q})
        return _padd(q_part, _pfloordiv(inner, k * q))
    atom = ("div", _freeze(rest), k)
    _bounded(atom)
    return _padd(q_part, {(atom,): 1})


def _pextreme(kind: str, a: dict, b: dict) -> dict:
    ca, cb = _const(a), _const(b)
    if ca is not None and cb is not None:
        return {(): (max if kind == "max" else min)(ca, cb)} if (max if kind == "max" else
                                                                 min)(ca, cb) else {}
    d = _const(_padd(a, b, -1))
    if d is not None:  # a - b is a constant: the larger is known
        return dict(a) if (d >= 0) == (kind == "max") else dict(b)
    fa, fb = sorted((_freeze(a), _freeze(b)), key=lambda f: _poly_text(dict(f)))
    atom = (kind, fa, fb)
    _bounded(atom)
    return {(atom,): 1}


MAX_DEPTH = 48  # floors within floors: every stage of archgen recurses through them
MAX_NODES = 4096  # terms in one expression written out (a min shares its operands: 2**n)
_MEMO: dict[int, tuple] = {}  # id(atom) -> (atom, depth, nodes): each atom measured once


def _measure(atom) -> tuple[int, int]:
    """(depth, nodes) of an atom written out as a tree, in time linear in the new atoms:
    atoms are shared (a min holds its operands, which the next layer holds again), so a tree
    walk, a hash or a text of them can grow as 2**layers; these bounds keep all three small."""
    hit = _MEMO.get(id(atom))
    if hit is not None and hit[0] is atom:
        return hit[1], hit[2]
    depth, nodes = 0, 1
    if atom[0] != "var":
        for poly in ([atom[1]] if atom[0] == "div" else [atom[1], atom[2]]):
            for mono, _ in poly:
                nodes += 1
                for a in mono:
                    d, n = _measure(a)
                    depth, nodes = max(depth, d + 1), nodes + n
    if len(_MEMO) > 100_000:
        _MEMO.clear()
    _MEMO[id(atom)] = (atom, depth, nodes)
    return depth, nodes


def _bounded(atom) -> None:
    depth, nodes = _measure(atom)
    if depth > MAX_DEPTH or nodes > MAX_NODES:
        raise SymbolicBranch(f"the sizes' expressions grow beyond {MAX_DEPTH} nested floor "
                             f"divisions or {MAX_NODES} terms (strided layers and upsampling "
                             f"in turn keep them apart)")


@functools.lru_cache(maxsize=65536)
def _atom_text(atom) -> str:
    if atom[0] == "var":
        return atom[1]
    if atom[0] == "div":
        inner = dict(atom[1])
        text = _poly_text(inner)
        simple = len(inner) == 1 and list(inner.values())[0] == 1 and len(list(inner)[0]) == 1
        return f"{text if simple else '(' + text + ')'} // {atom[2]}"
    return f"{atom[0]}({_poly_text(dict(atom[1]))}, {_poly_text(dict(atom[2]))})"


def _mono_text(mono: tuple, coefficient: bool = False) -> str:
    """Atoms multiplied; a floor division is parenthesised when anything multiplies it
    (`2 * (H // 2)`, not `2 * H // 2`, which Python reads as `(2 * H) // 2`)."""
    parts = []
    for a in mono:
        t = _atom_text(a)
        parts.append(f"({t})" if a[0] == "div" and (len(mono) > 1 or coefficient) else t)
    return " * ".join(parts)


def _poly_text(poly: dict) -> str:
    if not poly:
        return "0"
    out = ""
    for mono, c in sorted(poly.items(), key=lambda mc: _mono_key(mc[0])):
        if mono == ():
            body = str(abs(c))
        else:
            body = _mono_text(mono, abs(c) != 1)
            if abs(c) != 1:
                body = f"{abs(c)} * {body}"
        if not out:
            out = body if c > 0 else f"-{body}"
        else:
            out += f" + {body}" if c > 0 else f" - {body}"
    return out


def _peval(poly, env: dict) -> int:
    items = poly.items() if isinstance(poly, dict) else poly
    total = 0
    for mono, c in items:
        v = c
        for a in mono:
            v *= _aeval(a, env)
        total += v
    return total


def _aeval(atom, env: dict) -> int:
    if atom[0] == "var":
        return env[atom[1]]
    if atom[0] == "div":
        return _peval(atom[1], env) // atom[2]
    x, y = _peval(atom[1], env), _peval(atom[2], env)
    return max(x, y) if atom[0] == "max" else min(x, y)


def _lift(v) -> dict:
    if isinstance(v, Sym):
        return v.poly
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError(f"a symbolic size combines only with integers, not {v!r}")
    return {(): v} if v else {}


def _make(poly: dict):
    c = _const(poly)
    return c if c is not None else Sym(poly)


class Sym:
    """An integer expression over symbolic sizes. Arithmetic with ints gives a Sym, or an int
    where the symbols cancel; comparisons give a `Cond`."""

    __slots__ = ("poly", "_text")

    def __init__(self, poly: dict):
        self.poly = poly
        self._text = None

    @staticmethod
    def var(name: str) -> Sym:
        return Sym({(("var", name),): 1})

    def __add__(self, o):
        return _make(_padd(self.poly, _lift(o))) if _num(o) else NotImplemented

    __radd__ = __add__

    def __sub__(self, o):
        return _make(_padd(self.poly, _lift(o), -1)) if _num(o) else NotImplemented

    def __rsub__(self, o):
        return _make(_padd(_lift(o), self.poly, -1)) if _num(o) else NotImplemented

    def __neg__(self):
        return _make(_padd({}, self.poly, -1))

    def __mul__(self, o):
        return _make(_pmul(self.poly, _lift(o))) if _num(o) else NotImplemented

    __rmul__ = __mul__

    def __floordiv__(self, o):
        if isinstance(o, bool) or not isinstance(o, int) or o <= 0:
            raise SymbolicBranch(f"{self} // {o}: a symbolic size divides only by a positive "
                                 f"integer")
        return _make(_pfloordiv(self.poly, o))

    def __mod__(self, o):
        return self - (self // o) * o

    def __rfloordiv__(self, o):
        raise SymbolicBranch(f"{o} // ({self}): division by a symbolic size")

    def __truediv__(self, o):
        raise SymbolicBranch(f"({self}) / {o}: a fraction of a symbolic size")

    __rtruediv__ = __truediv__

    def __index__(self):
        raise SymbolicBranch(f"{self} is used as a count")

    def __int__(self):
        raise SymbolicBranch(f"{self} is used as a number")

    __float__ = __int__

    def __bool__(self):
        raise SymbolicBranch(f"{self} is tested for zero")

    # comparisons: a Cond (g >= 0 or g == 0)
    def __ge__(self, o):
        return _cond(_padd(self.poly, _lift(o), -1), ">=")

    def __gt__(self, o):
        return _cond(_padd(_padd(self.poly, _lift(o), -1), {(): -1}), ">=")

    def __le__(self, o):
        return _cond(_padd(_lift(o), self.poly, -1), ">=")

    def __lt__(self, o):
        return _cond(_padd(_padd(_lift(o), self.poly, -1), {(): -1}), ">=")

    def __eq__(self, o):
        if not _num(o):
            return NotImplemented
        return _cond(_padd(self.poly, _lift(o), -1), "==")

    def __ne__(self, o):
        if not _num(o):
            return NotImplemented
        return _cond(_padd(self.poly, _lift(o), -1), "!=")

    def __hash__(self):
        return hash(str(self))

    def __str__(self):
        if self._text is None:
            self._text = _poly_text(self.poly)
        return self._text

    __repr__ = __str__
    __format__ = lambda self, spec: format(str(self), spec.replace(",", ""))  # noqa: E731

    def symbols(self) -> set[str]:
        return _symbols(self.poly)

    def eval(self, env: dict) -> int:
        return _peval(self.poly, env)


def _num(o) -> bool:
    return isinstance(o, Sym) or (isinstance(o, int) and not isinstance(o, bool))


def _symbols(poly) -> set[str]:
    out: set[str] = set()
    items = poly.items() if isinstance(poly, dict) else poly
    for mono, _ in items:
        for a in mono:
            if a[0] == "var":
                out.add(a[1])
            elif a[0] == "div":
                out |= _symbols(a[1])
            else:
                out |= _symbols(a[1]) | _symbols(a[2])
    return out


class Cond:
    """`poly >= 0`, `poly == 0` or `poly != 0` over the symbols. bool() of one is a decision
    on a symbolic size: allowed only where the answer is the same for every size."""

    __slots__ = ("poly", "op")

    def __init__(self, poly: dict, op: str):
        self.poly, self.op = poly, op

    def __bool__(self):
        raise SymbolicBranch(f"the rule asks whether {self}")

    def negate(self) -> Cond:
        if self.op == "==":
            return Cond(self.poly, "!=")
        if self.op == "!=":
            return Cond(self.poly, "==")
        return Cond(_padd(_padd({}, self.poly, -1), {(): -1}), ">=")

    def __str__(self):
        return f"{_poly_text(self.poly)} {self.op} 0"

    def test(self, env: dict) -> bool:
        v = _peval(self.poly, env)
        return v >= 0 if self.op == ">=" else (v == 0 if self.op == "==" else v != 0)

    def symbols(self) -> set[str]:
        return _symbols(self.poly)


def _cond(poly: dict, op: str):
    c = _const(poly)
    if c is not None:
        return c >= 0 if op == ">=" else (c == 0 if op == "==" else c != 0)
    return Cond(poly, op)


def is_symbolic(v: Any) -> bool:
    if isinstance(v, tuple):
        return any(isinstance(i, Sym) for i in v)
    return isinstance(v, Sym)


def at_least(a, b) -> bool:
    """a >= b for every valid size, as far as the expressions show it: a - b has no negative
    coefficient (its terms are products of sizes and floors of sizes, all >= 0)."""
    d = a - b
    if isinstance(d, int):
        return d >= 0
    return all(c >= 0 for c in d.poly.values())


def smax_all(values: list):
    """The largest of sizes that may be symbolic, without the ones another one bounds."""
    if not any(isinstance(v, Sym) for v in values):
        return max(values)
    kept: list = []
    for v in values:
        if any(at_least(k, v) for k in kept):
            continue
        kept = [k for k in kept if not at_least(v, k)] + [v]
    out = kept[0]
    try:
        for v in kept[1:]:
            out = smax(out, v)
    except SymbolicBranch:  # too large to write out: unknown rather than wrong
        return None
    return out


def smax(a, b):
    """max() of sizes that may be symbolic (the builtin would have to decide a comparison)."""
    if isinstance(a, Sym) or isinstance(b, Sym):
        return _make(_pextreme("max", _lift(a), _lift(b)))
    return max(a, b)


def smin(a, b):
    if isinstance(a, Sym) or isinstance(b, Sym):
        return _make(_pextreme("min", _lift(a), _lift(b)))
    return min(a, b)


def scale(size, factor: float):
    """floor(size * factor), exactly as PyTorch's float product for the sizes a map has: an
    integer factor multiplies, another one is the nearest fraction p/q with q <= 1000 that
    equals it in floating point (floor(n * p / q) = floor(n * factor) for every n < 2**24)."""
    if not isinstance(size, Sym):
        out = size * factor
        return math.floor(out) if math.isfinite(out) else -1
    if float(factor).is_integer():
        return size * int(factor)
    from fractions import Fraction  # only here: check's start-up does without it
    frac = Fraction(factor).limit_denominator(1000)
    if float(frac) != factor:
        raise SymbolicBranch(f"scale_factor {factor} is not a simple fraction")
    return (size * frac.numerator) // frac.denominator


# -- requirements ---------------------------------------------------------------------------

class _Recorder:
    def __init__(self):
        self.requirements: list[tuple[Cond, Any, str]] = []  # (condition, span, what)
        self.site: tuple[Any, str] = (None, "")


_ACTIVE: list[_Recorder] = []


@contextmanager
def recording():
    rec = _Recorder()
    _ACTIVE.append(rec)
    try:
        yield rec
    finally:
        _ACTIVE.remove(rec)


def at(span, what: str) -> None:
    """Where the requirements recorded next come from (the layer or merge being checked)."""
    if _ACTIVE:
        _ACTIVE[-1].site = (span, what)


def holds(cond) -> bool:
    """A test a size must pass for checking to go on. Integers: the test. Symbols: recorded as
    a requirement, and assumed to hold."""
    if not isinstance(cond, Cond):
        return bool(cond)
    if not _ACTIVE:
        raise SymbolicBranch(f"the rule needs {cond}")
    rec = _ACTIVE[-1]
    rec.requirements.append((cond, *rec.site))
    return True


# -- solving --------------------------------------------------------------------------------

MAX_PERIOD = 4096  # residues tried per symbol; 12 halvings in a row reach it
ENUMERATE = 512  # sizes tried per symbol where a requirement is not affine per residue


def period(poly) -> int:
    """A period M of every floor/max/min term: for n = r + M * t each term is affine in t (of
    one degree higher than its argument for products)."""
    m = 1
    items = poly.items() if isinstance(poly, dict) else poly
    for mono, _ in items:
        for a in mono:
            if a[0] == "div":
                m = math.lcm(m, period(a[1]) * a[2])
            elif a[0] in ("max", "min"):
                m = math.lcm(m, period(a[1]), period(a[2]))
            if m > MAX_PERIOD:
                raise SymbolicBranch("the sizes' period is beyond archgen's limit")
    return m


def degree(poly, name: str) -> int:
    best = 0
    items = poly.items() if isinstance(poly, dict) else poly
    for mono, _ in items:
        d = 0
        for a in mono:
            if a[0] == "var":
                d += a[1] == name
            elif a[0] == "div":
                d += degree(a[1], name)
            else:
                d += max(degree(a[1], name), degree(a[2], name))
        best = max(best, d)
    return best


def _extremes_same_rate(poly) -> bool:
    items = poly.items() if isinstance(poly, dict) else poly
    for mono, _ in items:
        for a in mono:
            if a[0] == "div" and not _extremes_same_rate(a[1]):
                return False
            if a[0] in ("max", "min"):
                diff = _padd(dict(a[1]), dict(a[2]), -1)
                if any(m != () and any(at[0] == "var" for at in m) for m in diff) or \
                        not _extremes_same_rate(a[1]) or not _extremes_same_rate(a[2]):
                    return False
    return True


class Constraint:
    """The sizes n of one symbol that are valid: min <= n (<= max), n % modulus in residues."""

    def __init__(self, lo: int, hi: int | None, modulus: int, residues: list[int]):
        self.min, self.max, self.modulus, self.residues = lo, hi, modulus, sorted(residues)

    def admits(self, n: int) -> bool:
        return n >= self.min and (self.max is None or n <= self.max) and \
            n % self.modulus in self.residues

    def to_json(self) -> dict:
        return {"min": self.min, "max": self.max, "modulus": self.modulus,
                "residues": self.residues}

    def values(self, limit: int = 4) -> list[int]:
        """The first `limit` valid sizes."""
        out, n = [], self.min
        while len(out) < limit and (self.max is None or n <= self.max) \
                and n < self.min + self.modulus * (limit + 1):
            if self.admits(n):
                out.append(n)
            n += 1
        return out

    def first(self, r: int, m: int, start: int | None = None) -> int | None:
        """The smallest valid size n >= start (default: min) with n % m == r, if any; from
        max when start lies beyond it."""
        lo = self.min if start is None else max(self.min, start)
        if self.max is not None and lo > self.max:
            lo = self.min
        step = math.lcm(m, self.modulus)
        n = lo + (r - lo) % m
        while n < lo + step and (self.max is None or n <= self.max):
            if self.admits(n):
                return n
            n += m
        return None

    def sample(self) -> int:
        """A representative valid size: the first from 32 on (a size real inputs have), or the
        smallest when the sizes are bounded."""
        if self.max is not None:
            return self.min
        start = max(self.min, 32)
        return next(n for n in range(start, start + self.modulus) if self.admits(n))

    def text(self, name: str) -> str:
        if self.max is not None and self.max == self.min:
            return f"{name} == {self.min}"
        rng = f"{self.min} <= {name} <= {self.max}" if self.max is not None else \
            f"{name} >= {self.min}"
        if self.modulus == 1:
            return rng
        if len(self.residues) == 1:
            return f"{rng} with {name} % {self.modulus} == {self.residues[0]}"
        return f"{rng} with {name} % {self.modulus} in {{{', '.join(map(str, self.residues))}}}"


def _describe_set(valid: list[int], tail_from: int | None, modulus: int) -> Constraint | None:
    """A Constraint equal to a set given as its members below `tail_from` (`valid`) and, when
    tail_from is set, periodic with `modulus` from tail_from on; None if the form cannot say it.
    """
    if not valid:
        return None
    lo = valid[0]
    if tail_from is None:  # finite: the smallest modulus that describes it
        hi = valid[-1]
        span = hi - lo + 1  # always works: every size in [lo, hi] has its own residue
        for m in range(1, min(span, 4096) + 1):
            res = {v % m for v in valid}
            # the sizes in [lo, hi] with those residues include `valid`: equal iff as many
            if sum((hi - r) // m - (lo - 1 - r) // m for r in res) == len(valid):
                return Constraint(lo, hi, m, sorted(res))
        return Constraint(lo, hi, span, sorted({v % span for v in valid}))
    res = {v % modulus for v in valid if v >= tail_from}
    vs = set(valid)
    if all((n in vs) == (n % modulus in res) for n in range(lo, tail_from)):
        c = Constraint(lo, None, modulus, sorted(res))
        return _shrink(c)
    return None


def _shrink(c: Constraint) -> Constraint:
    """The same set with the smallest modulus (H % 8 in {0} rather than H % 16 in {0, 8})."""
    m = c.modulus
    for d in sorted(d for d in range(1, m + 1) if m % d == 0):
        res = {r % d for r in c.residues}
        if all((r % d in res) == (r in c.residues) for r in range(m)):
            return Constraint(c.min, c.max, d, sorted(res))
    return c


def residue_text(name: str, m: int, chosen: list[int], valid: list[int]) -> str:
    """"when H % 2 == 1": the sizes among the valid residues `valid` modulo m that are in
    `chosen`, with the smallest modulus that says it."""
    if set(chosen) >= set(valid):
        return f"for every valid {name}"
    for d in sorted(d for d in range(1, m + 1) if m % d == 0):
        picked = {r % d for r in chosen}
        if all((r % d in picked) == (r in chosen) for r in valid):
            if len(picked) == 1:
                return f"when {name} % {d} == {next(iter(picked))}"
            return f"when {name} % {d} in {{{', '.join(map(str, sorted(picked)))}}}"
    return f"when {name} % {m} in {{{', '.join(map(str, chosen))}}}"


class Unsatisfiable(Exception):
    def __init__(self, message: str, span, what: str):
        super().__init__(message)
        self.message, self.span, self.what = message, span, what


def solve(symbols: list[str], requirements: list[tuple[Cond, Any, str]],
          fixed_guess: dict | None = None) -> dict[str, Constraint]:
    """The valid set of each symbol (see the module's docstring). Raises Unsatisfiable, naming
    the requirement that leaves no size, or SymbolicBranch when the sizes cannot be stated per
    symbol (a requirement that couples two symbols and has no product-form solution)."""
    seen: set[str] = set()
    per: dict[str, list] = {s: [] for s in symbols}
    coupled = []
    for cond, span, what in requirements:
        key = str(cond)
        if key in seen:
            continue
        seen.add(key)
        syms = cond.symbols()
        if len(syms) == 1:
            per[next(iter(syms))].append((cond, span, what))
        else:
            coupled.append((cond, span, what))
    out: dict[str, Constraint] = {}
    for s in symbols:
        out[s] = _solve_one(s, per[s])
    if coupled:
        out = _solve_coupled(symbols, out, coupled)
    return out


def _solve_one(name: str, reqs: list) -> Constraint:
    if not reqs:
        return Constraint(1, None, 1, [0])
    affine = all(degree(c.poly, name) <= 1 and _extremes_same_rate(c.poly) and c.op != "!="
                 for c, _, _ in reqs)
    m = 1
    for c, _, _ in reqs:
        m = math.lcm(m, period(c.poly))
        if m > MAX_PERIOD:
            raise SymbolicBranch(f"the sizes of {name} repeat with a period beyond {MAX_PERIOD}")
    if not affine:
        return _enumerate_one(name, reqs)
    # per residue r: the t >= 0 (n = r + m * t >= 1) for which every requirement holds
    lows, highs = [], []
    for r in range(m):
        t_lo, t_hi = (0 if r >= 1 else 1), None
        for cond, span, what in reqs:
            vals = [_peval(cond.poly, {name: r + m * t}) for t in range(4)]
            alpha, beta = vals[1] - vals[0], vals[0]
            if any(vals[t] != alpha * t + beta for t in (2, 3)):
                return _enumerate_one(name, reqs)
            if cond.op == "==":
                if alpha == 0:
                    if beta != 0:
                        t_lo, t_hi = 1, 0
                elif (-beta) % alpha == 0:
                    t0 = -beta // alpha
                    t_lo, t_hi = max(t_lo, t0), t0 if t_hi is None else min(t_hi, t0)
                else:
                    t_lo, t_hi = 1, 0
            else:  # alpha * t + beta >= 0
                if alpha == 0:
                    if beta < 0:
                        t_lo, t_hi = 1, 0
                elif alpha > 0:
                    t_lo = max(t_lo, -(beta // alpha))  # ceil(-beta / alpha)
                else:
                    bound = beta // (-alpha)
                    t_hi = bound if t_hi is None else min(t_hi, bound)
            if t_hi is not None and t_hi < t_lo:
                break
        lows.append(t_lo)
        highs.append(t_hi)
    members = [(r, lo, hi) for r, (lo, hi) in enumerate(zip(lows, highs))
               if hi is None or hi >= lo]
    if not members:
        raise _why_empty(name, reqs)
    if all(hi is not None for _, _, hi in members):
        valid = sorted(r + m * t for r, lo, hi in members for t in range(lo, hi + 1))
        c = _describe_set(valid, None, m)
    else:
        tail = max(r + m * lo for r, lo, hi in members if hi is None)
        tail = tail - tail % m + m  # every unbounded residue has started
        valid = sorted({r + m * t for r, lo, hi in members
                        for t in range(lo, (hi if hi is not None else (tail + m) // m) + 1)
                        if r + m * t < tail + m})
        c = _describe_set(valid, tail, m) if all(hi is None for _, _, hi in members) \
            else None
    if c is None:
        raise SymbolicBranch(f"the valid sizes of {name} do not follow one period")
    return c


def _enumerate_one(name: str, reqs: list) -> Constraint:
    valid = [n for n in range(1, ENUMERATE + 1)
             if all(c.test({name: n}) for c, _, _ in reqs)]
    if not valid:
        raise _why_empty(name, reqs)
    if valid[-1] < ENUMERATE // 2:
        c = _describe_set(valid, None, 1)
    else:
        m = 1
        for c0, _, _ in reqs:
            m = math.lcm(m, period(c0.poly))
        tail = ENUMERATE // 2 - (ENUMERATE // 2) % m
        c = _describe_set(valid, tail, m) if m <= ENUMERATE // 4 else None
    if c is None:
        raise SymbolicBranch(f"the valid sizes of {name} follow no pattern archgen can state")
    return c


def _why_empty(name: str, reqs: list) -> Unsatisfiable:
    """The first requirement (in forward order) after which no size is left."""
    possible = list(range(1, 4097))
    for i, (cond, span, what) in enumerate(reqs):
        left = [n for n in possible if cond.test({name: n})]
        if not left:
            before = (f"; the layers before it accept {name} in {_sample(possible)}"
                      if i else "")
            return Unsatisfiable(f"no size of {name} satisfies {what}{before}", span, what)
        possible = left
    cond, span, what = reqs[-1]
    return Unsatisfiable(f"no size of {name} satisfies {what}", span, what)


def _sample(values: list[int]) -> str:
    head = ", ".join(map(str, values[:6]))
    return "{" + head + (", ..." if len(values) > 6 else "") + "}"


def _solve_coupled(symbols, out: dict, coupled: list) -> dict:
    """Requirements over several symbols (flatten -> linear with a given in_features pins the
    product of the sizes): enumerate each symbol's valid sizes up to ENUMERATE and keep the
    combinations that meet them; the result must be a product of per-symbol sets."""
    involved = sorted({s for c, _, _ in coupled for s in c.symbols()})
    cands = {s: [n for n in range(1, ENUMERATE + 1) if out[s].admits(n)] for s in involved}
    import itertools
    sols = []
    total = 1
    for s in involved:
        total *= max(1, len(cands[s]))
    if total > 300_000:
        raise SymbolicBranch(f"the requirement {coupled[0][2]} ties {', '.join(involved)} "
                             "together over too many sizes to enumerate")
    for combo in itertools.product(*(cands[s] for s in involved)):
        env = dict(zip(involved, combo))
        if all(c.test(env) for c, _, _ in coupled):
            sols.append(combo)
    if not sols:
        cond, span, what = coupled[0]
        raise Unsatisfiable(f"no sizes of {', '.join(involved)} satisfy {what}", span, what)
    per = [sorted({combo[i] for combo in sols}) for i in range(len(involved))]
    if len(sols) != math.prod(len(p) for p in per):
        pairs = ", ".join("(" + ", ".join(map(str, c)) + ")" for c in sols[:6])
        raise SymbolicBranch(f"{coupled[0][2]} ties {', '.join(involved)} together: only "
                             f"{pairs}{', ...' if len(sols) > 6 else ''} fit")
    for s, values in zip(involved, per):
        c = _describe_set(values, None, 1)
        if c is None:
            raise SymbolicBranch(f"the valid sizes of {s} follow no pattern archgen can state")
        out[s] = c
    return out


# -- reading expressions back ---------------------------------------------------------------

def evaluate(text: str | int, env: dict) -> int:
    """The value of an expression that archgen printed (`"(H + 1) // 2"`) at sizes `env`:
    integers, names, + - * //, parentheses, max and min; anything else is refused.

    >>> evaluate("(H + 1) // 2 * max(W, 3)", {"H": 7, "W": 2})
    12
    """
    import ast as _pyast
    if isinstance(text, int):
        return text
    tree = _pyast.parse(text, mode="eval")

    def ev(n):
        if isinstance(n, _pyast.Expression):
            return ev(n.body)
        if isinstance(n, _pyast.Constant) and type(n.value) is int:
            return n.value
        if isinstance(n, _pyast.Name):
            return env[n.id]
        if isinstance(n, _pyast.UnaryOp) and isinstance(n.op, _pyast.USub):
            return -ev(n.operand)
        if isinstance(n, _pyast.BinOp):
            a, b = ev(n.left), ev(n.right)
            ops = {_pyast.Add: lambda: a + b, _pyast.Sub: lambda: a - b,
                   _pyast.Mult: lambda: a * b, _pyast.FloorDiv: lambda: a // b}
            if type(n.op) in ops:
                return ops[type(n.op)]()
        if isinstance(n, _pyast.Call) and isinstance(n.func, _pyast.Name) \
                and n.func.id in ("max", "min") and len(n.args) == 2 and not n.keywords:
            a, b = ev(n.args[0]), ev(n.args[1])
            return max(a, b) if n.func.id == "max" else min(a, b)
        raise ValueError(f"not a size expression: {text!r}")

    return ev(tree)


def to_json(v):
    """An int stays an int, a Sym becomes its text; tuples become lists."""
    if isinstance(v, tuple):
        return [to_json(i) for i in v]
    return str(v) if isinstance(v, Sym) else v
