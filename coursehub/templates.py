"""Render the repository's Jinja2 templates (templates/ next to the package).

    render("timesyncd.conf.j2", servers=["10.77.0.1"])

StrictUndefined: a variable the caller forgot is an error, never an empty
string in a config file. Templates are read once per process.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any

import coursehub

if TYPE_CHECKING:
    import jinja2

TEMPLATES = Path(coursehub.__file__).resolve().parent.parent / "templates"


@functools.cache
def _env() -> jinja2.Environment:
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )


def render(name: str, **variables: Any) -> str:
    """The text of templates/<name> rendered with `variables`."""
    return _env().get_template(name).render(**variables)
