"""User text never becomes code: every channel by which spec text reaches generated output, with
payloads that close every quote style, and the structure checks that stand behind the quoting.

For each channel and payload the spec is either refused cleanly (located errors, nothing
rendered) or accepted; then the generated Python parses, passes `verify_python`, holds no name
the payload brought in, runs in PyTorch without the payload running (no sentinel file appears
in the working directory), and the ONNX export passes onnx.checker.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
import torch
from click.testing import CliRunner

import archgen
from archgen import emit_onnx, emit_torch
from archgen.cli import main
from archgen.diagnostics import SpecError
from archgen.emit_onnx import ONNX_OPS, build_onnx
from archgen.emit_torch import PYTHON_SHAPE, load_module, render_torch
from archgen.layers import REGISTRY
from archgen.quoting import (
    InternalError,
    onnx_string,
    py_docstring_text,
    py_literal,
    verify_onnx,
    verify_python,
)

SENTINEL = "pwned"  # every payload that runs creates this file in the working directory

# The issue's payload first, then one closing each quote style, escapes, line breaks that only
# some tools count as such, Jinja's delimiters and comment starts.
PAYLOADS = [
    '""" + str(__import__("os").system("id > pwned")) + """',
    '"""',
    "'''",
    "''' + str(__import__('os').system('id > pwned')) + '''",
    '"',
    "'",
    '" + str(__import__("os").system("id > pwned")) + "',
    "\\",
    '\\"""',
    "end\\",
    "\\n\\x00\\u2028",
    "a\rb",
    "a\u2028b",
    "a\x0cb\x85c",
    "a\tb\x00",
    "{{ 7 * 7 }}",
    "{% if true %}x{% endif %}{# c #}",
    "# comment",
    '#"""',
    '); __import__("os").system("id > pwned"); (',
    "__import__('os').system('id > pwned')",
    "\u00e9\u4e2d\U0001f600",
    # module names with '-' (block1-0) reach the code only as quoted strings: names that are
    # valid, and dashes where a name cannot hold them
    "block1-0",
    "a-__import__",
    "x-os-system",
    "-x",
    "x-",
    "a--b",
    "x{1}",
]
IDS = [f"p{i}" for i in range(len(PAYLOADS))]
# what str.splitlines counts as line ends: a spec line may end at some of them
LINE_BREAKS = set("\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")


def quoted(payload: str) -> str | None:
    """The payload as a spec string literal (no escapes in specs: a quote the text lacks)."""
    for q in ("'", '"'):
        if q not in payload:
            return f"{q}{payload}{q}"
    return None


_HEAD = "network Inj\ninput [3, 8, 8]\n"
_BLOCK = "block b(s, n=4):\n    c1 = conv2d(n, 3, padding=1)\n    relu()\n"
_PLAIN = "block b(s, n=4):\n    conv2d(n, 3, padding=1)\n"

# channel -> spec text with {S} (the payload as a string literal) or {R} (the payload raw)
CHANNELS = {
    "block_arg_class": _HEAD + _BLOCK + "b({S})\n",
    "block_arg_sequential": _HEAD + _PLAIN + "b({S})\nrelu()\n",
    "keyword_arg": _HEAD + _BLOCK + "b(s={S}, n=2)\n",
    "tuple_arg": _HEAD + _BLOCK + "b(({S}, 1))\n",
    "one_tuple_arg": _HEAD + _BLOCK + "b(({S},))\n",
    "named_call": _HEAD + _BLOCK + "first = b({S})\n",
    "repeat_override": _HEAD + _BLOCK + "repeat 2 first(s={S}): b('x')\n",
    "repeat_body": _HEAD + _BLOCK + "repeat 2:\n    b({S})\n",
    "if_comparison": _HEAD + "block b(s):\n    if s == {S}:\n        c1 = conv2d(4, 3, padding=1)\n"
                     "    else:\n        c2 = conv2d(4, 1)\nb({S})\nb('other')\n",
    "branch_arg": _HEAD + _BLOCK + "add:\n    b({S})\n    b('x')\n",
    "group_arg": _HEAD + _BLOCK + "stem:\n    b({S})\n",
    "layer_string_arg": _HEAD + "conv2d(4, 3, padding={S})\n",
    "enum_through_block": _HEAD + "block b(m):\n    conv2d(4, 3, padding=1, padding_mode=m)\n"
                          "b({S})\n",
    "upsample_mode": _HEAD + "upsample(scale_factor=2, mode={S})\n",
    "comment": _HEAD + "relu()  # {R}\n# {R}\n",
    "layer_name": _HEAD + "{R} = relu()\n",
    "group_name": _HEAD + "{R}:\n    relu()\n",
    "quoted_layer_name": _HEAD + "{S} = relu()\n",
    "quoted_group_name": _HEAD + "{S}:\n    relu()\n",
    "block_name": _HEAD + "block {R}():\n    relu()\n{R}()\n",
    "network_name": "network {R}\ninput [3, 8, 8]\nrelu()\n",
    "dashed_layer_name": _HEAD + "a-{R} = relu()\n",
    "dashed_group_name": _HEAD + "a-{R}:\n    relu()\n",
    "repeat_copies_name": _HEAD + "repeat 2 as {R}{1}: relu()\n",
    "from_name": _HEAD + "{R} = conv2d(3, 1)\nadd:\n    identity()\n    from {R}\n",
    "output_name": _HEAD + "{R} = conv2d(3, 1)\nc = relu()\noutput {R}\n",
}


def _spec(channel: str, payload: str) -> str | None:
    template = CHANNELS[channel]
    if "{S}" in template:
        literal = quoted(payload)
        if literal is None:
            return None
        return template.replace("{S}", literal)
    return template.replace("{R}", payload)


def _assert_inert(source: str) -> ast.Module:
    """The source is archgen's structure, and the payload left no name behind."""
    tree = verify_python(source, PYTHON_SHAPE)
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    names |= {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    assert not names & {"__import__", "os", "system", "open", "eval", "exec", "str"}
    return tree


def _outcome(text: str, file: str) -> str:
    """'refused' or 'accepted', after checking whichever it is thoroughly."""
    arch = archgen.parse(text, file)
    errors = arch.errors
    if errors:
        lines = text.split("\n")
        for d in errors:
            assert d.span is not None and 1 <= d.span.line <= len(lines) + 1, d.render(text)
        with pytest.raises(SpecError):
            arch.to_torch_source()
        return "refused"
    net = arch.network
    _assert_inert(render_torch(net))
    _assert_inert(render_torch(net, command=f"archgen compile {file}"))
    module = load_module(net).eval()
    with torch.no_grad():
        out = module(torch.randn(1, *net.input_shape))
    assert tuple(out.shape[1:]) == net.output_shape
    model = build_onnx(net)
    onnx.checker.check_model(model, full_check=True)
    assert model.graph.name == net.name and net.file in model.doc_string
    return "accepted"


@pytest.mark.parametrize("channel", list(CHANNELS))
def test_every_channel_with_every_payload(channel, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    outcomes = {}
    for payload in PAYLOADS:
        text = _spec(channel, payload)
        if text is not None:
            outcomes[payload] = _outcome(text, "inj.cnn")
        assert not (tmp_path / SENTINEL).exists(), (channel, payload)
    assert outcomes
    if channel in ("layer_string_arg", "enum_through_block", "upsample_mode"):
        # enumerations are words: hostile text is refused
        assert set(outcomes.values()) == {"refused"}, outcomes
    elif channel.endswith("_name"):
        # names are identifiers (a payload may still turn the line into a comment)
        assert outcomes[PAYLOADS[0]] == "refused"
    elif channel != "comment":
        # text inside a block's arguments is data: every payload that stays on its line is
        # accepted and inert
        for payload, outcome in outcomes.items():
            assert outcome == "accepted" or set(payload) & LINE_BREAKS, (payload, outcome)


@pytest.mark.parametrize("payload", PAYLOADS, ids=IDS)
def test_block_argument_reaches_the_class_as_written(payload):
    """The block's class is called with exactly the spec's string: quoted, not stripped."""
    if quoted(payload) is None or set(payload) & LINE_BREAKS:
        pytest.skip("not expressible as one spec string on one line")
    net = archgen.parse(_spec("block_arg_class", payload), "inj.cnn").network
    tree = _assert_inert(render_torch(net))
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)
             and isinstance(n.func, ast.Name) and n.func.id == "B"]
    assert [ast.literal_eval(a) for c in calls for a in c.args
            if isinstance(a, ast.Constant) and isinstance(a.value, str)] == [payload]


def test_the_issue_reproduction_runs_nothing(tmp_path, monkeypatch):
    """The exact payload of the report, through `to_torch_module`, `export` and `parity`."""
    monkeypatch.chdir(tmp_path)
    spec = tmp_path / "inj.cnn"
    spec.write_text(_HEAD + "block b(s):\n    c1 = conv2d(4, 3, padding=1)\n"
                    """b('\"\"\" + str(__import__("os").system("id > pwned.txt")) + \"\"\"')\n""")
    archgen.load(spec).to_torch_module()
    runner = CliRunner()
    for args in (["compile", str(spec), "-o", str(tmp_path / "build")],
                 ["export", str(spec), "-o", str(tmp_path / "inj.onnx")],
                 ["parity", str(spec)]):
        result = runner.invoke(main, args)
        assert result.exit_code == 0, result.output
    source = next((tmp_path / "build").glob("*.py")).read_text()
    _assert_inert(source)
    assert not (tmp_path / "pwned.txt").exists()
    assert onnx.load(str(tmp_path / "inj.onnx")).graph.name == "Inj"


def test_a_bare_triple_quote_gives_a_valid_file(tmp_path):
    spec = tmp_path / "q.cnn"
    spec.write_text(_HEAD + "block b(s):\n    c1 = conv2d(4, 3, padding=1)\nb('\"\"\"')\n")
    result = CliRunner().invoke(main, ["compile", str(spec), "-o", str(tmp_path)])
    assert result.exit_code == 0, result.output
    (generated,) = tmp_path.glob("*.py")
    _assert_inert(generated.read_text())


_FILE_NAMES = [p for p in PAYLOADS if "/" not in p and "\x00" not in p] + [
    'we"ird\\ dir.cnn', "x\ny.cnn", "--rf.cnn"]


@pytest.mark.parametrize("name", _FILE_NAMES, ids=[f"f{i}" for i in range(len(_FILE_NAMES))])
def test_file_names_through_compile_and_export(name, tmp_path, monkeypatch):
    """The spec's file name reaches the docstring (with the command that regenerates it) and
    the ONNX model's doc_string: as text, whatever it holds."""
    monkeypatch.chdir(tmp_path)
    spec = tmp_path / f"s{name}.cnn"
    try:
        spec.write_text(_HEAD + _BLOCK + "b('x')\n")
    except (OSError, ValueError):
        pytest.skip("the file system refuses this name")
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["compile", str(spec), "-o", str(out), "--target", "all"])
    assert result.exit_code == 0, result.output
    (generated,) = out.glob("*.py")
    tree = _assert_inert(generated.read_text(encoding="utf-8"))
    assert str(spec) in ast.get_docstring(tree, clean=False)
    (graph,) = out.glob("*.onnx")
    model = onnx.load(str(graph))
    onnx.checker.check_model(model)
    assert str(spec) in model.doc_string
    assert not (tmp_path / SENTINEL).exists()


def test_generated_files_with_payloads_are_ruff_clean(tmp_path):
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    if not Path(ruff).exists():
        pytest.skip("ruff is not installed")
    paths = []
    for i, payload in enumerate(PAYLOADS):
        for channel in ("block_arg_class", "tuple_arg", "repeat_override"):
            text = _spec(channel, payload)
            if text is None or set(payload) & LINE_BREAKS:
                continue
            path = tmp_path / f"m{i}_{channel}.py"
            path.write_text(render_torch(archgen.parse(text, f"{payload}.cnn").network,
                                         command=f"archgen compile {payload}.cnn"),
                            encoding="utf-8")
            paths.append(str(path))
    for args in (["format", "--check", "--diff"], ["check"]):
        result = subprocess.run([ruff, *args, "--isolated", "--no-cache", *paths],
                                capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stdout[:3000] + result.stderr


# ---------------------------------------------------------------------------------------------
# The quoting functions

@pytest.mark.parametrize("payload", PAYLOADS, ids=IDS)
def test_quoting_functions_round_trip(payload):
    assert ast.literal_eval(py_literal(payload)) == payload
    assert ast.literal_eval(py_literal((payload, 1))) == (payload, 1)
    doc = py_docstring_text(payload)
    assert "\n" not in doc and "\r" not in doc
    assert ast.literal_eval(f'"""{doc}"""') == payload.rstrip()
    if "\x00" in payload:  # onnx.parser reads C strings: no quoting can carry a NUL
        with pytest.raises(InternalError):
            onnx_string(payload)
        return
    text = f'<ir_version: 10, opset_import: ["" : 21]>\ng (float[1] {onnx_string(payload)}) ' \
           f'=> (float[1] "y") {{\n  "y" = Identity ({onnx_string(payload)})\n}}'
    assert onnx.parser.parse_model(text).graph.input[0].name == payload


# ---------------------------------------------------------------------------------------------
# The structure check: whatever slips past quoting is refused, never written or run

_SEED = Path(__file__).resolve().parents[1] / "examples" / "seed_cnn.cnn"


@pytest.fixture(scope="module")
def good_source() -> str:
    return render_torch(archgen.load(_SEED).network)


def _in_forward(source: str, stmt: str) -> str:
    head, tail = source.rsplit("        return x\n", 1)
    return f"{head}        {stmt}\n        return x\n{tail}"


@pytest.mark.parametrize("stmt", [
    '__import__("os").system("id")',
    'eval("1")',
    'exec("x = 1")',
    'open("pwned", "w")',
    'getattr(self, "backbone")',
    'torch.load("weights.pt")',
    'torch.hub.load("a", "b")',
    "y = torch",
    "y = self.__class__",
    "y = x.__class__.__bases__",
    "y = nn.Module.__subclasses__()",
    "y = lambda: 1",
    'y = f"{x}"',
    # the one f-string admitted numbers a module name by a range() loop's counter
    'for i in range(2):\n            y = f"{x}"',
    'for i in range(2):\n            y = f"{i + x}"',
    'for i in range(2):\n            y = f"{i!r}"',
    'for i in range(2):\n            y = f"{i:{x}}"',
    'for i in range(2):\n            i = x\n        y = f"{i}"',
    'for i in x:\n            y = f"{i}"',
    'y = [f"{i}" for i in range(2)]',
    "y = b'bytes'",
    "import os",
    "from os import system",
    "global y",
    "del x",
    "while False:\n            pass",
    "try:\n            pass\n        except Exception:\n            pass",
    "with torch.no_grad():\n            pass",
    "def inner():\n            pass",
    "class Inner:\n            pass",
    "x = self.head(**{})",
    "y = [i async for i in x]",
    "x",
    "assert x",
    "raise ValueError",
])
def test_verifier_refuses_statements_in_a_method(good_source, stmt):
    with pytest.raises(InternalError, match="archgen bug"):
        verify_python(_in_forward(good_source, stmt), PYTHON_SHAPE)


def test_verifier_admits_a_module_name_numbered_by_a_loop(good_source):
    loop = 'for i in range(2):\n            self.add_module(f"unit{i + 1}x", nn.ReLU())'
    verify_python(_in_forward(good_source, loop), PYTHON_SHAPE)


@pytest.mark.parametrize("extra", [
    "import os\n",
    "from torch import load\n",
    "import torch as t\n",
    'print("hello")\n',
    "y = 1\n",
    "__all__ = [open('x')]\n",
    "if True:\n    pass\n",
    "def helper():\n    pass\n",
    "@staticmethod\nclass A(nn.Module):\n    pass\n",
    "class A(object):\n    pass\n",
    "class A(nn.Module, metaclass=type):\n    pass\n",
    "class A(nn.Module):\n    x = 1\n",
    "class A(nn.Module):\n    def __reduce__(self):\n        return None\n",
    "class A(nn.Module):\n    def __getattr__(self, name):\n        return None\n",
    "class A(nn.Module):\n    @property\n    def forward(self):\n        return None\n",
    "class A(nn.Module):\n    def forward(self, *args):\n        return None\n",
    "class A(nn.Module):\n    def forward(x):\n        return x\n",
    "class A(nn.Module):\n    def forward(self, x=__import__('os')):\n        return x\n",
])
def test_verifier_refuses_module_level_additions(good_source, extra):
    with pytest.raises(InternalError, match="archgen bug"):
        verify_python(good_source + "\n\n" + extra, PYTHON_SHAPE)


def test_verifier_accepts_what_the_emitter_writes(good_source):
    tree = verify_python(good_source, PYTHON_SHAPE)
    assert [type(s).__name__ for s in tree.body] == ["Expr", "Import", "ImportFrom", "ClassDef",
                                                     "ClassDef"]
    verify_python(good_source + '\n__all__ = ["SeedCNN"]\n', PYTHON_SHAPE)


def test_a_syntax_error_is_an_internal_error():
    with pytest.raises(InternalError, match="does not parse"):
        verify_python('"""unterminated', PYTHON_SHAPE)


class _Rendered:
    """A template environment standing in for a broken emitter."""

    def __init__(self, text: str):
        self.text = text

    def get_template(self, name):
        return self

    def render(self, **_):
        return self.text


def test_render_and_load_refuse_unexpected_code(tmp_path, monkeypatch):
    """What the verifier refuses is neither returned nor executed: load_module compiles the
    checked tree, not a second rendering."""
    monkeypatch.chdir(tmp_path)
    net = archgen.load(_SEED).network
    evil = render_torch(net) + f'\n__import__("os").system("touch {SENTINEL}")\n'
    monkeypatch.setattr(emit_torch, "_environment", lambda: _Rendered(evil))
    with pytest.raises(InternalError):
        render_torch(net)
    with pytest.raises(InternalError):
        load_module(net)
    with pytest.raises(InternalError):  # export calibrates its weights in the module
        build_onnx(net)
    assert not (tmp_path / SENTINEL).exists()


def test_compile_reports_an_internal_error_in_one_line(tmp_path, monkeypatch):
    net_text = _SEED.read_text()
    spec = tmp_path / "seed.cnn"
    spec.write_text(net_text)
    monkeypatch.setattr(emit_torch, "_environment", lambda: _Rendered("import os\n"))
    result = CliRunner().invoke(main, ["compile", str(spec), "-o", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert "internal error" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------
# ONNX: operators and names

@pytest.fixture(scope="module")
def seed_model():
    return build_onnx(archgen.load(_SEED).network)


def test_onnx_verifier_accepts_the_export(seed_model):
    verify_onnx(seed_model, ONNX_OPS)


@pytest.mark.parametrize("mutate", [
    lambda m: m.graph.node.add(op_type="Loop", name="loop"),
    lambda m: m.graph.node.add(op_type="Relu", domain="com.microsoft", name="r"),
    lambda m: setattr(m.graph.node[0], "name", 'a"b'),
    lambda m: setattr(m.graph.node[0], "name", "a\nb"),
    lambda m: m.graph.node[0].output.__setitem__(0, "x y"),
    lambda m: m.functions.add(name="f", domain="custom"),
    lambda m: m.opset_import.add(domain="com.microsoft", version=1),
])
def test_onnx_verifier_refuses(seed_model, mutate):
    model = type(seed_model)()
    model.CopyFrom(seed_model)
    mutate(model)
    with pytest.raises(InternalError, match="archgen bug"):
        verify_onnx(model, ONNX_OPS)


def test_onnx_templates_refuse_an_unknown_operator():
    with pytest.raises(InternalError):
        emit_onnx._environment().get_template("unary.onnx.j2").render(
            name="n", y="y", x="x", op="Loop")


def test_the_allowed_operators_are_those_the_lowerings_write():
    """ONNX_OPS is exactly the operators written in the templates or passed to them."""
    root = Path(__file__).resolve().parents[1] / "templates" / "onnx"
    templates = "\n".join(p.read_text() for p in root.glob("*.j2"))
    package = Path(emit_onnx.__file__).parent  # the emitter and the kinds' own lowerings
    source = "\n".join(p.read_text() for p in [package / "emit_onnx.py",
                                               *(package / "layers").glob("*.py")])
    used = set(re.findall(r"= ([A-Z]\w+) [<(]", templates))
    used |= set(re.findall(r'op="([A-Z]\w+)"', source))
    used |= {k.onnx_op for k in REGISTRY.values() if getattr(k, "onnx_op", None)}
    used |= set(re.findall(r'"((?:Reduce|Global)\w+)"', source))
    assert used == ONNX_OPS


def test_dashed_names_are_quoted_strings_and_keys_as_written():
    """block1-0 is registered with add_module and called through getattr(self, "block1-0"),
    both a quoted literal; the state_dict keys are the names as written; TorchScript reads
    it; the verifier admits getattr only of self and only for such a name."""
    net = archgen.parse(_HEAD + "stage:\n    repeat 2 as block1-{0}: conv2d(3, 1)\n"
                        "b-x = relu()\n", "d.cnn").network
    source = render_torch(net)
    tree = _assert_inert(source)
    literals = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)}
    assert {"block1-0", "block1-1", "b-x"} <= literals
    module = load_module(net).eval()
    assert list(module.state_dict()) == ["stage.block1-0.weight", "stage.block1-0.bias",
                                         "stage.block1-1.weight", "stage.block1-1.bias"]
    x = torch.randn(1, 3, 8, 8)
    assert torch.equal(torch.jit.script(module)(x), module(x))
    good = source
    for bad in ('getattr(self, "stage")', 'getattr(self, "__class__")', 'getattr(x, "b-x")',
                'getattr(self, "b-x", None)', "getattr(self, name)"):
        mutated = good.replace('getattr(self, "b-x")', bad, 1)
        assert mutated != good
        with pytest.raises(InternalError, match="archgen bug"):
            verify_python(mutated, PYTHON_SHAPE)
