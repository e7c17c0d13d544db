"""Self-contained HTML pages (reports, QC pages): one template, ``report/report.html.j2``, rendered with jinja2.

A page is a list of sections (``{"id", "title", "blocks"}``); a block is text, a table, figures or a scan (see the
template). Images are embedded (base64 PNG), so a page is one file with no external resource.
"""

from __future__ import annotations

import datetime
import importlib.resources
import os
from pathlib import Path

__all__ = ["cell", "render_page"]


def cell(text: str, **attrs) -> dict:
    """A table cell: its text and ``data-*`` attributes (for tests and scripts that read the page)."""
    return {"text": text, "attrs": {f"data-{k.replace('_', '-')}": v for k, v in attrs.items() if v is not None}}


def _versions() -> str:
    import monai
    import torch

    from . import __version__

    return f"axial-monai {__version__}, MONAI {monai.__version__}, torch {torch.__version__}"


def render_page(title: str, run_dir: str | os.PathLike, kinds: str, sections: list[dict]) -> str:
    """The HTML text of a page of ``sections``, with the run folder, what it holds and the versions."""
    import jinja2

    template = importlib.resources.files("axial_monai").joinpath("report", "report.html.j2").read_text()
    environment = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    return environment.from_string(template).render(
        title=title,
        run_dir=str(Path(run_dir).resolve()),
        kinds=kinds,
        generated=datetime.datetime.now().isoformat(timespec="seconds"),
        versions=_versions(),
        sections=sections,
    )
