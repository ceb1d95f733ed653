"""Symbolic input sizes (`input [3, H, W]`): the valid sizes of each symbol (E413, E414), the
sample network at representative sizes, and W500 stated per residue."""

from __future__ import annotations

import math

from .. import symbolic
from ..ir import Layer, Network, walk


class Solver:
    # -- symbolic sizes ------------------------------------------------------------------------
    def _solve_sizes(self, net: Network, requirements: list) -> None:
        """The valid sizes of each symbol (E413 when there are none), then a sample network at
        representative sizes for what is worked out per size: receptive fields and the
        warnings that do not depend on the size; W500 is stated per residue."""
        names = list(dict.fromkeys(str(v) for v in net.input_shape
                                   if isinstance(v, symbolic.Sym)))
        where = self.spec.input_span
        try:
            constraints = symbolic.solve(names, requirements)
        except symbolic.Unsatisfiable as err:
            self.error("E413", f"no input size is valid: {err.message}", err.span or where,
                       notes=["the input is [" + ", ".join(map(str, net.input_shape)) + "]"],
                       helps=["change the layers so that their sizes agree, or give the "
                              "input's size as a number to see the first error it meets"])
            return
        except symbolic.SymbolicBranch as err:
            self.error("E414", f"archgen cannot state the valid input sizes: {err}", where,
                       helps=["give concrete sizes: `archgen check --input 3,224,224 FILE`"])
            return
        net.constraints = constraints
        env = {name: c.sample() for name, c in constraints.items()}
        concrete = tuple(v.eval(env) if isinstance(v, symbolic.Sym) else v
                         for v in net.input_shape)
        sample = type(self)(self.spec, concrete).run()
        bad = [d for d in sample.diagnostics if d.is_error]
        if bad:  # cannot happen if the requirements are complete; say so rather than hide it
            self.error("E414", f"archgen's symbolic check admits {concrete} but the concrete "
                       f"check refuses it ({bad[0].code}: {bad[0].message}); please report "
                       f"this", where)
            return
        net.sample = sample
        for mine, theirs in zip(walk(net.root), walk(sample.root)):
            mine.rf = theirs.rf
        self.diags += [d for d in sample.diagnostics if d.code not in _SIZE_WARNINGS]
        self._size_warnings(net, env)

    def _size_warnings(self, net: Network, env: dict) -> None:
        """W500 on a symbolic network: for each strided window and each axis, the residues of
        the symbol for which pixels go unread, found by the kind's own rule at one valid size
        per residue of the window's input size modulo its stride."""
        for layer in net.layers():
            a = layer.args
            if "stride" not in a or "kernel_size" not in a or not symbolic.is_symbolic(
                    layer.in_shape):
                continue
            parts, example = [], None
            words = {1: ("position",), 2: ("row", "column"), 3: ("plane", "row", "column")}
            for axis, word in enumerate(words.get(len(layer.in_shape) - 1, ())):
                size = layer.in_shape[1 + axis]
                if not isinstance(size, symbolic.Sym) or len(size.symbols()) != 1 or \
                        a["stride"][axis] == 1:  # consecutive windows read every row
                    continue
                name = next(iter(size.symbols()))
                c = net.constraints[name]
                m = symbolic.period(size.poly) * a["stride"][axis]
                if m > 256:
                    continue
                m = math.lcm(m, c.modulus)
                firing, skips = [], False
                # one size per residue, large enough that the map holds many windows: what
                # happens there happens at every larger size of that residue
                start = c.min + m * (max(a["kernel_size"]) + 2)
                for r in range(m):
                    n = c.first(r, m, start)
                    if n is None:
                        continue
                    at = dict(env, **{name: n})
                    ev = _at_sizes(at)
                    warns = [w for w in layer.kind.warnings(ev(a), ev(layer.in_shape),
                                                            ev(layer.out_shape))
                             if w.code == "W500" and word in w.message]
                    if warns:
                        firing.append(r)
                        skips = skips or " skips " in warns[0].message
                        example = example or (name, n, warns[0])
                if not firing:
                    continue
                valid = [r for r in range(m) if c.first(r, m) is not None]
                what = (f"{word}s between windows are skipped" if skips else
                        f"the last {word} is dropped" if last_only(layer, axis) else
                        f"the last {word}s are dropped")
                parts.append(f"{symbolic.residue_text(name, m, firing, valid)} {what}")
            if parts:
                name, n, w = example
                self.warn("W500", f"{layer.op}: {'; '.join(parts)}",
                          layer.span, [f"at {name} = {n}: {w.message}"] + w.notes, w.helps)


# leaves the others to a check at concrete sizes
_SIZE_WARNINGS = {"W500", "W501", "W503", "W504", "W505"}


def last_only(layer: Layer, axis: int) -> bool:
    """A window that drops what is left over drops at most stride - 1 rows: one for stride 2."""
    return layer.args["stride"][axis] == 2


def _at_sizes(env: dict):
    """A function that evaluates symbolic sizes (in shapes and arguments) at `env`."""
    def ev(v):
        if isinstance(v, symbolic.Sym):
            return v.eval(env)
        if isinstance(v, tuple):
            return tuple(ev(i) for i in v)
        if isinstance(v, dict):
            return {k: ev(i) for k, i in v.items()}
        return v
    return ev
