"""Suppressing warnings as ruff and mypy do: --ignore (prefixes count), inline
`# archgen: ignore[...]` comments and [tool.archgen] in the nearest pyproject.toml; errors are
never suppressed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import archgen
from archgen.cli import main
from archgen.suppress import ConfigError, find_settings, parse_codes

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
SEED = EXAMPLES / "seed_cnn.cnn"
TEXTBOOK = ["seed_cnn.cnn", "lenet5.cnn", "alexnet.cnn", "vgg16.cnn", "vgg16_bn.cnn"]

# W500 on line 3 (maxpool2d(2) on 33x33), W504 on line 5 (16 * 16 * 16 features to 100)
TWO_WARNINGS = """input [3, 33, 33]
conv2d(16, 3, padding=1)
maxpool2d(2)
flatten()
linear(100)
"""


def run(*args, input=None):
    return CliRunner().invoke(main, list(args), input=input)


def codes(arch) -> list[str]:
    return [d.code for d in arch.check()]


def test_strict_fails_on_the_textbook_nets_without_a_way_out_unless_ignored():
    paths = [str(EXAMPLES / name) for name in TEXTBOOK]
    assert run("check", "--strict", *paths).exit_code == 1
    assert run("check", "--strict", "--ignore", "W504", *paths).exit_code == 0
    assert run("check", "--strict", "--ignore", "W50", *paths).exit_code == 0  # a prefix
    assert run("check", "--strict", "--ignore", "w504", *paths).exit_code == 0


def test_ignore_is_repeatable_and_takes_comma_lists(tmp_path):
    spec = tmp_path / "two.cnn"
    spec.write_text(TWO_WARNINGS)
    assert codes(archgen.load(spec)) == ["W500", "W504"]
    assert run("check", "--strict", "--ignore", "W504", str(spec)).exit_code == 1
    assert run("check", "--strict", "--ignore", "W504", "--ignore", "W500",
               str(spec)).exit_code == 0
    result = run("check", "--strict", "--ignore", "W500,W504", str(spec))
    assert result.exit_code == 0 and "warning" not in result.output


@pytest.mark.parametrize("value, words", [
    ("E401", ["E401 is an error", "cannot be ignored"]),
    ("E4", ["errors", "cannot be ignored"]),
    ("W999", ["unknown code 'W999'"]),
])
def test_ignore_refuses_errors_and_unknown_codes(value, words):
    result = run("check", "--ignore", value, str(SEED))
    assert result.exit_code == 2
    assert all(w in result.output for w in words)
    assert "Traceback" not in result.output


def test_inline_comment_suppresses_only_its_own_line():
    text = SEED.read_text()
    assert "    linear(500)\n" in text
    arch = archgen.parse(text.replace("    linear(500)\n",
                                      "    linear(500)  # archgen: ignore[W504]\n"))
    assert codes(arch) == []
    arch = archgen.parse(text.replace("    linear(500)\n", "    linear(500)  # archgen: ignore\n"))
    assert codes(arch) == []
    arch = archgen.parse(text.replace("    linear(10)\n",  # the wrong line
                                      "    linear(10)  # archgen: ignore[W504]\n"))
    assert codes(arch) == ["W504"]
    arch = archgen.parse(text.replace("    linear(500)\n",  # another code on the line
                                      "    linear(500)  # archgen: ignore[W500]\n"))
    assert codes(arch) == ["W504"]


def test_inline_comment_several_codes_and_prefixes():
    lines = TWO_WARNINGS.splitlines()
    lines[2] += "  # archgen: ignore[W504, W500]"
    lines[4] += "  # pooling is fine # archgen: ignore[w50]"
    assert codes(archgen.parse("\n".join(lines))) == []


def test_strict_passes_with_an_inline_comment_from_the_command_line(tmp_path):
    spec = tmp_path / "seed.cnn"
    spec.write_text(SEED.read_text().replace("    linear(500)\n",
                                             "    linear(500)  # archgen: ignore[W504]\n"))
    result = run("check", "--strict", str(spec))
    assert result.exit_code == 0, result.output


def test_a_pragma_inside_a_string_is_not_a_comment():
    text = 'input [3, 8, 8]\nconv2d(4, 3, padding_mode="# archgen: ignore[W5O4]")\n'
    assert "E206" not in codes(archgen.parse(text))
    text = 'input [3, 8, 8]\nconv2d(4, 3)  # "# archgen: ignore[W5O4]"\n'
    assert "E206" in codes(archgen.parse(text))


@pytest.mark.parametrize("comment, message", [
    ("# archgen: ignore[W5O4]", "unknown code 'W5O4'"),
    ("# archgen: ignore[E401]", "E401 is an error"),
    ("# archgen: ignore[]", "names no code"),
    ("# archgen: ignroe[W504]", "unknown archgen directive 'ignroe[W504]'"),
    ("# archgen: ignore[W504", "unclosed '['"),
])
def test_a_bad_suppression_comment_is_an_error_e206(comment, message):
    text = SEED.read_text().replace("    linear(500)\n", f"    linear(500)  {comment}\n")
    arch = archgen.parse(text, "seed.cnn")
    bad = [d for d in arch.check() if d.code == "E206"]
    assert len(bad) == 1 and message in bad[0].message, [d.message for d in bad]
    assert bad[0].span.line == 20 and bad[0].span.column == 18
    assert not arch.ok  # compile and export refuse it, as any error
    with pytest.raises(archgen.SpecError):
        _ = arch.network
    assert arch.to_json()["ok"] is False


def test_a_suppression_on_a_line_of_its_own_is_an_error():
    text = SEED.read_text().replace("    linear(500)\n",
                                    "    # archgen: ignore[W504]\n    linear(500)\n")
    arch = archgen.parse(text)
    assert codes(arch) == ["W504", "E206"]
    [bad] = [d for d in arch.check() if d.code == "E206"]
    assert "silences nothing" in bad.message and bad.span.line == 20


def test_prose_after_archgen_colon_in_a_comment_line_is_not_a_directive():
    text = "# archgen: a tiny net\n# archgen: ignoring W504 here\ninput [3, 8, 8]\nconv2d(4, 3)\n"
    assert codes(archgen.parse(text)) == []


def test_errors_are_never_suppressed():
    arch = archgen.parse("input [3, 8, 8]\nflatten()\nconv2d(4, 3)  # archgen: ignore\n")
    assert codes(arch) == ["E405"]
    assert not arch.ok


def _project(tmp_path: Path, table: str, spec_text: str = TWO_WARNINGS) -> Path:
    (tmp_path / "pyproject.toml").write_text(f"[project]\nname = 'x'\n\n[tool.archgen]\n{table}")
    (tmp_path / "nets" / "deep").mkdir(parents=True)
    spec = tmp_path / "nets" / "deep" / "two.cnn"
    spec.write_text(spec_text)
    return spec


def test_pyproject_ignore_and_strict(tmp_path):
    spec = _project(tmp_path, 'ignore = ["W504"]\nstrict = true\n')
    assert codes(archgen.load(spec)) == ["W500"]  # the API reads it too
    result = run("check", str(spec))
    assert result.exit_code == 1 and "W500" in result.output and "W504" not in result.output
    assert run("check", "--no-strict", str(spec)).exit_code == 0  # the command line wins
    assert run("check", "--ignore", "W500", str(spec)).exit_code == 0  # and adds codes


def test_the_nearest_pyproject_with_a_tool_archgen_table_counts(tmp_path):
    spec = _project(tmp_path, 'ignore = ["W50"]\n')
    (tmp_path / "nets" / "pyproject.toml").write_text("[project]\nname = 'inner'\n")
    assert codes(archgen.load(spec)) == []
    (tmp_path / "nets" / "pyproject.toml").write_text('[tool.archgen]\nignore = ["W500"]\n')
    assert codes(archgen.load(spec)) == ["W504"]


def test_stdin_uses_the_pyproject_of_the_current_directory(tmp_path, monkeypatch):
    _project(tmp_path, 'ignore = ["W500", "W504"]\nstrict = true\n')
    monkeypatch.chdir(tmp_path)
    result = run("check", "-", input=TWO_WARNINGS)
    assert result.exit_code == 0, result.output


def test_every_command_and_format_honours_the_settings(tmp_path):
    spec = _project(tmp_path, 'ignore = ["W504"]\n')
    summary = run("summary", str(spec))
    assert summary.exit_code == 0 and "W500" in summary.output and "W504" not in summary.output
    doc = json.loads(run("check", "--format", "json", str(spec)).output)
    assert [d["code"] for d in doc[0]["diagnostics"]] == ["W500"]
    github = run("check", "--format", "github", str(spec)).output
    assert "W500" in github and "W504" not in github
    sarif = json.loads(run("check", "--format", "sarif", str(spec)).output)
    assert [r["ruleId"] for r in sarif["runs"][0]["results"]] == ["W500"]


@pytest.mark.parametrize("table, message", [
    ('ignore = ["E401"]\n', "E401 is an error"),
    ('ignore = "W504"\n', "ignore must be a list"),
    ('strict = "yes"\n', "strict must be true or false"),
    ('ignroe = ["W504"]\n', "unknown key 'ignroe'"),
    ('ignore = [\n', "invalid TOML"),
])
def test_a_bad_tool_archgen_table_is_one_line_and_exit_2(tmp_path, table, message):
    spec = _project(tmp_path, table)
    result = run("check", str(spec))
    assert result.exit_code == 2
    assert message in result.output and "pyproject.toml" in result.output
    assert "Traceback" not in result.output
    with pytest.raises(ConfigError):
        find_settings(spec.parent)


def test_parse_codes_splits_and_dedupes():
    assert parse_codes(["W504,W504", " w500 "], "--ignore") == ("W504", "W500")


@pytest.mark.parametrize("toml", [
    '[tool.archgen]\nignore = ["W504"]\n',
    '[ tool . "archgen" ]\nignore = ["W504"]\n',
    'tool.archgen.ignore = ["W504"]\n',
    '[tool]\narchgen = {ignore = ["W504"]}\n',
    'tool = {archgen = {ignore = ["W504"]}}\n',
])
def test_every_toml_spelling_of_the_table_is_found(tmp_path, toml):
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "archgen"\n\n[project.scripts]\narchgen = "archgen.cli:main"\n\n'
        if toml.startswith("[") else toml)
    if toml.startswith("["):
        with (tmp_path / "pyproject.toml").open("a") as f:
            f.write(toml)
    assert find_settings(tmp_path).ignore == ("W504",)


def test_a_pyproject_that_only_names_archgen_is_passed_over(tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "archgen"\n\n[project.scripts]\narchgen = "archgen.cli:main"\n')
    assert find_settings(tmp_path).ignore == () and find_settings(tmp_path).path is None


def test_inline_comments_count_lines_as_the_parser_does():
    # a form feed and U+2028 inside a comment do not end a line for the parser (nor editors)
    text = ("input [3, 33, 33]\n# a\x0cb\u2028c\nconv2d(16, 3, padding=1)\n"
            "maxpool2d(2)  # archgen: ignore[W500]\nflatten()\nlinear(100)\n")
    assert codes(archgen.parse(text)) == ["W504"]
