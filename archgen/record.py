"""`record`: a lightweight dataclass for the check path.

`archgen check` runs in pre-commit hooks, so its start-up counts. Creating a class with
`dataclasses.dataclass` costs ~0.5 ms (it generates and compiles __init__, __repr__, __eq__, and
its import pulls in `inspect`); the ~35 classes of the parser, checker and IR cost ~35 ms that
way. `record` generates only __init__, from the annotations in order (bases first) and the
class-level defaults, for ~0.05 ms a class, and compiles it when the first instance is made.
Instances compare by identity.

>>> @record
... class Point:
...     x: int
...     y: int = 0
...     tags: list = factory(list)
>>> Point(1)
Point(x=1, y=0, tags=[])
"""

from __future__ import annotations

_MISSING = object()


class factory:  # noqa: N801  (used like dataclasses.field(default_factory=...))
    """A default made fresh for every instance: `items: list = factory(list)`."""

    def __init__(self, make):
        self.make = make


def _repr(self) -> str:
    inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._fields)
    return f"{type(self).__name__}({inner})"


def record(cls):
    fields: list[str] = []
    defaults: dict = {}
    for base in reversed(cls.__mro__[1:]):  # inherited fields first, in their order
        for name in base.__dict__.get("_fields", ()):
            if name not in fields:
                fields.append(name)
        defaults.update(base.__dict__.get("_defaults", {}))
    for name in cls.__dict__.get("__annotations__", {}):
        if name.startswith("_"):
            continue
        if name not in fields:
            fields.append(name)
        if name in cls.__dict__:
            defaults[name] = cls.__dict__[name]
            if isinstance(defaults[name], factory):
                delattr(cls, name)  # the class attribute must not stand in for a value
    params, body, env = [], [], {"_MISSING": _MISSING}
    for i, name in enumerate(fields):
        default = defaults.get(name, _MISSING)
        if default is _MISSING:
            if any(f in defaults for f in fields[:i]):
                raise TypeError(f"{cls.__name__}.{name} needs a default: it follows fields "
                                "that have one")
            params.append(name)
            body.append(f"    self.{name} = {name}")
        elif isinstance(default, factory):
            env[f"_make_{name}"] = default.make
            params.append(f"{name}=_MISSING")
            body.append(f"    self.{name} = _make_{name}() if {name} is _MISSING else {name}")
        else:
            env[f"_default_{name}"] = default
            params.append(f"{name}=_default_{name}")
            body.append(f"    self.{name} = {name}")
    source = f"def __init__(self, {', '.join(params)}):\n" + ("\n".join(body) or "    pass")

    def __init__(self, *args, **kwargs):  # compiles the real one on the class's first instance
        exec(source, env)  # noqa: S102  (generated from the class's own field names only)
        cls.__init__ = env["__init__"]
        cls.__init__(self, *args, **kwargs)

    # Compiling __init__ is most of a record's cost (~0.3 ms); a check makes instances of
    # about half of the ~40 record classes, so the others never pay it.
    cls.__init__ = __init__
    cls._fields = tuple(fields)
    cls._defaults = defaults
    if "__repr__" not in cls.__dict__:
        cls.__repr__ = _repr
    return cls
