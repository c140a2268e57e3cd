"""The tests' apps share what werkzeug and Jinja compile (tests/app_builds.py), and build the same URLs."""

from __future__ import annotations

import pytest
from app_builds import SHARED_TEMPLATES, share_compilation
from conftest import _config

from app import create_app

# one_database: how the test apps are built, not the database.
pytestmark = pytest.mark.one_database


def _sample_values(rule) -> dict:
    return {name: (7 if type(converter).__name__ in ("IntegerConverter", "NumberConverter") else "a b/c")
            for name, converter in rule._converters.items()}


def test_two_apps_share_url_builders_and_build_what_werkzeug_builds_alone(tmp_path):
    from werkzeug.routing.rules import Rule

    first, second = (create_app(_config(f"sqlite:///{tmp_path / name}.db")) for name in ("a", "b"))
    compile_alone = Rule._compile_builder.unshared  # werkzeug's own
    rules = list(second.url_map.iter_rules())
    assert len(rules) > 50
    shared = 0
    for rule, twin in zip(first.url_map.iter_rules(), rules, strict=True):
        assert rule.rule == twin.rule
        shared += rule._build.__func__ is twin._build.__func__
        values = _sample_values(twin)
        alone = compile_alone(twin, False).__get__(twin, None)
        assert twin._build(**values) == alone(**values), twin.rule
        assert twin.build({**values, "q": "x y"}) == compile_alone(twin, True).__get__(twin, None)(
            **values, q="x y"), twin.rule
    assert shared >= len(rules) - 2  # all but a rule with a default folded into its code


def test_a_template_is_compiled_once_for_every_app(tmp_path):
    first, second = (create_app(_config(f"sqlite:///{tmp_path / name}.db")) for name in ("a", "b"))
    for application in (first, second):
        share_compilation(application)
    first.jinja_env.get_template("base.html")
    assert SHARED_TEMPLATES.compiled

    def compile_again(*args, **kwargs):
        raise AssertionError("the second app compiled the template again")

    second.jinja_env.compile = compile_again
    template = second.jinja_env.get_template("base.html")
    assert template.name == "base.html"
