"""Magic lines as people paste them: a trailing ``# comment`` is dropped, as Python drops it, and
quoting follows the shell's rules.

    strip_comment("--header demo.h  # it's the demo's")   -> "--header demo.h"
    split('plot Telemetry.samples --title "a # b"  # c')  -> ['plot', 'Telemetry.samples',
                                                              '--title', 'a # b']

A ``#`` starts a comment where a word could start (at the beginning of the line or after a
space) and outside quotes: ``ws://host/?token=a#b`` keeps its ``#``.
"""

from __future__ import annotations

import shlex

from IPython.core.error import UsageError


def strip_comment(line: str) -> str:
    """``line`` without its trailing comment (and the spaces before it)."""
    quote = None
    word_start = True  # after an unescaped space (or at the start): where a comment may begin
    i = 0
    while i < len(line):
        ch = line[i]
        if quote is not None:
            if ch == quote:
                quote = None
            elif ch == "\\" and quote == '"':
                i += 1  # \" and \\ inside double quotes
        elif ch in "'\"":
            quote = ch
        elif ch == "\\":
            i += 1  # an escaped character is never a quote, a space or a comment
        elif ch == "#" and word_start:
            return line[:i].rstrip()
        word_start = quote is None and ch.isspace()
        i += 1
    return line


def split(line: str) -> list[str]:
    """The words of a magic line, its comment dropped; UsageError (never a traceback) when it
    cannot be split, saying why."""
    text = strip_comment(line)
    try:
        return shlex.split(text, posix=True)
    except ValueError as e:  # shlex: "No closing quotation", "No escaped character"
        raise UsageError(f"cannot read this line ({e}): {text!r}. Close the quote, or put a "
                         "backslash before a quote that is part of a word") from None
