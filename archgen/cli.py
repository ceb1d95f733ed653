"""The `archgen` command. `check`, `summary` and `explain` import nothing heavy; the targets
import jinja2, torch, onnx and onnxruntime only when they run."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import click

from . import __version__
from .api import Architecture, load
from .diagnostics import SpecError, render_all
from .extras import MissingExtra
from .fsutil import OutputError
from .suppress import ConfigError


def _load(path: str) -> Architecture:
    """The spec at `path`, or one line and exit 2 for a path that is not a readable UTF-8 file.
    A FIFO or device is refused before it is opened: reading one could block for ever.
    `--input` (see _input_option) replaces its input line."""
    try:
        mode = os.stat(path).st_mode
        if stat.S_ISDIR(mode):
            raise _usage(f"{path} is a directory, not a .cnn spec")
        if not stat.S_ISREG(mode):
            raise _usage(f"{path} is not a regular file (a FIFO, socket or device)")
        return _with_input(load(path))
    except (FileNotFoundError, NotADirectoryError):
        blocker = _file_in(path)
        why = f" ({blocker} is a file, not a directory)" if blocker else ""
        raise _usage(f"no such file: {path}{why}") from None
    except IsADirectoryError:
        raise _usage(f"{path} is a directory, not a .cnn spec") from None
    except UnicodeDecodeError as e:
        raise _usage(f"{path} is not a UTF-8 text file (byte {e.start} is "
                     f"0x{e.object[e.start]:02x})") from None
    except OSError as e:
        raise _usage(f"cannot read {path}: {e.strerror or e}") from None


def _print_diagnostics(arch: Architecture) -> None:
    diags = arch.check()
    if diags:
        click.echo(render_all(diags, {arch.file: arch.source}), err=True)
        click.echo("", err=True)


def _fail_on_errors(arch: Architecture) -> None:
    """Print the diagnostics; exit 1 when there are errors, or when a target (compile, export,
    parity, report --parity) would need a number that depends on symbolic input sizes (E415)."""
    _print_diagnostics(arch)
    if not arch.ok:
        n = len(arch.errors)
        click.echo(f"{arch.file}: {n} error{'s' if n != 1 else ''}; nothing written", err=True)
        sys.exit(1)
    ctx = click.get_current_context(silent=True)
    builds = ctx is not None and (ctx.info_name in ("compile", "export", "parity")
                                  or ctx.params.get("with_parity"))
    if builds:  # the targets need numbers where a symbolic spec may have expressions
        try:
            arch.target_network()
        except SpecError as e:
            click.echo(render_all(e.diagnostics, e.sources), err=True)
            click.echo(f"{arch.file}: nothing written", err=True)
            sys.exit(1)


class _OneLineUsageError(click.UsageError):
    """A usage error as one line on stderr (exit 2): `error: <what and why>`, with a pointer to
    --help only where the command line's shape is wrong (a missing argument, an unknown
    option), not for a bad value or path."""

    def __init__(self, message: str, ctx: click.Context | None, hint: bool):
        super().__init__(message, ctx)
        self.hint = hint

    def show(self, file=None) -> None:
        text = " ".join(self.format_message().split())  # one line, whatever the message
        if self.hint and self.ctx is not None:
            text += f" (see '{self.ctx.command_path} --help')"
        click.echo(f"error: {text}", err=True, file=file)


def _usage(message: str) -> _OneLineUsageError:
    """A path or value problem found by archgen itself: `error: message`, no --help pointer."""
    return _OneLineUsageError(message, click.get_current_context(silent=True), hint=False)


def _one_line(e: click.UsageError, hint: bool | None = None) -> click.UsageError:
    if isinstance(e, (_OneLineUsageError, click.exceptions.NoArgsIsHelpError)):
        return e  # the latter prints the help: `archgen` alone, or a command without arguments
    if hint is None:
        hint = not isinstance(e, click.BadParameter) or isinstance(e, click.MissingParameter)
    return _OneLineUsageError(e.format_message(), e.ctx, hint=hint)


class _Command(click.Command):
    """A usage error raised by a command's body is about a value or a path: no --help pointer."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except click.UsageError as e:
            raise _one_line(e, hint=False) from e.__cause__


_RESERVE = bytearray(4 << 20)  # address space given back when memory runs out (untouched pages)


class _Group(click.Group):
    command_class = _Command

    def make_context(self, info_name, args, parent=None, **extra):
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as e:
            raise _one_line(e) from e.__cause__

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except click.UsageError as e:
            raise _one_line(e) from e.__cause__
        except MissingExtra as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(1)
        except ConfigError as e:  # a bad [tool.archgen] table in a pyproject.toml
            click.echo(f"error: {e}", err=True)
            sys.exit(2)
        except OutputError as e:  # a path that cannot be written: like a missing input, exit 2
            click.echo(f"error: {e}", err=True)
            sys.exit(2)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except MemoryError as e:  # the process's memory (a ulimit, a container) ran out: one
            # line. Room is made first: the reserve goes, and the failed frames, which hold what
            # filled it (a network of up to a million layers) through the traceback, are
            # cleared; without both, click's own clean-up ran with no address space left and
            # CPython died of SIGSEGV in half the runs (a million-layer spec under 70 MB)
            global _RESERVE
            _RESERVE = None
            tb = e.__traceback__
            while tb is not None:
                try:
                    tb.tb_frame.clear()
                except RuntimeError:  # a frame still running (this one)
                    pass
                tb = tb.tb_next
            del tb, e
            click.echo("error: archgen ran out of memory (the process's limit was reached); "
                       "allow it more memory, or check a smaller network", err=True)
            sys.exit(1)
        except Exception as e:  # the classes are imported here: check stays light
            from .budget import MemoryBudgetError
            from .quoting import InternalError
            if isinstance(e, MemoryBudgetError):  # refused before allocating, with the figures
                click.echo(f"error: {e}", err=True)
                sys.exit(1)
            if not isinstance(e, InternalError) and ctx.invoked_subcommand in _TARGETS:
                # the last resort for the commands that build models: a bug, said in one line
                first = (str(e).splitlines() or [""])[0]
                e = InternalError(f"{type(e).__name__}: {first}")
            if isinstance(e, InternalError):
                click.echo(f"error: {e}", err=True)
                sys.exit(1)
            raise


_TARGETS = ("compile", "export", "parity")


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="archgen")
def main() -> None:
    """archgen: write a CNN once as a .cnn spec, check it statically, compile it to PyTorch
    and ONNX, and prove both compute the same thing.

    \b
    archgen check examples/seed_cnn.cnn       shapes, channels, sizes; exit 1 on errors
    archgen check --format github examples/   annotations in GitHub Actions (or sarif)
    archgen fmt examples/seed_cnn.cnn         rewrite in the canonical layout (--check, --diff)
    archgen summary examples/seed_cnn.cnn     per-layer shapes, params, MACs, receptive field
    archgen compile examples/seed_cnn.cnn     PyTorch source in build/
    archgen export examples/seed_cnn.cnn -o seed.onnx
    archgen parity examples/seed_cnn.cnn      ONNX Runtime vs PyTorch on the same weights
    archgen diagram examples/seed_cnn.cnn     the architecture as SVG (or dot, mermaid)
    archgen report examples/seed_cnn.cnn -o seed.html   totals, diagram, table, warnings
    archgen explain E403                      what a diagnostic code means
    """


def _spec_paths(specs: tuple[str, ...]) -> list[str]:
    """SPEC arguments as files: '-' is standard input, a directory every *.cnn below it
    (sorted; hidden folders such as .git and .venv are skipped)."""
    paths: list[str] = []
    for spec in specs:
        if spec != "-" and Path(spec).is_dir():
            found = []
            here = os.path.normpath(spec) == "."  # `check .` names nets/a.cnn, not ./nets/a.cnn
            for folder, dirs, names in os.walk(spec):
                dirs[:] = [d for d in dirs if not d.startswith(".")]
                found += [os.path.normpath(os.path.join(folder, name)) if here else
                          os.path.join(folder, name) for name in names if name.endswith(".cnn")]
            found.sort()
            if not found:
                raise click.UsageError(f"no .cnn files under {spec}")
            paths += found
        else:
            paths.append(spec)
    return paths


def _count(n, unit: float = 1) -> str:
    """A count, or its expression over symbolic sizes."""
    if not isinstance(n, int):
        return f"({n})" + (" / 1e6 M" if unit != 1 else "")
    return f"{n / unit:,.2f} M" if unit != 1 else f"{n:,}"


def _read_stdin() -> Architecture:
    """`check -`: the spec from standard input, named <stdin>, with the settings of the
    pyproject.toml above the current directory."""
    from .suppress import find_settings
    if sys.stdin is None:
        raise click.UsageError("no standard input to read the spec from")
    try:
        data = sys.stdin.buffer.read() if hasattr(sys.stdin, "buffer") else sys.stdin.read()
        text = data if isinstance(data, str) else data.decode("utf-8")
    except UnicodeDecodeError:
        raise click.UsageError("standard input is not UTF-8 text") from None
    arch = Architecture(text.replace("\r\n", "\n"), "<stdin>")
    arch.settings = find_settings(Path.cwd())
    arch.ignore = arch.settings.ignore
    return _with_input(arch)


def _parse_input(ctx, param, value: str | None) -> tuple | None:
    """`--input 3,224,224` or `--input 3,H,W`: positive integers or names (symbolic sizes),
    any number of them; the checker says whether the rank suits the first layer."""
    if value is None:
        return None
    from .limits import MAX_SIZE
    dims = []
    for part in value.split(","):
        part = part.strip()
        if part.isdecimal() and part.isascii():
            n = int(part)
            if not 0 < n <= MAX_SIZE:
                raise _usage(f"--input: {part} is not a size between 1 and {MAX_SIZE:,}")
            dims.append(n)
        elif part.isidentifier() and part.isascii() and part not in (
                "true", "false", "none", "True", "False", "None"):
            dims.append(part)
        else:
            raise _usage(f"--input: {part!r} is neither a positive integer nor a name; "
                         f"write the sizes as C,H,W (e.g. 3,224,224 or 3,H,W)")
    return tuple(dims)


def _input_option(command):
    """`--input C,H,W` on a command: stored for _load, so that the command's body is unchanged.
    On the targets (compile, export, parity) a symbolic input is checked symbolically and then
    built at representative valid sizes (Architecture.for_targets)."""
    def remember(ctx, param, value):
        ctx.meta["archgen.input"] = _parse_input(ctx, param, value)
        return None
    return click.option("--input", "input_", metavar="C,H,W", default=None, expose_value=False,
                        callback=remember, is_eager=True,
                        help="Input size (batch excluded) instead of the spec's input line: "
                             "integers, or names for symbolic sizes (3,H,W).")(command)


def _memory_options(command):
    """`--batch N --dtype D` for the memory figures (summary, check's JSON), stored for _load."""
    def remember(key):
        def store(ctx, param, value):
            ctx.meta[key] = value
        return store
    command = click.option("--dtype", type=click.Choice(["float32", "float16", "bfloat16"]),
                           default="float32", show_default=True, expose_value=False,
                           callback=remember("archgen.dtype"),
                           help="Element type of the memory figures.")(command)
    return click.option("--batch", type=click.IntRange(1, 2**31), default=1, show_default=True,
                        expose_value=False, callback=remember("archgen.batch"),
                        help="Batch size of the memory figures.")(command)


def _with_input(arch: Architecture) -> Architecture:
    ctx = click.get_current_context(silent=True)
    if ctx is not None and "archgen.batch" in ctx.meta:
        arch.batch, arch.dtype = ctx.meta["archgen.batch"], ctx.meta["archgen.dtype"]
    if ctx is not None and ctx.meta.get("archgen.input") is not None:
        arch.input_override = ctx.meta["archgen.input"]
    return arch


def _echo_raw(text: str) -> None:
    click.echo(text, nl=False)


@main.command()
@_input_option
@_memory_options
@click.argument("specs", nargs=-1, required=True, type=click.Path())
@click.option("--format", "fmt", type=click.Choice(["text", "json", "github", "sarif"]),
              default="text", show_default=True,
              help="json: one document; github: workflow commands that annotate the files "
                   "in GitHub Actions; sarif: SARIF 2.1.0 for code scanning.")
@click.option("--strict/--no-strict", default=None,
              help="Treat warnings as errors (exit 1). Default: `strict` of [tool.archgen] in "
                   "pyproject.toml, else off.")
@click.option("--ignore", "ignore", multiple=True, metavar="CODE[,CODE]",
              help="Suppress these warnings; a prefix such as W50 counts. Repeatable; adds to "
                   "`ignore` of [tool.archgen]. Errors cannot be ignored.")
def check(specs: tuple[str, ...], fmt: str, strict: bool | None,
          ignore: tuple[str, ...]) -> None:
    """Check SPECS statically: files, directories (every *.cnn below) or - for standard
    input. Exit 0 when clean (warnings allowed), 1 on any error (or any warning with --strict),
    2 on usage problems such as a missing file.

    \b
    Warnings are suppressed by --ignore, by `ignore = [...]` in [tool.archgen] of the
    nearest pyproject.toml, and by a comment on the line a warning points at:
        linear(4096)  # archgen: ignore[W504]
    """
    from .suppress import ConfigError, parse_codes
    try:
        extra = parse_codes(ignore, "--ignore")
    except ConfigError as e:
        raise click.UsageError(str(e)) from None
    archs = [_read_stdin() if p == "-" else _load(p) for p in _spec_paths(specs)]
    failed = False
    docs = 0  # JSON documents written: each as soon as it is checked, its layers streamed
    results = []
    for i, arch in enumerate(archs):
        archs[i] = None  # each spec's network is freed once it has been reported
        arch.ignore += tuple(c for c in extra if c not in arch.ignore)
        diags = arch.check()
        errors = [d for d in diags if d.is_error]
        warnings = [d for d in diags if not d.is_error]
        strict_here = strict if strict is not None else bool(arch.settings and
                                                              arch.settings.strict)
        failed |= bool(errors) or (strict_here and bool(warnings))
        if fmt == "json":  # the text of json.dumps(docs, indent=2), written as it is made
            from .report import write_json
            _echo_raw(",\n  " if docs else "[\n  ")
            write_json(arch.to_json(lazy=True), _echo_raw, level=1)
            docs += 1
            continue
        if fmt in ("github", "sarif"):
            results.append((arch.file, diags))
            continue
        if diags:
            click.echo(render_all(diags, {arch.file: arch.source}))
            click.echo("")
        if errors:
            click.echo(f"{arch.file}: {len(errors)} error{'s' * (len(errors) != 1)}, "
                       f"{len(warnings)} warning{'s' * (len(warnings) != 1)}")
        else:
            net = arch.network
            shape = lambda s: "[" + ", ".join(map(str, s)) + "]"  # noqa: E731
            outputs = lambda n: ", ".join(  # noqa: E731  (`output NAME, ...`: each, named)
                f"{name} {shape(s)}" for name, s in n.output_shapes) if n.outputs \
                else shape(n.output_shape)
            extra_text = (f" ({len(warnings)} warning{'s' * (len(warnings) != 1)})"
                          if warnings else "")
            click.echo(f"{arch.file}: ok{extra_text}: {net.name} {shape(net.input_shape)} -> "
                       f"{outputs(net)}, {_count(net.total_params)} params, "
                       f"{_count(net.total_macs, 1e6)} MACs")
            if net.constraints:
                click.echo("  valid for " + " and ".join(
                    c.text(name) for name, c in net.constraints.items()))
    if fmt == "json":
        click.echo("\n]" if docs else "[]")
    elif fmt == "github":
        from .ci_formats import github_annotations
        text = github_annotations(results)
        if text:
            click.echo(text)
    elif fmt == "sarif":
        import json

        from .ci_formats import sarif_log
        click.echo(json.dumps(sarif_log(results, version=__version__), indent=2))
    sys.exit(1 if failed else 0)


@main.command()
@_input_option
@_memory_options
@click.argument("spec")
@click.option("--collapse", is_flag=True, help="Show runs of identical blocks once, as 'x N'.")
def summary(spec: str, collapse: bool) -> None:
    """Per-layer table: output shape, parameters, MACs and receptive field, with totals."""
    from .summary import write_summary
    arch = _load(spec)
    _fail_on_errors(arch)
    # arch.summary()'s text, written as it is made (a million rows never exist at once)
    write_summary(arch.network, _echo_raw, collapse=collapse, batch=arch.batch,
                  dtype=arch.dtype)


@main.command(name="fmt")
@click.argument("specs", nargs=-1, required=True, type=click.Path())
@click.option("--check", "check_only", is_flag=True,
              help="Write nothing; name the files that would change and exit 1 if any would.")
@click.option("--diff", "show_diff", is_flag=True,
              help="Write nothing; print a unified diff of the changes and exit 1 if any.")
def fmt(specs: tuple[str, ...], check_only: bool, show_diff: bool) -> None:
    """Rewrite SPECS (files, directories: every *.cnn below, or - for standard input to
    standard output) in archgen's one canonical layout: four-space indentation,
    `name = layer(a, b=c)` spacing, comments where they were, one blank line around each
    top-level block and section. Never changes meaning: the result is parsed again and its
    syntax tree and check JSON must equal the original's, or nothing is written. A spec with
    syntax errors is not formatted (exit 1)."""
    import difflib

    from .fmt import FormatError, SyntaxProblem, format_source
    changed: list[str] = []
    unchanged = 0
    failed = False
    for path in _spec_paths(specs):
        if path == "-":
            source, name, newline = _read_stdin().source, "<stdin>", "\n"
        else:
            source, name = _load(path).source, path
            head = Path(path).read_bytes()[:4096]
            newline = "\r\n" if b"\r\n" in head.split(b"\n", 1)[0] + b"\n" else "\n"
        try:
            result = format_source(source, name)
        except SyntaxProblem as e:
            click.echo(render_all(e.diagnostics, {name: source}), err=True)
            click.echo(f"{name}: not formatted: fix the syntax errors first", err=True)
            failed = True
            continue
        except FormatError as e:
            click.echo(f"error: internal error: {e}", err=True)
            failed = True
            continue
        if result == source:
            unchanged += 1
            if path == "-" and not (check_only or show_diff):
                click.echo(result, nl=False)
            continue
        changed.append(name)
        if show_diff:
            click.echo("".join(difflib.unified_diff(
                source.splitlines(keepends=True), result.splitlines(keepends=True),
                f"{name}\t(original)", f"{name}\t(formatted)")), nl=False)
        if check_only:
            click.echo(f"would reformat {name}")
        if check_only or show_diff:
            continue
        if path == "-":
            click.echo(result, nl=False)
            continue
        from .fsutil import write_atomic
        mode = os.stat(path).st_mode
        write_atomic(path, result.replace("\n", newline))
        os.chmod(path, stat.S_IMODE(mode))
        click.echo(f"reformatted {name}", err=True)
    if check_only or show_diff:
        click.echo(f"{len(changed)} file{'s' * (len(changed) != 1)} would be reformatted, "
                   f"{unchanged} already formatted", err=True)
    elif specs != ("-",):
        click.echo(f"{len(changed)} file{'s' * (len(changed) != 1)} reformatted, {unchanged} "
                   "left unchanged", err=True)
    sys.exit(1 if failed or ((check_only or show_diff) and changed) else 0)


@main.command()
@click.argument("code", required=False)
def explain(code: str | None) -> None:
    """Explain a diagnostic CODE (E403, W500, ...) or a layer (conv2d: its positional and
    keyword-only arguments); without one, list the codes."""
    from .codes import CODES, explain as explain_code
    if code is None:
        for c, (title, _) in CODES.items():
            click.echo(f"{c}  {title}")
        return
    text = explain_code(code)
    if text is None:
        raise click.UsageError(f"unknown code {code!r}; `archgen explain` lists them")
    click.echo(text)


# -- option values: a bad one is one line and exit 2, with the real reason ------------------

def _file_in(path: str | Path) -> Path | None:
    """The first existing non-directory among `path`'s parents, which blocks it."""
    for parent in Path(path).parents:
        if parent.exists() and not parent.is_dir():
            return parent
    return None


def _out_dir(ctx, param, value: str) -> str:
    if not value:
        raise click.BadParameter("an empty path", ctx, param)
    if Path(value).exists() and not Path(value).is_dir():
        raise click.BadParameter(f"{value} is a file, not a directory", ctx, param)
    blocker = _file_in(value)
    if blocker is not None:
        raise click.BadParameter(f"cannot create {value}: {blocker} is a file, not a directory",
                                 ctx, param)
    return value


def _names_directory(value: str) -> bool:
    return value.endswith(("/", os.sep)) or Path(value).is_dir()


def _onnx_output(ctx, param, value: str) -> str:
    """A file, or a directory (existing, or named with a trailing slash) for DIR/<name>.onnx."""
    if not value:
        raise click.BadParameter("an empty path", ctx, param)
    blocker = Path(value) if value.endswith(("/", os.sep)) and Path(value).is_file() else None
    blocker = blocker or _file_in(value)
    if blocker is not None:
        raise click.BadParameter(f"cannot write {value}: {blocker} is a file, not a directory",
                                 ctx, param)
    return value


def _readable_file(what: str):
    """An option callback: a readable regular file (`what` names it in messages); what it holds
    is the reader's business (exit 1)."""
    def callback(ctx, param, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            mode = os.stat(value).st_mode
            if stat.S_ISDIR(mode):
                raise click.BadParameter(f"{value} is a directory, not {what}", ctx, param)
            if not stat.S_ISREG(mode):  # a FIFO or device: reading could block for ever
                raise click.BadParameter(f"{value} is not a regular file", ctx, param)
            with open(value, "rb"):
                pass
        except (FileNotFoundError, NotADirectoryError):
            blocker = _file_in(value)
            why = f" ({blocker} is a file, not a directory)" if blocker else ""
            raise click.BadParameter(f"no such file: {value}{why}", ctx, param) from None
        except OSError as e:
            raise click.BadParameter(f"cannot read {value}: {e.strerror or e}", ctx,
                                     param) from None
        return value
    return callback


_weights_file = _readable_file("a checkpoint")
_onnx_file = _readable_file("an ONNX file")


SEED_LIMIT = 2**64  # numpy and PyTorch seeds are unsigned 64-bit integers


def _seed(ctx, param, value: int) -> int:
    if not 0 <= value < SEED_LIMIT:
        raise click.BadParameter(f"a seed is an integer from 0 to 2**64 - 1; received {value}",
                                 ctx, param)
    return value


def _opset(ctx, param, value: int | None) -> int | None:
    """The range of this installation: archgen's oldest opset to the newest its onnx defines."""
    if value is None:
        return None
    from .emit_onnx import MIN_OPSET
    from .extras import require
    onnx = require("onnx", "onnx", "ONNX export")
    newest = onnx.defs.onnx_opset_version()
    if value < MIN_OPSET:
        raise click.BadParameter(
            f"{value} is older than opset {MIN_OPSET}, the oldest archgen's ONNX lowerings are "
            f"written and tested for (this installation exports opsets {MIN_OPSET} to {newest})",
            ctx, param)
    if value > newest:
        raise click.BadParameter(
            f"{value} is newer than opset {newest}, the newest the installed onnx "
            f"{onnx.__version__} defines (this installation exports opsets {MIN_OPSET} to "
            f"{newest})", ctx, param)
    return value


def _batch(ctx, param, value: int) -> int:
    from .parity import check_batch
    try:
        return check_batch(value)
    except ValueError as e:
        raise click.BadParameter(str(e), ctx, param) from None


def _tolerance(ctx, param, value: float | None) -> float | None:
    from .parity import check_tolerance
    if value is None:  # not given: parity's float64 verdict
        return None
    try:
        return check_tolerance(param.name, value)
    except ValueError as e:
        raise click.BadParameter(str(e), ctx, param) from None


_ALLOW_NONFINITE = click.option(
    "--allow-nonfinite", is_flag=True,
    help="Accept NaN and infinite values in --weights (refused by default).")


_FOLD = click.option(
    "--fold/--no-fold", default=True, show_default=True,
    help="Fold each eval-mode batchnorm into the conv2d before it and leave out Identity "
         "nodes; --no-fold keeps one node per layer.")
_QUIET = click.option("-q", "--quiet", is_flag=True,
                      help="No progress line on stderr (shown only on a terminal).")


_DYNAMIC_SIZE = click.option(
    "--dynamic-size/--static-size", default=None,
    help="Leave the spatial sizes symbolic (H and W, or the spec's own names) where the network "
         "takes other sizes (checked at several; refused otherwise). Default: dynamic when "
         "the spec's input sizes are symbolic, static otherwise.")


def _dynamic_size(net, flag: bool | None) -> bool:
    if flag is None:
        return bool(net.symbols)
    if not flag and net.symbols:
        raise _usage(f"--static-size needs a concrete input, but {net.name}'s is "
                     f"{list(map(str, net.input_shape))}: give --input C,H,W with numbers")
    return flag


def _print_notes(notes: list[str]) -> None:
    for note in notes:
        click.echo(f"note: {note}", err=True)


@main.command(name="compile")
@_input_option
@click.argument("specs", nargs=-1, required=True)
@click.option("-o", "--out-dir", default="build", show_default=True, callback=_out_dir,
              help="Directory for the generated files.")
@click.option("--target", type=click.Choice(["torch", "onnx", "all"]), default="torch",
              show_default=True)
@click.option("--print", "to_stdout", is_flag=True,
              help="Write to stdout instead of files: the PyTorch source, or the ONNX graph in "
                   "ONNX's text form (onnx.printer).")
@click.option("--name", "stem", default=None, metavar="STEM",
              help="Output file stem (default: the spec's, resnet18.cnn -> resnet18.py).")
def compile_(specs: tuple[str, ...], out_dir: str, target: str, to_stdout: bool,
             stem: str | None) -> None:
    """Compile SPECS to a standalone PyTorch module (DIR/<spec stem>.py) and/or an ONNX graph
    (DIR/<spec stem>.onnx). A spec with errors writes nothing, and so do two outputs with the
    same path."""
    from .emit_torch import check_file_stem, module_filename, render_torch
    if stem is not None and check_file_stem(stem):
        raise _usage(f"--name: {check_file_stem(stem)}")
    archs = [_load(p) for p in specs]
    for arch in archs:  # check all first: nothing is written if any spec is broken
        _fail_on_errors(arch)
    from .fsutil import write_atomic
    outputs: list[tuple[Path | None, str | bytes]] = []  # rendered in full before any write
    sources: dict[Path, str] = {}  # output -> the spec that makes it
    for arch in archs:
        base = stem or Path(module_filename(arch.network)).stem
        for suffix in {"torch": [".py"], "onnx": [".onnx"], "all": [".py", ".onnx"]}[target]:
            path = Path(out_dir) / f"{base}{suffix}"
            if not to_stdout and path in sources:
                raise _usage(f"{sources[path]} and {arch.file} would both write {path}; "
                             f"compile them separately with --name or -o; nothing written")
            sources[path] = arch.file
    try:
        for arch in archs:
            net = arch.network
            base = stem or Path(module_filename(net)).stem
            if target in ("torch", "all"):
                import shlex

                source = render_torch(net, command=shlex.join(  # the exact command, quoted
                    ["archgen", "compile", arch.file, *(["--name", stem] if stem else []),
                     *(["--print"] if to_stdout else ["-o", out_dir])]))
                outputs.append((None if to_stdout else Path(out_dir) / f"{base}.py", source))
            if target in ("onnx", "all"):
                from .emit_onnx import build_onnx
                model = build_onnx(net)
                if to_stdout:
                    from onnx import printer
                    outputs.append((None, printer.to_text(model) + "\n"))
                else:
                    outputs.append((Path(out_dir) / f"{base}.onnx", model.SerializeToString()))
    except SpecError as e:
        click.echo(render_all(e.diagnostics, e.sources), err=True)
        click.echo("nothing written", err=True)
        sys.exit(1)
    for path, data in outputs:
        if path is None:
            click.echo(data, nl=False)
        else:
            changed = write_atomic(path, data)
            click.echo(f"{'wrote' if changed else 'unchanged'} {path}", err=True)


@main.command()
@_input_option
@click.argument("spec")
@click.option("-o", "--output", required=True, callback=_onnx_output,
              help="The .onnx file to write, or a directory (an existing one, or DIR/) for "
                   "DIR/<network>.onnx.")
@click.option("--weights", callback=_weights_file,
              help="A state_dict of the generated module, saved with torch.save, or a "
                   ".safetensors file (read without PyTorch).")
@_ALLOW_NONFINITE
@click.option("--opset", type=int, default=None, callback=_opset,
              help="ONNX opset (default: archgen's), from archgen's oldest to the newest the "
                   "installed onnx defines.")
@click.option("--dynamic-batch/--static-batch", default=True, show_default=True,
              help="Leave the batch dimension symbolic (N) or fix it to 1.")
@click.option("--seed", type=int, default=0, show_default=True, callback=_seed,
              help="Seed of the initial weights when no checkpoint is given.")
@_DYNAMIC_SIZE
@_FOLD
@_QUIET
def export(spec: str, output: str, weights: str | None, allow_nonfinite: bool,
           opset: int | None, dynamic_batch: bool, seed: int, dynamic_size: bool | None,
           fold: bool, quiet: bool) -> None:
    """Export SPEC to an ONNX graph, checked by onnx.checker and strict shape inference.
    With --weights (a torch.save state_dict or a safetensors file) PyTorch is not needed: the
    checkpoint is read with numpy and its tensors are written straight into the file; seeded
    weights (no --weights) are calibrated by running the PyTorch module. Exit 0 when written
    (or unchanged), 1 on errors in the spec or the checkpoint, 2 on a bad path or option
    value."""
    from .progress import Progress
    progress = Progress(("check", "weights", "render", "shape inference", "write"),
                        enabled=False if quiet else None)
    progress.stage("check")
    arch = _load(spec)
    _fail_on_errors(arch)
    from .emit_onnx import DynamicSizeError, WeightsError, build_dynamic, build_graph, load_weights
    net = arch.network
    dynamic = _dynamic_size(net, dynamic_size)
    if _names_directory(output):
        from .emit_torch import module_filename
        output = str(Path(output) / f"{Path(module_filename(net)).stem}.onnx")
    notes: list[str] = []
    params = net.total_params
    try:
        progress.stage("weights")
        state = (load_weights(net, weights, allow_nonfinite=allow_nonfinite, notes=notes,
                              reader="numpy") if weights else None)
        if dynamic:
            d = build_dynamic(net, opset=opset, dynamic_batch=dynamic_batch, state_dict=state,
                              seed=seed, fold=fold, checked=True, progress=progress)
            built, params = d.built, d.sizes[0].total_params
        else:
            built = build_graph(net, opset=opset, dynamic_batch=dynamic_batch, state_dict=state,
                                seed=seed, fold=fold, checked=True, progress=progress)
        progress.stage("write")
        changed = built.save(output)
    except DynamicSizeError as e:
        progress.done()
        click.echo(f"error: {e}; nothing written", err=True)
        sys.exit(1)
    except WeightsError as e:
        progress.done()
        _print_notes(notes)
        click.echo(f"error: {e}", err=True)
        click.echo("nothing written", err=True)
        sys.exit(1)
    except ValueError as e:  # larger than protobuf's 2 GiB
        progress.done()
        click.echo(f"error: {e}; nothing written", err=True)
        sys.exit(1)
    finally:
        progress.done()
    _print_notes(notes)
    sizes = f", dynamic {' and '.join(d.symbols)}" if dynamic else ""
    click.echo(f"{'wrote' if changed else 'unchanged'} {output} (opset "
               f"{built.model.opset_import[0].version}, {params:,} params{sizes})", err=True)


@main.command()
@_input_option
@click.argument("spec")
@click.option("--weights", callback=_weights_file,
              help="A state_dict of the generated module, saved with torch.save, or a "
                   ".safetensors file (read without PyTorch).")
@_ALLOW_NONFINITE
@click.option("--seed", type=int, default=0, show_default=True, callback=_seed,
              help="Seed of the inputs, and of the weights when no checkpoint is given.")
@click.option("--batch", type=int, default=2, show_default=True, callback=_batch,
              help="Samples per input, at least 1.")
@click.option("--seeds", type=click.IntRange(min=1), default=1, show_default=True,
              help="Run N seeds from --seed on, each with its own input and (without "
                   "--weights) its own weights; the verdict is the worst.")
@click.option("--onnx", "onnx_file", callback=_onnx_file, metavar="FILE",
              help="Check this ONNX file (made elsewhere) instead of archgen's export. Its "
                   "weights are read from initializers named like the state_dict unless "
                   "--weights is given.")
@click.option("--rtol", type=float, default=None, callback=_tolerance,
              help="Absolute mode: |onnx - torch| <= atol + rtol * max|torch|, finite, at "
                   "least 0. Giving --rtol or --atol selects it (defaults 1e-4 and 1e-5); "
                   "otherwise ONNX is judged against float64 PyTorch.")
@click.option("--atol", type=float, default=None, callback=_tolerance,
              help="Absolute mode's absolute tolerance (see --rtol).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True)
@_DYNAMIC_SIZE
@_FOLD
@_QUIET
def parity(spec: str, weights: str | None, allow_nonfinite: bool, seed: int, batch: int,
           seeds: int, onnx_file: str | None, rtol: float | None, atol: float | None,
           fmt: str, dynamic_size: bool | None, fold: bool, quiet: bool) -> None:
    """Run an ONNX graph in ONNX Runtime and the generated PyTorch module on the same weights
    and inputs, with float64 PyTorch as the ground truth: ONNX passes when its error is within
    8x float32 PyTorch's own, plus 1e-6 of the outputs' magnitude. With --dynamic-size the
    graph with symbolic H and W is run at two valid sizes, one report each (JSON: a list).
    Exit 0 when it passes, 1 otherwise, naming the first layer that diverges (2 on a bad path
    or option value)."""
    from .progress import Progress
    progress = Progress(("check", "weights", "render", "shape inference", "session", "compare"),
                        enabled=False if quiet else None)
    progress.stage("check")
    arch = _load(spec)
    _fail_on_errors(arch)
    from .budget import check_memory
    from .emit_onnx import DynamicSizeError, WeightsError, build_dynamic, load_weights
    from .parity import OnnxFileError, run_parity
    net = arch.network
    dynamic = _dynamic_size(net, dynamic_size)
    if onnx_file is not None and net.symbols:
        raise _usage(f"--onnx compares at one input size, but {net.name}'s is "
                     f"{list(map(str, net.input_shape))}: give --input C,H,W with numbers")
    # MemoryBudgetError before anything is allocated
    check_memory(net.sample if net.symbols and net.sample is not None else net, "parity", batch)
    notes: list[str] = []
    try:
        progress.stage("weights")
        state = (load_weights(net, weights, allow_nonfinite=allow_nonfinite, notes=notes,
                              reader="numpy") if weights else None)
    except WeightsError as e:
        progress.done()
        click.echo(f"error: {e}", err=True)
        sys.exit(1)
    progress.done()
    _print_notes(notes)
    try:
        if dynamic and onnx_file is None:
            reports = _parity_dynamic(net, build_dynamic, run_parity, state, seed, batch, rtol,
                                      atol, seeds, fold, progress)
        else:
            reports = [run_parity(net, state_dict=state, seed=seed, batch=batch, rtol=rtol,
                                  atol=atol, seeds=seeds, onnx_file=onnx_file, fold=fold,
                                  progress=progress)]
    except (OnnxFileError, WeightsError, DynamicSizeError) as e:
        progress.done()
        click.echo(f"error: {e}", err=True)
        sys.exit(1)
    finally:
        progress.done()
    if fmt == "json":
        import json

        docs = [r.to_json() for r in reports]
        click.echo(json.dumps(docs if dynamic and onnx_file is None else docs[0], indent=2))
    else:
        click.echo("\n".join(r.to_text() for r in reports))
    sys.exit(0 if all(r.ok for r in reports) else 1)


def _parity_dynamic(net, build_dynamic, run_parity, state, seed, batch, rtol, atol, seeds,
                    fold, progress) -> list:
    """The graph with symbolic sizes against the module at the spec's (or a sample) size and
    at one about half as large again, with the same weights."""
    import onnx

    from .emit_onnx import _attach
    d = build_dynamic(net, state_dict=state, seed=seed, fold=fold, progress=progress)
    model = d.built.model
    _attach(onnx, model, d.built.weights)
    reports = []
    for concrete in (d.sizes[0], d.sizes[-1]):
        report = run_parity(concrete, state_dict=d.state, seed=seed, batch=batch, rtol=rtol,
                            atol=atol, seeds=seeds, onnx_file=model, progress=progress)
        report.onnx_file = None
        report.weights = "given" if state is not None else "seeded"
        report.notes.append(f"dynamic {' and '.join(d.symbols)}, at the input "
                            f"{list(concrete.input_shape)}")
        reports.append(report)
    return reports


@main.command()
@_input_option
@click.argument("spec")
@click.option("-o", "--output", default="-", show_default=True,
              help="File to write; '-' writes to stdout.")
@click.option("--format", "fmt", type=click.Choice(["svg", "dot", "mermaid"]), default=None,
              help="Default: from the output's suffix (.svg, .dot/.gv, .mmd), else svg.")
@click.option("--expand", is_flag=True, help="Draw every copy of a repeat, not one marked x N.")
@click.option("--to-scale", is_flag=True,
              help="Draw each feature map as a cuboid to scale (SVG only).")
def diagram(spec: str, output: str, fmt: str | None, expand: bool, to_scale: bool) -> None:
    """Draw SPEC's architecture: boxes with op, arguments and output shape, branches side by
    side, blocks outlined, colours by layer family. Needs no graph library."""
    arch = _load(spec)
    _fail_on_errors(arch)
    from .diagram import SUFFIXES, render_diagram, write_output
    fmt = fmt or SUFFIXES.get(Path(output).suffix.lower(), "svg")
    if to_scale and fmt != "svg":
        raise click.UsageError(f"--to-scale draws SVG only, not {fmt}")
    text = render_diagram(arch.network, fmt, expand=expand, to_scale=to_scale)
    write_output(output, text)


@main.command()
@_input_option
@click.argument("spec")
@click.option("-o", "--output", required=True, help="Path of the .html file to write.")
@click.option("--parity", "with_parity", is_flag=True,
              help="Also run the ONNX Runtime vs PyTorch parity check (needs archgen[onnx]).")
@click.option("--expand", is_flag=True, help="Draw every copy of a repeat in the diagram.")
def report(spec: str, output: str, with_parity: bool, expand: bool) -> None:
    """Write one self-contained HTML page: totals, the diagram, a sortable per-layer table,
    the warnings and, with --parity, the parity verdict (exit 1 if it fails)."""
    arch = _load(spec)
    _fail_on_errors(arch)
    from .diagram import write_output
    from .html_report import render_report, run_parity_verdict
    verdict = run_parity_verdict(arch.target_network()) if with_parity else None
    write_output(output, render_report(arch.network, source=arch.source,
                                       diagnostics=arch.check(), parity=verdict, expand=expand))
    sys.exit(0 if verdict is None or verdict.ok else 1)


# Written without allocating: when memory ran out outside the commands' own handler (click's
# argument parsing, the handler's echo itself), nothing else may be left to print with.
_OUT_OF_MEMORY = (b"error: archgen ran out of memory (the process's limit was reached); "
                  b"allow it more memory, or check a smaller network\n")


def run(**kwargs) -> None:
    """The `archgen` entry point: `main`, with a MemoryError that escapes it (it can arise
    anywhere under a tight memory cap) ending as one line and exit 1, never a traceback."""
    try:
        main(**kwargs)
    except MemoryError:
        os.write(2, _OUT_OF_MEMORY)
        os._exit(1)


if __name__ == "__main__":
    run()
