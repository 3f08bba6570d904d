"""`ppl repl`: build a model statement by statement, checking each as it is typed.

    ppl> data N: int
    ppl> mu ~ normal(0, 1)
    ppl> :data examples/foo.json
    ppl> :sample
"""
from __future__ import annotations

import sys
from typing import Callable, List, Optional

from .syntax.errors import PPLError

HELP = """statements are checked as you type them; a "{" continues until its "}".
commands:
  :show            the model so far
  :check           variables, loops and the inference plan
  :data FILE       use this data (CmdStan JSON)
  :sample [N]      run inference (N draws per chain, default 1000) and print the summary
  :graph           the model graph (Graphviz DOT)
  :undo            drop the last statement
  :reset           start over
  :load FILE       append the statements of a .ppl file
  :quit            leave"""


class Repl:
    def __init__(self, out=None, err=None):
        self.statements: List[str] = []  # one entry per statement (a block spans lines)
        self.data: Optional[str] = None
        self.out, self.err = out or sys.stdout, err or sys.stderr

    def source(self) -> str:
        return "".join(s + "\n" for s in self.statements)

    def model(self):
        from .api import Model
        return Model(self.source(), "<repl>")

    def add(self, text: str) -> bool:
        """Append a statement if the model still compiles with it; report the error otherwise."""
        candidate = self.statements + [text.rstrip("\n")]
        try:
            from .api import Model
            Model("".join(s + "\n" for s in candidate), "<repl>")
        except PPLError as e:
            self.err.write(e.format() + "\n")
            return False
        self.statements = candidate
        return True

    def command(self, line: str) -> bool:
        """Run a `:command`; returns False to leave."""
        from .cli import build_parser
        parts = line[1:].split()
        name, args = (parts[0], parts[1:]) if parts else ("help", [])
        try:
            if name in ("quit", "q", "exit"):
                return False
            if name == "show":
                self.out.write(self.source() or "(empty)\n")
            elif name == "reset":
                self.statements = []
            elif name == "undo":
                self.statements = self.statements[:-1]
            elif name == "data":
                self.data = args[0] if args else None
                if self.data:
                    self.model().bind(self.data)
            elif name == "load":
                with open(args[0]) as f:
                    self.add(f.read())
            elif name == "check":
                self._cli(build_parser(), ["check", "--data", self.data] if self.data else ["check"])
            elif name == "graph":
                self._cli(build_parser(), ["graph"])
            elif name == "sample":
                extra = ["--draws", args[0]] if args else []
                self._cli(build_parser(), ["sample"] + (["--data", self.data] if self.data else []) + extra)
            else:
                self.out.write(HELP + "\n")
        except PPLError as e:
            self.err.write(e.format() + "\n")
        except (OSError, IndexError) as e:
            self.err.write(f"error: {e}\n")
        return True

    def _cli(self, parser, argv):
        import tempfile
        from pathlib import Path
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "repl.ppl"
            path.write_text(self.source())
            args = parser.parse_args(argv[:1] + [str(path)] + argv[1:])
            args.func(args)


def run(read: Callable[[str], str] = input) -> int:
    repl = Repl()
    repl.out.write("ppl repl — type statements, :help for commands\n")
    while True:
        try:
            line = read("ppl> ")
        except EOFError:
            return 0
        if not line.strip():
            continue
        if line.strip().startswith(":"):
            if not repl.command(line.strip()):
                return 0
            continue
        # a block continues until its braces balance
        text = line
        while text.count("{") > text.count("}"):
            try:
                text += "\n" + read("...  ")
            except EOFError:
                break
        repl.add(text)
