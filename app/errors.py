"""Error texts that leave the server: never the server's working directory or an absolute path.

`public_text(msg)` turns every absolute path (POSIX, file:// or Windows) into its last component and
removes the working directory and home folder wherever they appear; `public_reason(e)` is the
exception's text so cleaned and cut to MAX_REASON characters. The launched app also runs with
Gradio's show_error off (app.ui.launch): exceptions raised outside our handlers (Gradio's own path
checks, request validation) reach the browser as a bare "Error", never as their text; our handlers
raise gr.Error with cleaned texts, which Gradio always shows."""
from __future__ import annotations

import os
import re
from pathlib import Path

MAX_REASON = 300
# An absolute path: after the start, a space, a quote, '(' '[' '=' or ':', a '/' (or 'C:\') followed by
# non-space characters; its last component survives.
_ABS_PATH = re.compile(r"""(?:(?<=^)|(?<=[\s'"(\[=:,]))(?:file://)?(?:/|[A-Za-z]:\\)[^\s'"]*""")


def _basename(m: re.Match) -> str:
    p = m.group(0).rstrip(").,;]")
    tail = m.group(0)[len(p):]
    name = re.split(r"[/\\]", p.rstrip("/\\"))[-1]
    return (name or "<path>") + tail


def public_text(msg: str) -> str:
    """`msg` without the working directory, the home folder or any absolute path (kept: file names)."""
    for root in {os.getcwd(), str(Path.cwd().resolve()), str(Path.home())} - {"", "/"}:
        msg = msg.replace(root + os.sep, "").replace(root, ".")
    return _ABS_PATH.sub(_basename, msg)


def public_reason(e: BaseException) -> str:
    """The text of exception `e` fit for a browser (cleaned, at most MAX_REASON characters)."""
    return public_text(str(e).strip() or type(e).__name__)[:MAX_REASON]
