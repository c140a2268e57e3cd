"""Launching Debian's Chromium through Playwright without the browser UI no test looks at.

Headless Chromium is the whole browser: each new page is a window with a toolbar, and the
window builds its omnibox (address bar) popup as a WebUI page in a renderer of its own
(chrome://omnibox-popup.top-chrome). A test never types into an address bar, yet that popup
cost about 1.2 s of CPU per page here, most of a page's cost. Switching it off changes nothing
a web page can see.

Chromium reads only the last ``--disable-features`` of its command line, and Playwright passes
its own list; ours has to carry Playwright's too, so it is read off the launched browser's
command line (/proc) and the browser launched again with both.
"""

from __future__ import annotations

import os
from pathlib import Path

UNUSED_BROWSER_UI = ("WebUIOmniboxPopup", "WebUIOmniboxAimPopup")
DISABLE = "--disable-features="


def _process_tree(root: int) -> list[int]:
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry.name))
    found, stack = [], [root]
    while stack:
        for child in parents.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def browser_command_lines() -> dict[int, list[str]]:
    """The command lines of the Chromium browser processes this process's Playwright started, by pid."""
    lines = {}
    for pid in _process_tree(os.getpid()):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if "--remote-debugging-pipe" in argv:
            lines[pid] = argv
    return lines


def disabled_features(argv: list[str]) -> list[str]:
    """What the browser takes from this command line: its last --disable-features."""
    values = [arg.removeprefix(DISABLE) for arg in argv if arg.startswith(DISABLE)]
    return [name for name in values[-1].split(",") if name] if values else []


def launch(pw, executable_path: str, args: list[str]):
    """Chromium as Playwright launches it, with UNUSED_BROWSER_UI off as well."""
    running = browser_command_lines()
    probe = pw.chromium.launch(executable_path=executable_path, headless=True, args=args)
    defaults = [arg for pid, argv in browser_command_lines().items() if pid not in running
                for arg in argv if arg.startswith(DISABLE)]
    probe.close()
    playwrights = defaults[0].removeprefix(DISABLE).split(",") if defaults else []
    merged = ",".join(dict.fromkeys([*filter(None, playwrights), *UNUSED_BROWSER_UI]))
    return pw.chromium.launch(executable_path=executable_path, headless=True,
                              ignore_default_args=defaults[:1], args=[*args, DISABLE + merged])
