"""User-facing errors: one frame for every stage.

    model.ppl:5:3: error: unknown distribution "normall"
        5 | y ~ normall(mu, 1)
          |     ^^^^^^^
    hint: did you mean "normal"?
"""
from __future__ import annotations

import difflib
from typing import Iterable, List, Optional

from .span import Span


class PPLError(Exception):
    """An error in the user's program or data. Always carries enough to print the frame."""

    kind = "error"

    def __init__(self, message: str, span: Optional[Span] = None, hint: Optional[str] = None,
                 source: Optional[str] = None, filename: Optional[str] = None,
                 notes: Iterable[str] = ()):
        super().__init__(message)
        self.message = message
        self.span = span
        self.hint = hint
        self.source = source
        self.filename = filename
        self.notes = list(notes)

    def attach(self, source: str, filename: str) -> "PPLError":
        if self.source is None:
            self.source = source
        if self.filename is None:
            self.filename = filename
        return self

    def format(self) -> str:
        return format_message(self.kind, self.message, self.span, self.hint, self.source,
                              self.filename, self.notes)

    def __str__(self) -> str:
        return self.format()


class PPLSyntaxError(PPLError):
    pass


class PPLCheckError(PPLError):
    pass


class PPLDataError(PPLError):
    pass


class PPLRuntimeError(PPLError):
    """Numerical trouble during inference (all particles dead, no finite initial point …)."""


class PPLInternalError(PPLError):
    """A bug in ppl: a translation validation failed."""

    def format(self) -> str:
        return super().format() + "\nThis is a bug in ppl, not in your model; please report it."


class Warning_:
    def __init__(self, message: str, span: Optional[Span] = None, hint: Optional[str] = None):
        self.message, self.span, self.hint = message, span, hint

    def format(self, source: Optional[str], filename: Optional[str]) -> str:
        return format_message("warning", self.message, self.span, self.hint, source, filename)


def format_message(kind: str, message: str, span: Optional[Span], hint: Optional[str],
                   source: Optional[str], filename: Optional[str], notes: Iterable[str] = ()) -> str:
    where = filename or "ppl"
    if span is not None and span.line > 0:
        where = f"{where}:{span.line}:{span.col}"
    out = [f"{where}: {kind}: {message}"]
    if span is not None and span.line > 0 and source is not None:
        lines = source_lines(source)
        if 0 < span.line <= len(lines):
            text = display_line(lines[span.line - 1])
            num = str(span.line)
            pad = " " * len(num)
            if span.end_line == span.line and span.end_col > span.col:
                width = span.end_col - span.col
            else:
                width = max(1, len(text) - span.col + 1) if span.end_line > span.line else 1
            out.append(f"  {num} | {text}")
            out.append(f"  {pad} | {' ' * (span.col - 1)}{'^' * max(1, width)}")
    for note in notes:
        out.append(f"note: {note}")
    if hint:
        out.append(f"hint: {hint}")
    return "\n".join(out)


def source_lines(source: str) -> List[str]:
    """The lines of a program as the parser numbers them: split at "\n" only (and "\r\n").

    str.splitlines also splits at \v, \f, \x1c-\x1e, U+0085, U+2028 and U+2029, which the
    parser takes as ordinary characters: a comment holding one would shift every line number
    after it. Every frame and every lookup of a line by its number goes through this."""
    lines = source.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def source_line(source: str, number: int) -> Optional[str]:
    """Line `number` (from 1) of the program, or None."""
    lines = source_lines(source)
    return lines[number - 1] if 0 < number <= len(lines) else None


# characters that would move the cursor or break the line when a frame is printed; each is
# shown as one space, so the caret stays under the column the parser counted
_INVISIBLE = {c: " " for c in [*range(0x00, 0x20), 0x7F, 0x85, 0x2028, 0x2029]}


def display_line(text: str) -> str:
    return text.translate(_INVISIBLE)


def did_you_mean(name: str, candidates: Iterable[str]) -> Optional[str]:
    close = difflib.get_close_matches(name, sorted(set(candidates)), n=1, cutoff=0.6)
    return f'did you mean "{close[0]}"?' if close else None
