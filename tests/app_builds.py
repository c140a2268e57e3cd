"""An app for every test, built for less: what werkzeug and Jinja compile is shared between apps.

Each test builds its own app (its own database, content store and settings). werkzeug compiles two
Python functions for each of the app's ~75 URL rules (its URL builders: ~45 ms of CPU an app), and
Jinja parses and compiles each template an app renders. Over the ~1,000 apps of a pass that was the
largest CPU cost of the tests that need no browser. Both depend only on the rule or on the
template's source, so each test process compiles them once and every app it builds reuses them.
Nothing an app does changes: the same functions and the same template code, made once.
"""

from __future__ import annotations

import jinja2


def share_url_builders() -> None:
    """werkzeug's Rule._compile_builder, memoised. The function it compiles reads the rule's
    converters through its `self` argument when it runs, so it depends only on the rule's parts
    and default names; a rule whose default is folded into the code keeps its own."""
    from werkzeug.routing.rules import Rule

    compile_builder = Rule._compile_builder
    if getattr(compile_builder, "shared", False):
        return
    builders: dict[tuple, object] = {}

    def shared(self, append_unknown: bool = True):
        defaults = self.defaults or {}
        if any(is_dynamic and part in defaults for is_dynamic, part in self._trace):
            return compile_builder(self, append_unknown)
        key = (append_unknown, tuple(self._trace), tuple(defaults))
        if key not in builders:
            builders[key] = compile_builder(self, append_unknown)
        return builders[key]

    shared.shared = True
    shared.unshared = compile_builder
    Rule._compile_builder = shared


class SharedTemplates(jinja2.BytecodeCache):
    """Jinja's own cache of compiled templates, kept in memory for every app of this process. A
    template whose source changed (its checksum) is compiled again, as with any bytecode cache."""

    def __init__(self) -> None:
        self.compiled: dict[str, bytes] = {}

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        if bucket.key in self.compiled:
            bucket.bytecode_from_string(self.compiled[bucket.key])

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        self.compiled[bucket.key] = bucket.bytecode_to_string()


SHARED_TEMPLATES = SharedTemplates()


def share_compilation(app) -> None:
    app.jinja_env.bytecode_cache = SHARED_TEMPLATES
