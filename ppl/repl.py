"""`ppl repl`: build a model statement by statement, checking each as it is typed.

    ppl> data N: int
    ppl> data y: real[N]
    ppl> mu ~ normal(0, 1)
    ppl> y ~ normal(mu, 1)
    ppl> :data N = 3
    ppl> :data y = [0.5, 1.2, -0.3]
    ppl> :sample 500
    ppl> :draws mu

On a terminal the prompt is prompt_toolkit's: the language highlighted (ppl/syntax/highlight.py),
completion of names, distributions, functions and commands (Tab), history kept across sessions
(a file under the user's data directory), blocks continued until their braces balance, Ctrl-C
to drop the current input or stop a running :sample, Ctrl-D to leave. Without a terminal
(piped input) lines are read plainly, with the same commands.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

from prompt_toolkit.completion import Completer as _CompleterBase

from .syntax.errors import PPLError, did_you_mean

HELP = """statements are checked as you type them; a "{" continues until its "}".
commands:
  :show               the model so far
  :check              variables, loops and the inference plan
  :data FILE          use this data (CmdStan JSON); inline values are added to it
  :data NAME = VALUE  one value inline: :data N = 3, :data y = [1, 2, 3]
  :data               the data so far
  :sample [N] [KEY=VALUE …]
                      run inference (N draws per chain, default 1000; chains=, warmup=, seed=,
                      method=, or a method option) and print the summary; Ctrl-C stops it
  :summary [NAME …]   the last run's summary (every variable, or those named)
  :draws NAME         the last run's draws of NAME
  :save FILE          FILE.ppl: the model; FILE.nc / FILE.csv: the last run
  :plot [KIND] [FILE] the last run as a PNG: trace (default), rank, pair, ppc, forest, energy
  :graph              the model graph (Graphviz DOT)
  :undo               drop the last statement
  :reset              start over
  :load FILE          append the statements of a .ppl file
  :quit               leave (or Ctrl-D)"""

COMMANDS = ["show", "check", "data", "sample", "summary", "draws", "save", "plot", "graph",
            "undo", "reset", "load", "help", "quit"]


class Repl:
    def __init__(self, out=None, err=None):
        self.statements: List[str] = []  # one entry per statement (a block spans lines)
        self.data: Optional[str] = None  # a CmdStan JSON file
        self.inline: Dict[str, object] = {}  # values given with `:data NAME = VALUE`
        self.idata = None  # the last run
        self.out, self.err = out or sys.stdout, err or sys.stderr

    def source(self) -> str:
        return "".join(s + "\n" for s in self.statements)

    def model(self):
        from .api import Model
        return Model(self.source(), "<repl>")

    def data_value(self):
        """The data for a run: the file's values, updated by the inline ones."""
        if self.data is None and not self.inline:
            return None
        values = {}
        if self.data is not None:
            from .check.data import load_json
            values = dict(load_json(self.data))
        values.update(self.inline)
        return values

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

    def names(self) -> List[str]:
        """The variables and functions the model so far declares (for completion)."""
        if not self.statements:
            return []
        import re
        functions = set(re.findall(r"^\s*def\s+([A-Za-z_]\w*)", self.source(), re.M))
        try:
            graph = self.model().graph
        except PPLError:
            return sorted(functions)
        return sorted({v.name for v in graph.variables()} | functions)

    def handle(self, text: str) -> bool:
        """One input: a `:command` or a statement. Returns False to leave."""
        if not text.strip():
            return True
        if text.strip().startswith(":"):
            return self.command(text.strip())
        self.add(text)
        return True

    def command(self, line: str) -> bool:
        """Run a `:command`; returns False to leave."""
        from .cli import build_parser
        name, _, rest = line[1:].strip().partition(" ")
        args = rest.split()
        name = name or "help"
        try:
            if name in ("quit", "q", "exit"):
                return False
            if name == "show":
                self.out.write(self.source() or "(empty)\n")
            elif name == "reset":
                self.statements, self.data, self.inline, self.idata = [], None, {}, None
            elif name == "undo":
                self.statements = self.statements[:-1]
            elif name == "data":
                self._data(rest.strip())
            elif name == "load":
                with open(_one(args, ":load FILE")) as f:
                    self.add(f.read())
            elif name == "check":
                self._cli(build_parser(), ["check"])
            elif name == "graph":
                self._cli(build_parser(), ["graph"])
            elif name == "sample":
                self._sample(args)
            elif name == "summary":
                self._summary(args)
            elif name == "draws":
                self._draws(_one(args, ":draws NAME"))
            elif name == "save":
                self._save(_one(args, ":save FILE"))
            elif name == "plot":
                self._plot(args)
            elif name == "help":
                self.out.write(HELP + "\n")
            else:
                hint = did_you_mean(name, COMMANDS)
                raise PPLError(f'unknown command ":{name}"', None,
                               (hint.replace('"', '":', 1) if hint else "") or ":help lists the commands",
                               filename="<repl>")
        except PPLError as e:
            self.err.write(e.format() + "\n")
        except (OSError, ValueError) as e:
            self.err.write(f"<repl>: error: {e}\n")
        return True

    # ------------------------------------------------------------------ commands
    def _data(self, rest: str) -> None:
        if not rest:
            values = self.data_value() or {}
            source = f" (from {self.data})" if self.data else ""
            self.out.write(f"data{source}:\n" if values else "no data yet\n")
            for k, v in values.items():
                self.out.write(f"  {k} = {json.dumps(_plain(v))}\n")
            return
        name, eq, value = rest.partition("=")
        if not eq:  # a file
            path = rest.strip()
            if not Path(path).is_file():
                raise PPLError(f'data file "{path}" not found', None,
                               "give a CmdStan JSON file, or a value: :data N = 3", filename="<repl>")
            from .check.data import load_json
            load_json(path)  # reports a malformed file now, not at :sample
            self.data = path
            return
        name = name.strip()
        if not name.isidentifier():
            raise PPLError(f'":data {rest}": "{name}" is not a name', None,
                           "write :data NAME = VALUE, e.g. :data y = [1, 2, 3]", filename="<repl>")
        try:
            self.inline[name] = json.loads(value.strip())
        except json.JSONDecodeError:
            raise PPLError(f'":data {rest}": the value is not a number, true/false or a list', None,
                           "values are written as in JSON: 3, 2.5, true, [1, 2, 3], [[1, 2], [3, 4]]",
                           filename="<repl>") from None

    def _sample(self, args: List[str]) -> None:
        from .cli import _option_value
        from .runtime.results import report
        options = {"draws": 1000}
        for a in args:
            key, eq, value = a.partition("=")
            if not eq:
                if not a.isdigit():
                    raise PPLError(f'":sample {a}": the number of draws is a whole number', None,
                                   ":sample 500 chains=2 warmup=500", filename="<repl>")
                options["draws"] = int(a)
            else:
                options[key.replace("-", "_")] = _option_value(value)
        model = self.model()
        t0 = time.perf_counter()
        try:
            idata = model.sample(self.data_value(), progress=self.err.isatty(), **options)
        except KeyboardInterrupt:
            self.err.write("\ninterrupted: :sample stopped\n")
            return
        self.idata = idata
        report(model, idata, time.perf_counter() - t0, out=self.out, err=self.err)

    def _run(self):
        if self.idata is None:
            raise PPLError("no run yet", None, ":sample runs inference on the model", filename="<repl>")
        return self.idata

    def _summary(self, names: List[str]) -> None:
        from .runtime.results import summarize, summary_table, summary_variables
        idata = self._run()
        shown, _ = summary_variables(idata, 10 ** 9, names or None)
        self.out.write(summary_table(summarize(idata, var_names=shown), var_names=shown) + "\n")

    def _draws(self, name: str) -> None:
        import numpy as np
        from .runtime.results import summary_source, summary_variables
        idata = self._run()
        summary_variables(idata, 0, [name])  # the error names the variables there are
        values = np.asarray(summary_source(idata)[name].values)
        chains, draws = values.shape[:2]
        shape = " × ".join(str(d) for d in values.shape[2:])
        self.out.write(f"{name}: {chains} chains × {draws} draws" + (f", each {shape}" if shape else "")
                       + "\n")
        self.out.write(np.array2string(values, precision=4, threshold=40, edgeitems=3,
                                       suppress_small=True, separator=" ") + "\n")

    def _save(self, path: str) -> None:
        if path.endswith(".ppl"):
            from .runtime.files import write_text_atomic
            write_text_atomic(path, self.source())
        else:
            from .runtime.results import check_output_path, write_output
            check_output_path(path)
            write_output(self._run(), path)
        self.out.write(f"wrote {path}\n")

    def _plot(self, args: List[str]) -> None:
        from .runtime.plots import KINDS, plot
        kind = args[0] if args and args[0] in KINDS else "trace"
        rest = args[1:] if args and args[0] in KINDS else args
        path = rest[0] if rest else f"{kind}.png"
        plot(self._run(), kind, path, name="<repl>")
        self.out.write(f"wrote {path}\n")

    def _cli(self, parser, argv):
        import tempfile
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "repl.ppl"
            path.write_text(self.source())
            extra = []
            if argv[0] == "check" and self.data_value() is not None:
                data = Path(d) / "data.json"
                data.write_text(json.dumps(_plain(self.data_value())))
                extra = ["--data", str(data)]
            args = parser.parse_args(argv[:1] + [str(path)] + argv[1:] + extra)
            args.func(args)


def _one(args: List[str], usage: str) -> str:
    if len(args) != 1:
        raise PPLError(f"{usage} takes one argument", None, f"for example {usage}", filename="<repl>")
    return args[0]


def _plain(v):
    import numpy as np
    return np.asarray(v).tolist() if hasattr(v, "shape") else v


def balanced(text: str) -> bool:
    """Whether an input is complete: a command, or a statement whose braces balance."""
    if text.lstrip().startswith(":"):
        return True
    code = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    return code.count("{") <= code.count("}") and code.count("(") <= code.count(")") \
        and code.count("[") <= code.count("]")


def history_path() -> Path:
    """The REPL's history file: $PPL_HISTORY, else under $XDG_DATA_HOME (~/.local/share)."""
    if os.environ.get("PPL_HISTORY"):
        return Path(os.environ["PPL_HISTORY"])
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "ppl" / "repl_history"


def run(read: Optional[Callable[[str], str]] = None, model_path: Optional[str] = None,
        out=None, err=None) -> int:
    """The REPL: prompt_toolkit on a terminal; `read` (default `input`) otherwise."""
    repl = Repl(out, err)
    repl.out.write("ppl repl — type statements, :help for commands\n")
    if model_path:
        repl.command(f":load {model_path}")
        if repl.statements:
            repl.out.write(f"loaded {model_path} ({len(repl.statements[0].splitlines())} lines)\n")
    if read is None and sys.stdin.isatty() and sys.stdout.isatty():
        return _interactive(repl)
    return _plain_loop(repl, read or input)


def _plain_loop(repl: Repl, read: Callable[[str], str]) -> int:
    while True:
        try:
            text = read("ppl> ")
            while not balanced(text):  # a block continues until its braces balance
                try:
                    text += "\n" + read("...  ")
                except EOFError:
                    break
        except EOFError:
            return 0
        except KeyboardInterrupt:
            repl.err.write("\n")
            continue
        try:
            if not repl.handle(text):
                return 0
        except KeyboardInterrupt:
            repl.err.write("\ninterrupted\n")


def _interactive(repl: Repl) -> int:
    from prompt_toolkit import PromptSession
    from prompt_toolkit.history import FileHistory
    from prompt_toolkit.lexers import PygmentsLexer

    from .syntax.highlight import PPLLexer
    path = history_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        history = FileHistory(str(path))
    except OSError:  # no writable data directory: history for this session only
        from prompt_toolkit.history import InMemoryHistory
        history = InMemoryHistory()
    session = PromptSession(
        history=history, lexer=PygmentsLexer(PPLLexer), completer=Completer(repl),
        complete_while_typing=False, multiline=True, key_bindings=_key_bindings(),
        prompt_continuation=lambda width, line, wrap: "...  ".rjust(width))
    while True:
        try:
            text = session.prompt("ppl> ")
        except KeyboardInterrupt:  # Ctrl-C drops the current input
            continue
        except EOFError:
            return 0
        try:
            if not repl.handle(text):
                return 0
        except KeyboardInterrupt:
            repl.err.write("\ninterrupted\n")


def _key_bindings():
    from prompt_toolkit.filters import has_completions
    from prompt_toolkit.key_binding import KeyBindings
    kb = KeyBindings()

    @kb.add("enter", filter=~has_completions)
    def _(event):
        buf = event.current_buffer
        if balanced(buf.text):
            buf.validate_and_handle()
        else:
            buf.insert_text("\n")

    return kb


class Completer(_CompleterBase):
    """Completes `:commands`, the model's names, distributions, functions and keywords."""

    def __init__(self, repl: Repl):
        self.repl = repl

    def candidates(self, text_before: str) -> List[str]:
        from .syntax.highlight import KEYWORDS, TYPES, distribution_names, function_names
        stripped = text_before.lstrip()
        if stripped.startswith(":") and " " not in stripped:
            return [":" + c for c in COMMANDS]
        if stripped.startswith(":"):
            names = self.repl.names()
            if self.repl.idata is not None:
                from .runtime.results import summary_source
                names = sorted(set(names) | set(summary_source(self.repl.idata).data_vars))
            return names
        before = text_before.rstrip()
        word = _last_word(text_before)
        if before[: len(before) - len(word)].rstrip().endswith("~"):
            return distribution_names()  # after "~" only a distribution fits
        return (self.repl.names() + distribution_names() + function_names()
                + list(KEYWORDS) + list(TYPES))

    def get_completions(self, document, complete_event):
        from prompt_toolkit.completion import Completion
        before = document.text_before_cursor
        word = before.lstrip() if before.lstrip().startswith(":") and " " not in before.lstrip() \
            else _last_word(before)
        seen = set()
        for c in self.candidates(before):
            if c.startswith(word) and c not in seen:
                seen.add(c)
                yield Completion(c, start_position=-len(word))


def _last_word(text: str) -> str:
    k = len(text)
    while k > 0 and (text[k - 1].isalnum() or text[k - 1] == "_"):
        k -= 1
    return text[k:]
