"""What in a course will not work as a remote package: said at build and republish, in plain words.

Where a remote course runs: its launch page is framed by a player page on the
content origin (same origin as the course; it holds ``window.API`` and
``window.API_1484_11``); above the player is the launcher in the LMS, on
another origin. So a parent-first API search, ``window.parent.document`` of a
launch page, popups and ``window.opener`` all work; what the browser refuses is
anything that reaches into the LMS's windows. Every ``.html``, ``.htm`` and
``.js`` file is scanned (SCORM drivers included), and only these are named:

- **The top window's insides**: ``top``, ``window.top`` or ``self.top``
  (optionally ``.window``) followed by a property a browser refuses across
  origins (``top.document``, ``top.API``, ``top["API"]``, ``top.sessionStorage``,
  ``top.open(...)``), or ``top.location`` used (``.href``, ``= ...``,
  ``.replace(...)``). Not named: what browsers allow across origins and SCORM
  Driver does (``top.opener``, ``top.close()``, ``top.frames``, ``top.postMessage``,
  comparing ``window.top == window``); code inside a ``try`` block (its ``catch``
  carries on, as iSpring's ``try{window.top.location.href}`` does); a file that
  declares a variable of its own called ``top``; comments and strings.
- **Links and forms aimed at the top window**: ``target="_top"`` in markup,
  in markup a script writes, or set on an element (``.target = "_top"``).
- **``parent.parent`` chains** (``parent.parent.API``, ``window.parent.parent.document``)
  in a SCO's launch page or a script it loads: from there the second parent is
  the LMS. (Deeper in a course's own frames the chain may stay inside the
  course, so it is not named there.)
- **Resources over plain http://** (``src=``, ``<link href=``, CSS ``url(...)``
  in a page or in markup a script writes; links to other sites are not resources).
- **Browser plug-ins** (``.swf``, ``.jar``, ``.xap`` files).

Known branches of authoring tools' players that are never taken inside an LMS,
recognised by their code (not their file name), are not named: the
close-the-window idiom ``top.open("", "_self")`` (Storyline's and Captivate's
fallback when no LMS unload handler answers: the window is not navigated, at
worst it stays open), Rise 360's learning-path hand-over
(``top.location.assign("/learning-path/...")`` with its ``sessionStorage`` note,
for courses inside a Rise.com learning path only), and Storyline's mobile e-mail
trigger (``top.location.assign("mailto:" + ...)``, in every Storyline export
whether the course sends e-mail or not).

A regex scan, made precise by a small lexer that knows JavaScript's comments,
strings, regex literals and ``try`` blocks; it cannot follow calls, so a
function defined inside a ``try`` block counts as guarded.
"""

from __future__ import annotations

import bisect
import posixpath
import re
from dataclasses import dataclass, field

from app.packages.manifest import Sco
from app.packages.zipsafety import MAX_READ_BYTES, Content

_SCANNED = (".html", ".htm", ".js")
_HTML = (".html", ".htm")
_PLUGINS = (".swf", ".jar", ".xap")

# What a browser lets a frame touch on a window of another origin (HTML's CrossOriginProperties).
_CROSS_ORIGIN_SAFE = {"window", "self", "top", "parent", "opener", "frames", "length", "closed", "close",
                      "focus", "blur", "postMessage"}

_TOP = re.compile(
    r"""(?<![\w$.])(?:(?:window|self)\s*\.\s*)?top(?:\s*\.\s*window)?\s*"""
    r"""(?:\.\s*(?P<prop>[A-Za-z_$][\w$]*)|\[\s*(?P<q>["'])(?P<key>[\w$]+)(?P=q)\s*\])""")
_PARENT_PARENT = re.compile(
    r"""(?<![\w$.])(?:(?:window|self)\s*\.\s*)?parent\s*\.\s*parent(?:\s*\.\s*parent)*\s*"""
    r"""(?:\.\s*(?P<prop>[A-Za-z_$][\w$]*)|\[\s*(?P<q>["'])(?P<key>[\w$]+)(?P=q)\s*\])""")
_LOCATION_USE = re.compile(r"""\s*(?:\.|\[|=(?!=))""")
_OWN_TOP = re.compile(r"""\b(?:var|let|const)\s+top\b""")
_TARGET_TOP = re.compile(r"""\btarget\s*=\s*\\?["']?_top\b|\.target\s*=\s*["']_top["']""", re.IGNORECASE)
_INSECURE = re.compile(
    r"""(?:\b(?:src|poster|data)\s*=\s*\\?["']?|<link\b[^>]*?\bhref\s*=\s*\\?["']?|(?<![\w$.])(?-i:url)\(\s*\\?["']?)"""
    r"""http://(?!localhost\b|127\.0\.0\.1\b)""", re.IGNORECASE)
_SCRIPT_BLOCK = re.compile(r"""<script\b([^>]*)>(.*?)</script\s*>""", re.IGNORECASE | re.DOTALL)
_SCRIPT_SRC = re.compile(r"""\bsrc\s*=\s*["']?([^"'\s>]+)""", re.IGNORECASE)
_HANDLER = re.compile(r"""\bon[a-z]+\s*=\s*(?:"([^"]*)"|'([^']*)')""", re.IGNORECASE)

# Players' branches an LMS never takes (see the module docstring): (what follows ``top``, the code after it).
_NEVER_IN_AN_LMS = (
    re.compile(r"""open\s*\(\s*(?:""|'')\s*,\s*["']_self["']"""),
    re.compile(r"""location\s*\.\s*assign\s*\(\s*["']/learning-path/"""),
    re.compile(r"""sessionStorage\s*\.\s*setItem\s*\(\s*["']upNextCourseId["']"""),
    re.compile(r"""location\s*\.\s*assign\s*\(\s*["']mailto:"""),
)
_AFTER_TOP = re.compile(r"""(?:\s*\.\s*window)?\s*\.\s*""")


@dataclass
class _Findings:
    top: dict[str, set[str]] = field(default_factory=dict)
    insecure: set[str] = field(default_factory=set)
    plugins: set[str] = field(default_factory=set)

    def found(self, name: str, what: str) -> None:
        self.top.setdefault(name, set()).add(what)


def remote_warnings(course: Content, notes: list[str], scos: list[Sco] | None = None) -> list[str]:
    """Plain words on what in this course will not work as a remote package (none for what will)."""
    findings = _Findings()
    launch_scope = _launch_scope(course, scos or [])
    for name in course.files:
        lower = name.lower()
        if lower.endswith(_PLUGINS):
            findings.plugins.add(name)
        if lower.endswith(_SCANNED) and course.size(name) <= MAX_READ_BYTES:
            text = course.read(name).decode("utf-8", errors="replace")
            _scan(name, text, lower.endswith(_HTML), name in launch_scope, findings)
    warnings = list(notes)
    if findings.top:
        names = set(findings.top)
        shown = _few(names, lambda n: f"{n} ({', '.join(sorted(findings.top[n]))})")
        warnings.append(f"{shown} {_verb(names, 'reaches', 'reach')} into the LMS's window: in a remote package "
                        "the LMS is on another origin, so the browser refuses it; test it, or build a deployed "
                        "package")
    if findings.insecure:
        warnings.append(f"{_few(findings.insecure)} {_verb(findings.insecure, 'loads', 'load')} files over plain "
                        "http://, which browsers block in an https page")
    if findings.plugins:
        warnings.append(f"{_few(findings.plugins)} {_verb(findings.plugins, 'needs', 'need')} a browser plug-in "
                        "(Flash, Java, Silverlight) no browser runs")
    return warnings


def _launch_scope(course: Content, scos: list[Sco]) -> set[str]:
    """The SCOs' launch pages and the scripts they load: frames whose parent is the player."""
    scope: set[str] = set()
    for sco in scos:
        if sco.launch not in course.files:
            continue
        scope.add(sco.launch)
        page = course.read(sco.launch).decode("utf-8", errors="replace")
        folder = posixpath.dirname(sco.launch)
        for attributes, _body in _SCRIPT_BLOCK.findall(page):
            src = _SCRIPT_SRC.search(attributes)
            if src and "://" not in src.group(1) and not src.group(1).startswith("//"):
                scope.add(posixpath.normpath(posixpath.join(folder, src.group(1).split("?")[0])))
    return scope


def _scan(name: str, text: str, html: bool, launch_scope: bool, findings: _Findings) -> None:
    if "http://" in text and _INSECURE.search(text):
        findings.insecure.add(name)
    if "_top" in text and _TARGET_TOP.search(text):
        findings.found(name, "target=_top")
    if html:
        codes = [body for attributes, body in _SCRIPT_BLOCK.findall(text) if not _SCRIPT_SRC.search(attributes)]
        codes += [double or single for double, single in _HANDLER.findall(text)]
    else:
        codes = [text]
    for code in codes:
        if "top" not in code and "parent" not in code:
            continue
        lexed: _Lexed | None = None
        for pattern, scoped in ((_TOP, False), (_PARENT_PARENT, True)):
            if scoped and not launch_scope:
                continue
            for match in pattern.finditer(code):
                prop = match.group("prop") or match.group("key")
                if prop in _CROSS_ORIGIN_SAFE:
                    continue
                if prop == "location" and not _LOCATION_USE.match(code, match.end()):
                    continue  # a bare reference, e.g. compared: allowed across origins
                if pattern is _TOP and (_never_in_an_lms(code, match.start()) or _OWN_TOP.search(code)):
                    continue
                lexed = lexed or _Lexed(code)
                if lexed.quiet(match.start()):
                    continue
                findings.found(name, ("top." if pattern is _TOP else "parent.parent.") + prop)


def _never_in_an_lms(code: str, start: int) -> bool:
    after_top = code.index("top", start) + 3
    step = _AFTER_TOP.match(code, after_top)
    rest = step.end() if step else after_top
    return any(idiom.match(code, rest) for idiom in _NEVER_IN_AN_LMS)


class _Lexed:
    """Where a script's comments, strings and regex literals are, and its ``try { ... }`` blocks."""

    _TOKEN = re.compile(r"""//|/\*|["'`/{}]|\btry\b""")
    # After these a "/" starts a regex literal; after anything else it divides.
    _REGEX_AFTER = set("(,=:[!&|?{};+-*%<>~^") | {""}
    _REGEX_AFTER_WORDS = ("return", "typeof", "case", "do", "else", "in", "of", "new", "delete", "void", "throw")

    def __init__(self, code: str):
        self.quiet_starts: list[int] = []
        self.quiet_ends: list[int] = []
        self.try_blocks: list[tuple[int, int]] = []
        stack: list[tuple[bool, int]] = []
        pending_try = False
        pos, end = 0, len(code)
        while pos < end:
            match = self._TOKEN.search(code, pos)
            if match is None:
                break
            token, start = match.group(), match.start()
            if token == "//":
                stop = code.find("\n", start)
                pos = end if stop < 0 else stop
                self._quiet(start, pos)
            elif token == "/*":
                stop = code.find("*/", start + 2)
                pos = end if stop < 0 else stop + 2
                self._quiet(start, pos)
            elif token in "\"'`":
                pos = self._skip_string(code, start, token)
                self._quiet(start, pos)
            elif token == "/":
                if self._starts_regex(code, start):
                    pos = self._skip_regex(code, start)
                    self._quiet(start, pos)
                else:
                    pos = start + 1
            elif token == "try":
                pending_try, pos = True, match.end()
            elif token == "{":
                stack.append((pending_try, start))
                pending_try, pos = False, start + 1
            else:  # "}"
                if stack:
                    was_try, opened = stack.pop()
                    if was_try:
                        self.try_blocks.append((opened, start))
                pos = start + 1

    def _quiet(self, start: int, stop: int) -> None:
        self.quiet_starts.append(start)
        self.quiet_ends.append(stop)

    def quiet(self, position: int) -> bool:
        """Is this position in a comment, string or regex literal, or inside a try block?"""
        index = bisect.bisect_right(self.quiet_starts, position) - 1
        if index >= 0 and position < self.quiet_ends[index]:
            return True
        return any(opened < position < closed for opened, closed in self.try_blocks)

    @staticmethod
    def _skip_string(code: str, start: int, quote: str) -> int:
        pos = start + 1
        while pos < len(code):
            char = code[pos]
            if char == "\\":
                pos += 2
                continue
            if char == quote or (char == "\n" and quote != "`"):
                return pos + 1
            pos += 1
        return pos

    def _starts_regex(self, code: str, start: int) -> bool:
        before = code[max(0, start - 12):start].rstrip()
        word = re.search(r"[\w$]+$", before)
        if word:
            return word.group() in self._REGEX_AFTER_WORDS
        return before[-1:] in self._REGEX_AFTER

    @staticmethod
    def _skip_regex(code: str, start: int) -> int:
        pos, in_class = start + 1, False
        while pos < len(code):
            char = code[pos]
            if char == "\\":
                pos += 2
                continue
            if char == "\n":
                return pos
            if char == "[":
                in_class = True
            elif char == "]":
                in_class = False
            elif char == "/" and not in_class:
                return pos + 1
            pos += 1
        return pos


def _verb(names: set[str], one: str, many: str) -> str:
    return one if len(names) == 1 else many


def _few(names: set[str], show=str) -> str:
    ordered = sorted(names)
    return ", ".join(show(n) for n in ordered[:3]) + (f" and {len(ordered) - 3} more" if len(ordered) > 3 else "")
