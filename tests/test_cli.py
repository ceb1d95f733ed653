"""The command line: exit codes, JSON, and that `check` stays light."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from archgen.cli import main
from archgen.codes import CODES

ROOT = Path(__file__).resolve().parents[1]
SEED = str(ROOT / "examples" / "seed_cnn.cnn")


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def write(tmp_path: Path, text: str, name: str = "spec.cnn") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_check_clean_spec_exits_0():
    result = run("check", SEED)
    assert result.exit_code == 0, result.output
    assert "ok" in result.output and "541,094 params" in result.output


def test_check_error_exits_1_with_located_message(tmp_path):
    spec = write(tmp_path, "input [3, 8, 8]\nconv2d(16, 3)\nmaxpool(2)\n")
    result = run("check", spec)
    assert result.exit_code == 1
    assert f"{spec}:3:1: error[E200]: unknown layer or block 'maxpool'" in result.output
    assert "did you mean 'maxpool2d'?" in result.output
    assert " 3 | maxpool(2)" in result.output and "   | ^^^^^^^" in result.output


def test_warnings_pass_unless_strict(tmp_path):
    spec = write(tmp_path, "input [3, 7, 7]\nmaxpool2d(2)\n")
    assert run("check", spec).exit_code == 0
    result = run("check", "--strict", spec)
    assert result.exit_code == 1 and "W500" in result.output


def test_missing_file_is_a_usage_error():
    result = run("check", "does/not/exist.cnn")
    assert result.exit_code == 2
    assert "no such file" in result.output


def test_json_is_one_document_with_the_documented_fields(tmp_path):
    bad = write(tmp_path, "input [3, 8, 8]\nconv2d(16, 9)\n", "bad.cnn")
    result = run("check", "--format", "json", SEED, bad)
    assert result.exit_code == 1
    docs = json.loads(result.output)
    assert [d["ok"] for d in docs] == [True, False]
    seed = docs[0]
    for key in ("file", "ok", "network", "input_shape", "output_shape", "total_params",
                "total_macs", "layers", "diagnostics"):
        assert key in seed
    assert seed["network"] == "SeedCNN"
    assert seed["input_shape"] == [3, 32, 32] and seed["output_shape"] == [10]
    assert seed["total_params"] == 541_094
    assert sum(layer["params"] for layer in seed["layers"]) == seed["total_params"]
    assert sum(layer["macs"] for layer in seed["layers"]) == seed["total_macs"]
    first = seed["layers"][0]
    assert first["path"] == "backbone.0.0" and first["op"] == "conv2d" and first["line"] == 6
    assert first["output_shape"] == [16, 32, 32]
    assert set(first["receptive_field"]) == {"size", "jump", "start"}
    diag = docs[1]["diagnostics"][0]
    assert (diag["severity"], diag["code"], diag["line"], diag["column"]) == ("error", "E402", 2, 12)


def test_summary_table_and_same_upper_note(tmp_path):
    result = run("summary", SEED)
    assert result.exit_code == 0
    assert "Total params: 541,094" in result.output
    assert "│  ├─ 0: conv2d(16, 3, padding=same, padding_mode=reflect)" in result.output
    spec = write(tmp_path, "input [3, 9, 9]\nconv2d(8, 3, stride=2, padding=same)\n")
    result = run("summary", spec)
    assert result.exit_code == 0
    assert "SAME_UPPER" in result.output and "[8, 5, 5]" in result.output


def test_summary_of_a_broken_spec_prints_diagnostics(tmp_path):
    spec = write(tmp_path, "input [3, 8, 8]\nflatten()\nconv2d(4, 3)\n")
    result = run("summary", spec)
    assert result.exit_code == 1 and "E405" in result.output and "flatten()" in result.output


@pytest.mark.parametrize("code", sorted(CODES))
def test_explain_every_code(code):
    result = run("explain", code)
    assert result.exit_code == 0 and code in result.output


def test_explain_unknown_code():
    assert run("explain", "E999").exit_code == 2


def test_check_imports_no_heavy_package():
    """`archgen check` is a pre-commit tool: no torch, onnx, onnxruntime or jinja2."""
    code = (
        "import sys\n"
        "from archgen.cli import main\n"
        "try:\n"
        f"    main(['check', '--format', 'json', {SEED!r}])\n"
        "except SystemExit:\n"
        "    pass\n"
        f"main2 = __import__('archgen').load({SEED!r}).summary()\n"
        "heavy = sorted(m for m in sys.modules\n"
        "               if m.split('.')[0] in ('torch', 'onnx', 'onnxruntime', 'jinja2', 'numpy'))\n"
        "print('HEAVY', heavy, file=sys.stderr)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "HEAVY []" in out.stderr, out.stderr


# What a clean `archgen check` must not import (its start-up is most of its time: README,
# "check as a process"): the targets' vocabulary and template machinery (each kind imports
# torch_calls/onnx_graph inside lower_torch/lower_onnx), and standard modules only an error,
# another output format or a target needs.
CHECK_NEVER_IMPORTS = (
    "archgen.onnx_graph", "archgen.torch_calls", "archgen.templating", "archgen.quoting",
    "archgen.emit_torch", "archgen.emit_onnx", "archgen.weights", "archgen.parity",
    "archgen.report", "archgen.summary", "archgen.fmt",
    "dataclasses", "importlib.resources", "tempfile", "shutil", "difflib", "fractions",
    "decimal", "json", "shlex",
)


def test_check_imports_only_what_check_needs():
    """A clean `archgen check` of every example (text output, as pre-commit runs it) imports
    none of CHECK_NEVER_IMPORTS, and nothing of torch, onnx, onnxruntime, jinja2 or numpy.
    Fails when an import at the top of a module drags one back onto check's path."""
    specs = sorted(str(p) for p in (ROOT / "examples").glob("*.cnn"))
    code = (
        "import sys\n"
        "from archgen.cli import main\n"
        "try:\n"
        f"    main(['check', *{specs!r}])\n"
        "except SystemExit as e:\n"
        "    print('EXIT', e.code, file=sys.stderr)\n"
        "print('LOADED', sorted(sys.modules), file=sys.stderr)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120)
    assert "EXIT 0" in out.stderr, out.stdout + out.stderr
    loaded = ast.literal_eval(out.stderr.split("LOADED ", 1)[1])
    heavy = [m for m in loaded if m.split(".")[0] in
             ("torch", "onnx", "onnxruntime", "jinja2", "numpy")]
    assert heavy == [], heavy
    assert [m for m in CHECK_NEVER_IMPORTS if m in loaded] == []


def test_help_lists_every_command():
    result = run("--help")
    for command in ("check", "summary", "explain", "compile", "export", "parity"):
        assert command in result.output


def _table_rows(text: str) -> list[tuple[str, int]]:
    """(label, params) of each row of a summary table."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("---")) + 1
    end = next(i for i, line in enumerate(lines) if line.startswith("===") and i > start)
    rows = []
    for line in lines[start:end]:
        cells = line.split("  ")
        numbers = [c.strip() for c in cells if c.strip().replace(",", "").isdigit()]
        rows.append((line, int(numbers[0].replace(",", ""))))
    return rows


@pytest.mark.parametrize("name,total", [("resnet50", 25_557_032), ("densenet121", 7_978_856),
                                        ("squeezenet1_1", 1_235_496)])
def test_summary_counts_each_layer_once_through_branches(name, total):
    """Where torchinfo double-counts shared or nested modules, every layer here is counted
    once: the top-level rows, and separately the leaf layer rows, sum to the total."""
    spec = str(ROOT / "examples" / f"{name}.cnn")
    result = run("summary", spec)
    assert result.exit_code == 0
    assert f"Total params: {total:,}" in result.output
    rows = _table_rows(result.output)
    top = [p for line, p in rows if not line.startswith(("├", "└", "│", " "))]
    assert sum(top) == total
    net = __import__("archgen").load(spec).network
    assert sum(layer.params for layer in net.layers()) == total


def test_summary_collapse_shows_repeats_once():
    spec = str(ROOT / "examples" / "resnet50.cnn")
    full = run("summary", spec).output
    short = run("summary", "--collapse", spec).output
    assert " x 2" in short or " x 3" in short or " x 5" in short
    assert len(short.splitlines()) < len(full.splitlines()) / 2
    assert "Total params: 25,557,032" in short


@pytest.mark.parametrize("blocked, command", [
    ("torch", ["parity", SEED]),
    ("onnxruntime", ["parity", SEED]),
    ("onnx", ["export", SEED, "-o", "never.onnx"]),
])
def test_a_missing_extra_is_a_message_not_a_traceback(blocked, command, tmp_path):
    """Without the [torch]/[onnx] extras the target commands name the extra to install."""
    code = (
        "import sys\n"
        f"sys.modules[{blocked!r}] = None  # as if not installed\n"
        "from archgen.cli import main\n"
        f"main({command!r})\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=tmp_path)
    assert out.returncode == 1, out.stderr
    assert "Traceback" not in out.stderr
    assert "pip install 'archgen[" in out.stderr
    assert not (tmp_path / "never.onnx").exists()


def test_to_torch_module_without_torch_names_the_extra():
    code = (
        "import sys\n"
        "sys.modules['torch'] = None\n"
        "import archgen\n"
        "from archgen.extras import MissingExtra\n"
        f"arch = archgen.load({SEED!r})\n"
        "assert arch.to_torch_source().startswith('\"\"\"SeedCNN')  # needs no torch\n"
        "try:\n"
        "    arch.to_torch_module()\n"
        "except MissingExtra as e:\n"
        "    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert "pip install 'archgen[torch]'" in out.stdout
