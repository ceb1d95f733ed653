"""The `archgen` command. `check`, `summary` and `explain` import nothing heavy; the targets
import jinja2, torch, onnx and onnxruntime only when they run."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from . import __version__
from .api import Architecture, load
from .diagnostics import SpecError, render_all
from .extras import MissingExtra


def _load(path: str) -> Architecture:
    try:
        return load(path)
    except FileNotFoundError:
        raise click.UsageError(f"no such file: {path}") from None
    except IsADirectoryError:
        raise click.UsageError(f"{path} is a directory, not a .cnn spec") from None
    except UnicodeDecodeError:
        raise click.UsageError(f"{path} is not a UTF-8 text file") from None


def _print_diagnostics(arch: Architecture) -> None:
    diags = arch.check()
    if diags:
        click.echo(render_all(diags, {arch.file: arch.source}), err=True)
        click.echo("", err=True)


def _fail_on_errors(arch: Architecture) -> None:
    """Print the diagnostics; exit 1 when there are errors."""
    _print_diagnostics(arch)
    if not arch.ok:
        n = len(arch.errors)
        click.echo(f"{arch.file}: {n} error{'s' if n != 1 else ''}; nothing written", err=True)
        sys.exit(1)


class _Group(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except MissingExtra as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(1)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="archgen")
def main() -> None:
    """archgen: write a CNN once as a .cnn spec, check it statically, compile it to PyTorch
    and ONNX, and prove both compute the same thing.

    \b
    archgen check examples/seed_cnn.cnn       shapes, channels, sizes; exit 1 on errors
    archgen summary examples/seed_cnn.cnn     per-layer shapes, params, MACs, receptive field
    archgen compile examples/seed_cnn.cnn     PyTorch source in build/
    archgen export examples/seed_cnn.cnn -o seed.onnx
    archgen parity examples/seed_cnn.cnn      ONNX Runtime vs PyTorch on the same weights
    archgen explain E403                      what a diagnostic code means
    """


@main.command()
@click.argument("specs", nargs=-1, required=True)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True)
@click.option("--strict", is_flag=True, help="Treat warnings as errors (exit 1).")
def check(specs: tuple[str, ...], fmt: str, strict: bool) -> None:
    """Check SPECS statically. Exit 0 when clean (warnings allowed), 1 on any error (or any
    warning with --strict), 2 on usage problems such as a missing file."""
    archs = [_load(p) for p in specs]
    failed = False
    docs = []
    for arch in archs:
        diags = arch.check()
        errors = [d for d in diags if d.is_error]
        warnings = [d for d in diags if not d.is_error]
        failed |= bool(errors) or (strict and bool(warnings))
        if fmt == "json":
            docs.append(arch.to_json())
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
            extra = f" ({len(warnings)} warning{'s' * (len(warnings) != 1)})" if warnings else ""
            click.echo(f"{arch.file}: ok{extra}: {net.name} {shape(net.input_shape)} -> "
                       f"{shape(net.output_shape)}, {net.total_params:,} params, "
                       f"{net.total_macs / 1e6:,.2f} M MACs")
    if fmt == "json":
        click.echo(json.dumps(docs, indent=2))
    sys.exit(1 if failed else 0)


@main.command()
@click.argument("spec")
@click.option("--collapse", is_flag=True, help="Show runs of identical blocks once, as 'x N'.")
def summary(spec: str, collapse: bool) -> None:
    """Per-layer table: output shape, parameters, MACs and receptive field, with totals."""
    arch = _load(spec)
    _fail_on_errors(arch)
    click.echo(arch.summary(collapse=collapse))


@main.command()
@click.argument("code", required=False)
def explain(code: str | None) -> None:
    """Explain a diagnostic CODE (E403, W500, ...); without one, list them all."""
    from .codes import CODES, explain as explain_code
    if code is None:
        for c, (title, _) in CODES.items():
            click.echo(f"{c}  {title}")
        return
    text = explain_code(code)
    if text is None:
        raise click.UsageError(f"unknown code {code!r}; `archgen explain` lists them")
    click.echo(text)


@main.command(name="compile")
@click.argument("specs", nargs=-1, required=True)
@click.option("-o", "--out-dir", default="build", show_default=True,
              help="Directory for the generated files.")
@click.option("--target", type=click.Choice(["torch", "onnx", "all"]), default="torch",
              show_default=True)
@click.option("--print", "to_stdout", is_flag=True,
              help="Write the PyTorch source to stdout instead of a file.")
def compile_(specs: tuple[str, ...], out_dir: str, target: str, to_stdout: bool) -> None:
    """Compile SPECS to a standalone PyTorch module (DIR/<network>.py) and/or an ONNX graph
    (DIR/<network>.onnx). A spec with errors writes nothing."""
    archs = [_load(p) for p in specs]
    for arch in archs:  # check all first: nothing is written if any spec is broken
        _fail_on_errors(arch)
    from .emit_torch import module_filename, render_torch
    from .fsutil import write_atomic
    outputs: list[tuple[Path | None, str | bytes]] = []  # rendered in full before any write
    try:
        for arch in archs:
            net = arch.network
            stem = Path(module_filename(net)).stem
            if target in ("torch", "all"):
                source = render_torch(net, command=f"archgen compile {arch.file}")
                outputs.append((None if to_stdout else Path(out_dir) / f"{stem}.py", source))
            if target in ("onnx", "all"):
                from .emit_onnx import build_onnx
                outputs.append((Path(out_dir) / f"{stem}.onnx",
                                build_onnx(net).SerializeToString()))
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
@click.argument("spec")
@click.option("-o", "--output", required=True, help="Path of the .onnx file to write.")
@click.option("--weights", help="A state_dict of the generated module, saved with torch.save.")
@click.option("--opset", type=int, default=None, help="ONNX opset (default: archgen's).")
@click.option("--dynamic-batch/--static-batch", default=True, show_default=True,
              help="Leave the batch dimension symbolic (N) or fix it to 1.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the initial weights when no checkpoint is given.")
def export(spec: str, output: str, weights: str | None, opset: int | None,
           dynamic_batch: bool, seed: int) -> None:
    """Export SPEC to an ONNX graph, checked by onnx.checker and strict shape inference."""
    arch = _load(spec)
    _fail_on_errors(arch)
    from .emit_onnx import WeightsError, build_onnx, load_weights, save_onnx
    net = arch.network
    try:
        state = load_weights(net, weights) if weights else None
        model = build_onnx(net, opset=opset, dynamic_batch=dynamic_batch, state_dict=state,
                           seed=seed)
    except WeightsError as e:
        click.echo(f"error: {e}", err=True)
        click.echo("nothing written", err=True)
        sys.exit(1)
    changed = save_onnx(model, output)
    click.echo(f"{'wrote' if changed else 'unchanged'} {output} (opset "
               f"{model.opset_import[0].version}, {net.total_params:,} params)", err=True)


@main.command()
@click.argument("spec")
@click.option("--weights", help="A state_dict of the generated module, saved with torch.save.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--batch", type=int, default=2, show_default=True)
@click.option("--rtol", type=float, default=1e-4, show_default=True)
@click.option("--atol", type=float, default=1e-5, show_default=True)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True)
def parity(spec: str, weights: str | None, seed: int, batch: int, rtol: float, atol: float,
           fmt: str) -> None:
    """Run the ONNX graph in ONNX Runtime and the generated PyTorch module on the same weights
    and inputs; exit 0 within tolerance, 1 otherwise, naming the first layer that diverges."""
    arch = _load(spec)
    _fail_on_errors(arch)
    from .emit_onnx import WeightsError, load_weights
    from .parity import run_parity
    net = arch.network
    try:
        state = load_weights(net, weights) if weights else None
    except WeightsError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(1)
    report = run_parity(net, state_dict=state, seed=seed, batch=batch, rtol=rtol, atol=atol)
    click.echo(json.dumps(report.to_json(), indent=2) if fmt == "json" else report.to_text())
    sys.exit(0 if report.ok else 1)


if __name__ == "__main__":
    main()
