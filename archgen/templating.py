"""The Jinja environment both targets render with: templates from the `archgen.templates`
package (the repository's templates/ folder, shipped in the wheel), strict and whitespace-clean
so that a template fails loudly and renders exactly what the emitter laid out."""

from __future__ import annotations

from pathlib import Path


def template_root():
    import importlib.resources  # here, not above: `check` imports this module, never renders

    try:
        return importlib.resources.files("archgen.templates")
    except ModuleNotFoundError:  # a checkout on sys.path without an install
        return Path(__file__).resolve().parent.parent / "templates"


def environment(folder: str, *, keep_trailing_newline: bool):
    """An environment loading `templates/<folder>/<name>`."""
    import jinja2

    root = template_root() / folder

    def load(name: str) -> str:
        return root.joinpath(*name.split("/")).read_text(encoding="utf-8")

    return jinja2.Environment(loader=jinja2.FunctionLoader(load),
                              undefined=jinja2.StrictUndefined, trim_blocks=True,
                              lstrip_blocks=True, keep_trailing_newline=keep_trailing_newline,
                              autoescape=False)
