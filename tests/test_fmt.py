"""archgen fmt: one canonical layout that is idempotent and never changes meaning (the syntax
tree and the check JSON, positions aside), on every example, on messy hand-written specs and on
seeded random re-spacings of the examples."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

import archgen.fmt as fmt
from archgen.cli import main
from archgen.fmt import FormatError, SyntaxProblem, format_source, meaning

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.cnn"))
ERROR_EXAMPLES = sorted((ROOT / "examples" / "errors").glob("*.cnn"))


def run(*args, input=None):
    return CliRunner().invoke(main, list(args), input=input)


def _parses(path: Path) -> bool:
    return not fmt.syntax_errors(path.read_text(), str(path))


@pytest.mark.parametrize("path", EXAMPLES + [p for p in ERROR_EXAMPLES if _parses(p)],
                         ids=lambda p: p.name)
def test_every_example_formats_idempotently_with_the_same_meaning(path):
    source = path.read_text()
    once = format_source(source, str(path))
    assert format_source(once, str(path)) == once
    assert meaning(once, str(path)) == meaning(source, str(path))
    assert all(line == line.rstrip() for line in once.splitlines())
    assert all((len(ln) - len(ln.lstrip(" "))) % 4 == 0 for ln in once.splitlines())
    # every comment survives, in order
    assert _comments(once) == [_canonical_comment(c) for c in _comments(source)]


def _comments(text: str) -> list[str]:
    from archgen.suppress import comment_column
    out = []
    for line in text.splitlines():
        col = comment_column(line)
        if col is not None:
            out.append(line[col:].rstrip())
    return out


def _canonical_comment(c: str) -> str:
    return "# " + c[1:] if len(c) > 1 and c[1] not in " !:#" else c


MESSY = [
    (
        """#header comment
network   Messy
input(3,32,32)


block  conv_bn( out ,k=3,s = 1 ):   # a block
  conv2d( out,k,stride=s,padding=k//2 ,bias=false,)
  batchnorm2d()

  relu( )
backbone :
    conv_bn(16)
    #   commented out
    repeat 2 first( s=2 ):conv_bn(32)
    add:

           branch:
                conv_bn(32)
           identity()
head:
  adaptive_avgpool2d((1,1))
  flatten()
  linear(10)   \n\n\n""",
        """# header comment
network Messy
input [3, 32, 32]

block conv_bn(out, k=3, s=1):  # a block
    conv2d(out, k, stride=s, padding=k // 2, bias=false)
    batchnorm2d()

    relu()

backbone:
    conv_bn(16)
    #   commented out
    repeat 2 first(s=2): conv_bn(32)
    add:
        branch:
            conv_bn(32)
        identity()

head:
    adaptive_avgpool2d((1, 1))
    flatten()
    linear(10)
""",
    ),
    (
        """input [3, 8, 8]
block b(a, c=(3,), d = -1):
    if a==1 and not(c<2)or -a>=-d:
        conv2d(a*2+1 , 3, padding=(1,1,),)
    elif(a<2) :
        conv2d(-(-a) , 3)
    else :
        identity()
b( 4 )
""",
        """input [3, 8, 8]

block b(a, c=(3,), d=-1):
    if a == 1 and not (c < 2) or -a >= -d:
        conv2d(a * 2 + 1, 3, padding=(1, 1))
    elif (a < 2):
        conv2d(-(-a), 3)
    else:
        identity()

b(4)
""",
    ),
    (  # comments lead into a section: the blank line goes above them; a comment at the end
        # of a body stays in it
        """input [3, 8, 8]
stem:
        conv2d(8, 3)
        # the last line of the stem
# the head follows
#: pragma-like
head:
        flatten()
        linear(10)#done
#!keep
""",
        """input [3, 8, 8]

stem:
    conv2d(8, 3)
    # the last line of the stem

# the head follows
#: pragma-like
head:
    flatten()
    linear(10)  # done

#!keep
""",
    ),
    (  # a trailing comma makes a 1-tuple: it stays; strings and numbers are kept as written
        "input [3,8,8,]\nconv2d(4, (3,), padding_mode='zeros', padding=0.0e0)\n",
        "input [3, 8, 8]\nconv2d(4, (3,), padding_mode='zeros', padding=0.0e0)\n",
    ),
    # a group name that is meant (quoted so that it is not read as a typo of add:)
    ('input [3,8,8]\n"ad" :\n  conv2d(4,3)\n', 'input [3, 8, 8]\n\n"ad":\n    conv2d(4, 3)\n'),
    ("\n\n# only a comment\n\n\n", "# only a comment\n"),
    # lines end where the parser ends them: not at a form feed or U+2028 inside a comment
    ("input [3,8,8]\n# a\x0cb\u2028c\nconv2d(4,3)\n",
     "input [3, 8, 8]\n# a\x0cb\u2028c\nconv2d(4, 3)\n"),
    ("", ""),
]


@pytest.mark.parametrize("messy, canonical", MESSY)
def test_messy_specs_reach_the_canonical_layout(messy, canonical):
    assert format_source(messy) == canonical
    assert format_source(canonical) == canonical


def test_a_spec_with_syntax_errors_is_not_formatted(tmp_path):
    with pytest.raises(SyntaxProblem) as e:
        format_source("input [3, 8, 8]\nconv2d(4 3)\n")
    assert e.value.diagnostics[0].code == "E100"
    spec = tmp_path / "bad.cnn"
    spec.write_text("input [3,8,8]\nconv2d(4 3)\n")
    result = run("fmt", str(spec))
    assert result.exit_code == 1
    assert "E100" in result.output and "not formatted" in result.output
    assert spec.read_text() == "input [3,8,8]\nconv2d(4 3)\n"


def test_a_change_of_meaning_is_refused_and_nothing_is_written(tmp_path, monkeypatch):
    spec = tmp_path / "net.cnn"
    spec.write_text("input [3,8,8]\nconv2d(4, 3)\nconv2d(8, 3)\n")
    # a layout bug that drops a line must be caught by the meaning check
    monkeypatch.setattr(fmt, "layout", lambda s: "input [3, 8, 8]\nconv2d(4, 3)\n")
    with pytest.raises(FormatError):
        format_source(spec.read_text())
    result = run("fmt", str(spec))
    assert result.exit_code == 1 and "internal error" in result.output
    assert spec.read_text() == "input [3,8,8]\nconv2d(4, 3)\nconv2d(8, 3)\n"


def test_unused_blocks_count_for_the_meaning_too(monkeypatch):
    # an unused block is not in the check JSON; the syntax tree comparison still sees it
    source = "input [3, 8, 8]\n\nblock b(c):\n    conv2d(c, 3)\n\nconv2d(4, 3)\n"
    monkeypatch.setattr(fmt, "layout", lambda s: s.replace("conv2d(c, 3)", "conv2d(c, 5)"))
    with pytest.raises(FormatError):
        format_source(source)


def test_fmt_check_names_the_files_and_exits_1(tmp_path):
    messy = tmp_path / "messy.cnn"
    messy.write_text("input [3,8,8]\nconv2d( 4,3 )\n")
    clean = tmp_path / "clean.cnn"
    clean.write_text("input [3, 8, 8]\nconv2d(4, 3)\n")
    result = run("fmt", "--check", str(messy), str(clean))
    assert result.exit_code == 1
    assert f"would reformat {messy}" in result.output and str(clean) + "\n" not in result.output
    assert messy.read_text() == "input [3,8,8]\nconv2d( 4,3 )\n"  # --check writes nothing
    assert run("fmt", "--check", str(clean)).exit_code == 0


def test_fmt_diff_prints_a_unified_diff_and_writes_nothing(tmp_path):
    messy = tmp_path / "messy.cnn"
    messy.write_text("input [3,8,8]\nconv2d( 4,3 )\n")
    result = run("fmt", "--diff", str(messy))
    assert result.exit_code == 1
    assert "-input [3,8,8]\n-conv2d( 4,3 )\n+input [3, 8, 8]\n+conv2d(4, 3)\n" in result.output
    assert "@@" in result.output
    assert messy.read_text() == "input [3,8,8]\nconv2d( 4,3 )\n"


def test_fmt_rewrites_files_and_directories_keeping_crlf(tmp_path):
    (tmp_path / "sub").mkdir()
    a = tmp_path / "sub" / "a.cnn"
    a.write_bytes(b"input [3,8,8]\r\nconv2d( 4,3 )\r\n")
    b = tmp_path / "b.cnn"
    b.write_text("input [3, 8, 8]\nconv2d(4, 3)\n")
    result = run("fmt", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert a.read_bytes() == b"input [3, 8, 8]\r\nconv2d(4, 3)\r\n"
    assert "1 file reformatted, 1 left unchanged" in result.output
    assert run("fmt", "--check", str(tmp_path)).exit_code == 0


def test_fmt_stdin_to_stdout():
    result = run("fmt", "-", input="input [3,8,8]\nconv2d( 4,3 )\n")
    assert result.exit_code == 0
    assert result.output == "input [3, 8, 8]\nconv2d(4, 3)\n"


# ---------------------------------------------------------------------------------------------
# Fuzzing: seeded random re-spacings of the examples reach the same canonical text


def _glue_is_safe(left: tuple[str, str], right: tuple[str, str]) -> bool:
    """Whether two tokens may touch without becoming another token."""
    if left[0] != "op" and right[0] != "op":
        return False  # conv2d 16 -> conv2d16, 1 e5 -> 1e5
    return left[1] + right[1] not in ("//", "==", "!=", "<=", ">=")


def _respace(source: str, rng: random.Random, comments: bool) -> str:
    unit = rng.choice([1, 2, 3, 4, 8])
    lines = [fmt._scan(text, n) for n, text in enumerate(source.splitlines(), start=1)]
    fmt._depths(lines)
    out = []
    for ln in lines:
        if ln.blank:
            out.extend([" " * rng.randrange(3)] * rng.randrange(1, 4))
            continue
        indent = " " * (unit * ln.depth)
        if not ln.tokens:  # comment lines move only when comments are being fuzzed
            column = rng.randrange(unit * ln.depth + 1) if comments else unit * ln.depth
            out.append(" " * column + ln.comment)
            continue
        tokens = ln.tokens
        text = tokens[0][1]
        for left, right in zip(tokens, tokens[1:]):
            seps = [" ", "  ", "\t", " \t "] + (["", "", ""] if _glue_is_safe(left, right)
                                                 else [])
            text += rng.choice(seps) + right[1]
        if ln.comment is not None:
            text += rng.choice([" ", "   ", "\t"]) + ln.comment
        elif comments and rng.random() < 0.2:
            text += " #fuzz trailing"
        out.append(indent + text + rng.choice(["", " ", "\t"]))
        if comments and rng.random() < 0.15:
            out.append(" " * rng.randrange(unit * (ln.depth + 1) + 1) + "# fuzz line")
    return "\n".join(out) + rng.choice(["", "\n", "\n\n  \n"])


def _fuzz_cases():
    return [pytest.param(path, seed, id=f"{path.stem}-{seed}")
            for path in EXAMPLES for seed in range(4)]


@pytest.mark.parametrize("path, seed", _fuzz_cases())
def test_fuzzed_spacing_reaches_the_same_canonical_text(path, seed):
    source = path.read_text()
    canonical = format_source(source, str(path))
    rng = random.Random(f"{path.name}-{seed}")
    messy = _respace(source, rng, comments=False)
    assert messy != source
    assert format_source(messy, str(path)) == canonical


@pytest.mark.parametrize("path, seed", _fuzz_cases())
def test_fuzzed_comments_keep_meaning_and_order(path, seed):
    source = path.read_text()
    rng = random.Random(f"comments-{path.name}-{seed}")
    messy = _respace(source, rng, comments=True)
    once = format_source(messy, str(path))  # raises if the meaning changed
    assert format_source(once, str(path)) == once
    assert meaning(once, str(path)) == meaning(source, str(path))
    assert _comments(once) == [_canonical_comment(c) for c in _comments(messy)]
    # a trailing comment stays on the statement it followed
    for line in messy.splitlines():
        if line.rstrip().endswith("#fuzz trailing"):
            code = re.sub(r"\s+", "", line.split("#fuzz trailing")[0])
            assert any(re.sub(r"\s+", "", ln.split("# fuzz trailing")[0]) == code
                       for ln in once.splitlines() if ln.endswith("# fuzz trailing"))
