"""What ``scorm_package/`` holds, and the Jinja environment that renders its templates."""

from __future__ import annotations

from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape

PACKAGE_SOURCE = Path(__file__).resolve().parent.parent.parent / "scorm_package"

templates = Environment(
    loader=FileSystemLoader(str(PACKAGE_SOURCE)),
    autoescape=select_autoescape(enabled_extensions=("html", "xml"), default_for_string=True),
    keep_trailing_newline=True,
)


def placeholder(title: str, scorm_version: str) -> dict[str, bytes]:
    """The placeholder course's files, for a build without content."""
    folder = PACKAGE_SOURCE / "placeholder"
    return {
        "index.html": templates.get_template("placeholder/index.html")
        .render(title=title, scorm_version=scorm_version).encode("utf-8"),
        "course.css": (folder / "course.css").read_bytes(),
        "course.js": (folder / "course.js").read_bytes(),
    }
