"""check for CI: GitHub workflow commands, SARIF 2.1.0, stdin, directories, python -m archgen,
the pre-commit hook and shell completion."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote

import pytest
from click.testing import CliRunner

from archgen import __version__
from archgen.ci_formats import escape_data, escape_property, github_command, relative_path
from archgen.cli import main
from archgen.codes import CODES
from archgen.diagnostics import Diagnostic, Span

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
E401 = EXAMPLES / "errors" / "E401_in_features_mismatch.cnn"
SEED = EXAMPLES / "seed_cnn.cnn"


def run(*args, input=None):
    return CliRunner().invoke(main, list(args), input=input)


@pytest.fixture
def in_repo(monkeypatch):
    monkeypatch.chdir(ROOT)


# ---------------------------------------------------------------------------------------------
# GitHub


def test_github_annotations_for_an_error_and_a_warning(in_repo):
    result = run("check", "--format", "github", "examples/errors/E401_in_features_mismatch.cnn",
                 "examples/seed_cnn.cnn")
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(
        "::error file=examples/errors/E401_in_features_mismatch.cnn,line=9,col=12,endLine=9,"
        "endColumn=27,title=archgen E401::linear: in_features=1024 but the input has 4096 "
        "features%0Anote: ")
    assert lines[1].startswith(
        "::warning file=examples/seed_cnn.cnn,line=20,col=5,endLine=20,endColumn=15,"
        "title=archgen W504::")
    assert "(95%25)" in lines[1]  # '%' escaped in the message


def test_github_paths_are_relative_to_the_current_directory(tmp_path, monkeypatch):
    (tmp_path / "nets").mkdir()
    shutil.copy(E401, tmp_path / "nets" / "bad.cnn")
    monkeypatch.chdir(tmp_path)
    out = run("check", "--format", "github", str(tmp_path / "nets" / "bad.cnn")).output
    assert out.startswith("::error file=nets/bad.cnn,line=9,")


def test_github_escaping_of_properties_and_messages():
    assert escape_data("a%b\r\nc:d,e") == "a%25b%0D%0Ac:d,e"
    assert escape_property("a%b\r\nc:d,e") == "a%25b%0D%0Ac%3Ad%2Ce"
    d = Diagnostic("warning", "W500", "50% of it:\nnext, line", Span("dir,x/a:b.cnn", 3, 2, 5))
    line = github_command(d, "dir,x/a:b.cnn", base="/")
    assert line == ("::warning file=dir%2Cx/a%3Ab.cnn,line=3,col=2,endLine=3,endColumn=4,"
                    "title=archgen W500::50%25 of it:%0Anext, line")
    no_span = Diagnostic("error", "E408", "no input", None)
    assert github_command(no_span, "a.cnn", base="/") == (
        "::error file=a.cnn,title=archgen E408::no input")


def test_github_prints_nothing_for_clean_specs(in_repo):
    result = run("check", "--format", "github", "examples/resnet18.cnn")
    assert result.exit_code == 0 and result.output == ""


# ---------------------------------------------------------------------------------------------
# SARIF


def _sarif(*paths: str) -> tuple[int, dict]:
    result = run("check", "--format", "sarif", *paths)
    return result.exit_code, json.loads(result.output)


def test_sarif_document_structure(in_repo):
    code, doc = _sarif("examples/errors/E401_in_features_mismatch.cnn", "examples/seed_cnn.cnn",
                       "examples/resnet18.cnn")
    assert code == 1
    assert doc["version"] == "2.1.0"
    assert doc["$schema"].endswith("sarif-schema-2.1.0.json")
    assert len(doc["runs"]) == 1
    run_ = doc["runs"][0]
    driver = run_["tool"]["driver"]
    assert driver["name"] == "archgen" and driver["version"] == __version__
    assert driver["informationUri"].startswith("https://")
    rules = driver["rules"]
    assert [r["id"] for r in rules] == list(CODES)
    for rule, (code_, (title, text)) in zip(rules, CODES.items()):
        assert rule["shortDescription"]["text"] == title
        assert rule["fullDescription"]["text"]
        assert text.strip().split("\n")[0] in rule["help"]["text"]
        assert rule["defaultConfiguration"]["level"] == (
            "warning" if code_.startswith("W") else "error")
        assert re.fullmatch(r"[A-Za-z0-9]+", rule["name"])
    assert run_["originalUriBaseIds"]["%SRCROOT%"]["uri"] == ROOT.as_uri() + "/"
    results = run_["results"]
    assert [(r["ruleId"], r["level"]) for r in results] == [("E401", "error"),
                                                             ("W504", "warning")]
    for r in results:
        assert rules[r["ruleIndex"]]["id"] == r["ruleId"]
        assert r["message"]["text"]
        [loc] = r["locations"]
        art = loc["physicalLocation"]["artifactLocation"]
        assert art["uriBaseId"] == "%SRCROOT%"
        assert not art["uri"].startswith(("/", "file:")) and (ROOT / unquote(art["uri"])).is_file()
        region = loc["physicalLocation"]["region"]
        assert region["startLine"] == region["endLine"] >= 1
        assert region["endColumn"] > region["startColumn"] >= 1
    first = results[0]["locations"][0]["physicalLocation"]
    assert first["artifactLocation"]["uri"] == "examples/errors/E401_in_features_mismatch.cnn"
    assert first["region"] == {"startLine": 9, "startColumn": 12, "endLine": 9, "endColumn": 28}


def test_sarif_uris_are_percent_encoded_and_clean_runs_have_no_results(tmp_path, monkeypatch):
    (tmp_path / "my nets").mkdir()
    shutil.copy(E401, tmp_path / "my nets" / "bad net.cnn")
    monkeypatch.chdir(tmp_path)
    _, doc = _sarif("my nets/bad net.cnn")
    uri = doc["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]
    assert uri["uri"] == "my%20nets/bad%20net.cnn"
    code, doc = _sarif(str(EXAMPLES / "resnet18.cnn"))
    assert code == 0 and doc["runs"][0]["results"] == []


def test_relative_path_outside_the_base_stays_absolute():
    assert relative_path("/elsewhere/a.cnn", "/repo") == "/elsewhere/a.cnn"
    assert relative_path("examples/a.cnn", "/repo") == "examples/a.cnn"
    assert relative_path("<stdin>", "/repo") == "<stdin>"


# ---------------------------------------------------------------------------------------------
# Inputs: stdin and directories


def test_check_reads_stdin_as_dash():
    text = E401.read_text()
    result = run("check", "-", input=text)
    assert result.exit_code == 1
    assert result.output.startswith("<stdin>:9:12: error[E401]")
    assert run("check", "-", input=SEED.read_text()).exit_code == 0


def test_check_dir_checks_every_cnn_below_it_sorted(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / ".hidden").mkdir()
    shutil.copy(SEED, tmp_path / "b" / "z.cnn")
    shutil.copy(SEED, tmp_path / "a.cnn")
    shutil.copy(E401, tmp_path / ".hidden" / "bad.cnn")  # hidden folders are skipped
    (tmp_path / "notes.txt").write_text("not a spec")
    result = run("check", str(tmp_path))
    assert result.exit_code == 0, result.output
    checked = re.findall(r"^(\S+\.cnn): ok", result.output, re.M)
    assert checked == [str(tmp_path / "a.cnn"), str(tmp_path / "b" / "z.cnn")]


def test_check_dir_without_specs_is_a_usage_error(tmp_path):
    result = run("check", str(tmp_path))
    assert result.exit_code == 2
    assert "no .cnn files under" in result.output


# ---------------------------------------------------------------------------------------------
# python -m archgen, pre-commit, completion


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def test_python_dash_m_archgen():
    result = subprocess.run([sys.executable, "-m", "archgen", "check", str(SEED)],
                            capture_output=True, text=True, env=_env(), timeout=60)
    assert result.returncode == 0, result.stderr
    assert "ok (1 warning): SeedCNN" in result.stdout
    help_ = subprocess.run([sys.executable, "-m", "archgen", "--help"], capture_output=True,
                           text=True, env=_env(), timeout=60)
    assert help_.stdout.startswith("Usage: archgen ")


def test_pre_commit_hook_definition_runs_as_pre_commit_would(tmp_path):
    text = (ROOT / ".pre-commit-hooks.yaml").read_text()
    hook = text[text.index("\n- id: archgen-check") + 1:].split("\n- id:")[0]
    fields = dict(re.findall(r"^  (\w+): (.*)$", hook, re.M))
    assert fields["entry"] == "archgen check" and fields["language"] == "python"
    files = re.compile(fields["files"])
    assert files.search("nets/a.cnn") and not files.search("a.cnn.bak")
    # pre-commit appends the staged files that match `files` to the entry
    good = tmp_path / "good.cnn"
    shutil.copy(SEED, good)
    bad = tmp_path / "bad.cnn"
    shutil.copy(E401, bad)
    argv = fields["entry"].split()[1:]
    assert run(*argv, str(good)).exit_code == 0
    assert run(*argv, str(good), str(bad)).exit_code == 1


def test_bash_completion_script():
    result = subprocess.run(
        [sys.executable, "-c", "from archgen.cli import main; main(prog_name='archgen')"],
        capture_output=True, text=True, timeout=60,
        env={**_env(), "_ARCHGEN_COMPLETE": "bash_source"})
    assert "_archgen_completion" in result.stdout and "complete " in result.stdout
    words = subprocess.run(
        [sys.executable, "-c", "from archgen.cli import main; main(prog_name='archgen')"],
        capture_output=True, text=True, timeout=60,
        env={**_env(), "_ARCHGEN_COMPLETE": "bash_complete", "COMP_WORDS": "archgen ch",
             "COMP_CWORD": "1"})
    assert "plain,check" in words.stdout
    words = subprocess.run(
        [sys.executable, "-c", "from archgen.cli import main; main(prog_name='archgen')"],
        capture_output=True, text=True, timeout=60,
        env={**_env(), "_ARCHGEN_COMPLETE": "bash_complete", "COMP_WORDS": "archgen f",
             "COMP_CWORD": "1"})
    assert words.stdout.split() == ["plain,fmt"]
    choices = subprocess.run(
        [sys.executable, "-c", "from archgen.cli import main; main(prog_name='archgen')"],
        capture_output=True, text=True, timeout=60,
        env={**_env(), "_ARCHGEN_COMPLETE": "bash_complete",
             "COMP_WORDS": "archgen check --format ", "COMP_CWORD": "3"})
    assert choices.stdout.split() == ["plain,text", "plain,json", "plain,github", "plain,sarif"]
    spec = subprocess.run(  # spec paths complete as files
        [sys.executable, "-c", "from archgen.cli import main; main(prog_name='archgen')"],
        capture_output=True, text=True, timeout=60,
        env={**_env(), "_ARCHGEN_COMPLETE": "bash_complete",
             "COMP_WORDS": "archgen check exa", "COMP_CWORD": "2"})
    assert spec.stdout.split() == ["file,exa"]


# ---------------------------------------------------------------------------------------------
# The header of a generated file


def test_generated_header_is_the_exact_command_that_regenerates_it(tmp_path, monkeypatch):
    import ast
    import shlex
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my nets").mkdir()
    spec = Path("my nets") / "it's seed.cnn"
    shutil.copy(SEED, spec)
    result = run("compile", str(spec), "-o", "out dir")
    assert result.exit_code == 0, result.output
    written = tmp_path / "out dir" / "it_s_seed.py"  # the spec's stem as a module name
    doc = ast.get_docstring(ast.parse(written.read_text()))
    [command] = [line.split(": ", 1)[1] for line in doc.splitlines()
                 if line.startswith("Regenerate with: ")]
    assert command == "archgen compile 'my nets/it'\"'\"'s seed.cnn' -o 'out dir'"
    argv = shlex.split(command)
    assert argv[:2] == ["archgen", "compile"]
    before = written.read_bytes()
    again = run(*argv[1:])
    assert again.exit_code == 0 and f"unchanged {Path('out dir') / 'it_s_seed.py'}" in again.output
    assert written.read_bytes() == before
