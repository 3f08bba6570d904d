"""The `ppl` command: sample, check, calibrate, graph, plot, repl.

Exit codes (docs/reliability.md): 0 success; 1 an error in the model, the data or the
arguments, reported as a framed message; 2 an internal error (a bug in ppl); 3 calibration
failed; 130 interrupted (SIGINT, Ctrl-C); 143 terminated (SIGTERM).

Everything that can be checked before the work is checked before it: the arguments as they
are parsed (types, ranges, output paths), then, once the model is compiled and its data bound,
the variable names, the method's options and the memory the run needs.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

from .syntax.errors import PPLError, PPLInternalError

EXIT_OK, EXIT_USER_ERROR, EXIT_INTERNAL_ERROR, EXIT_CALIBRATION_FAILED = 0, 1, 2, 3
# The front end limits nesting to 1000 levels (ppl/syntax/parser.py); the stages after it
# recurse a few frames per level.
RECURSION_LIMIT = 20_000
SEED_MAX = 2**64 - 1  # seeds are hashed as 64-bit words (ppl/lower/random.py)
CALIBRATE_SEED_MAX = 2**63 - 1  # calibrate seeds jax.random.PRNGKey, a signed 64-bit integer


def _model(path: str):
    from .syntax.parser import read_source
    source = read_source(path)  # UTF-8 (BOM or not) or UTF-16; a framed error otherwise
    from .api import Model
    return Model(source, str(path))


def _print_warnings(model, stream=None):
    for w in model.warnings:
        (stream or sys.stderr).write(w.format(model.source, model.filename) + "\n")


def _print_data_warnings(warnings, stream=None):
    for w in warnings:
        (stream or sys.stderr).write(w + "\n")


def cmd_sample(args) -> int:
    from .runtime import distributed
    lead = distributed.initialize(args.coordinator, args.num_processes, args.process_id,
                                  args.chains)
    _check_devices(args)
    model = _model(args.model)
    if lead:
        _print_warnings(model)
    checked = _check_with_model(args, model)
    if lead:
        _print_data_warnings(checked.warnings)
    from .runtime.results import check_output_path, report, write_output
    if args.output and lead:
        check_output_path(args.output)  # its format, before the run (writable: as parsed)
    t0 = time.perf_counter()
    idata = model.sample(checked.data(args), method=args.method, chains=args.chains,
                         draws=args.draws, warmup=args.warmup, seed=args.seed,
                         progress=_progress(model, args) if lead else False,
                         validate=not args.no_validate, prior=args.prior, **checked.options)
    if not lead:  # every process holds all chains; process 0 reports and writes
        return EXIT_OK
    report(model, idata, time.perf_counter() - t0, args.vars, args.max_elements)
    if args.output:
        write_output(idata, args.output)
        print(f"wrote {args.output}")
    return EXIT_OK


def _progress(model, args):
    """A bar on a terminal, a line every --heartbeat seconds elsewhere; none with --quiet."""
    if args.quiet:
        return False
    from .runtime.progress import Progress
    return Progress(model.plan(args.method).method, min_seconds=1.0, every=args.heartbeat)


def cmd_check(args) -> int:
    model = _model(args.model)
    checked = _check_with_model(args, model)
    from .ir import printer
    from .passes import PASSES, choose
    g = model.graph
    print(f"{args.model}: ok")
    print("variables:")
    for v in g.variables():
        kind = "observed data" if v.observed else v.kind
        extra = f" ~ {', '.join(sorted(set(v.dists)))}" if v.dists else ""
        print(f"  {v.name:<16} {kind:<14} {printer.vartype(v.type) if v.type else '(inferred)'}{extra}")
    loops = _loop_plans(model.ir)
    if loops:
        print("loops:")
        for line in loops:
            print("  " + line)
    print("inference:")
    for name, p in PASSES.items():
        d = p.diagnose(g)
        print(f"  {name:<10} {'yes' if d else 'no '}  {d.reason}")
    try:
        plan = choose(g, args.method)
        print(f"plan: {plan.method} ({plan.reason})")
        for line in PASSES[plan.method].describe(g):
            print(line)
    except PPLError as e:
        plan = None
        print(f"plan: none — {e.message}")
    if getattr(args, "ir", False):
        print("IR as built:")
        print(printer.program(model.ir))
        if plan is not None:
            rewritten = PASSES[plan.method].rewrite(model.ir, {})
            if rewritten.rewrites:
                print(f"IR after {plan.method}'s rewrites:")
                print(printer.program(rewritten))
    if args.data:
        lowered = model.lower(checked.data(args), plan.method if plan is not None else None)
        if plan is not None and plan.method == "mhg":
            _check_mhg(PASSES["mhg"], lowered)
            _print_warnings(model, sys.stdout)
            _print_data_warnings(checked.warnings, sys.stdout)
            return EXIT_OK
        if plan is not None and plan.method == "vsde":  # the process's data checks (ppl/lower/process.py)
            from .lower.process import ProcessModel
            pm = ProcessModel(lowered)
            print(f'data: ok (process "{pm.name}": {len(pm.obs_times)} observation time(s) in '
                  f"({pm.start:g}, {pm.end:g}]; {len(pm.statics)} static random variable(s))")
            res = {}
        elif plan is not None and plan.method == "smc" and "discretise_process" in lowered.ir.rewrites:
            from .lower.random import rng_key  # a linear process as exact Gaussian steps
            program = PASSES["smc"].build(lowered, {"chains": 1, "draws": 10})
            res = PASSES["smc"].validate(program, rng_key(0))
            print(f'data: ok (process "{program.name}" read at {program.times.size} increasing '
                  "times: exact Gaussian steps between them)")
            print("validation: the discretised steps against the linear SDE's exact transitions "
                  f"(max relative difference {res['discretisation_max_rel_diff']:.2g})")
            res = {}
        else:
            res = PASSES[plan.method].validate(PASSES[plan.method].build(lowered, {"chains": 1}), 0) \
                if plan is not None and plan.method == "enumerate" else _validate_density(lowered)
            print(f"data: ok ({lowered.dim} unconstrained dimensions)")
        if res.get("checked"):
            ref = res.get("reference", "numpyro reference")
            print(f"validation: lowered log density = {ref} at {res['points']} random "
                  f"points (max |difference| {res['max_abs_diff']:.2g})")
        for note in res.get("nonfinite", []):
            print(f"warning: the log density is not finite at the random points: {note}")
        _print_additive(lowered)
    _print_warnings(model, sys.stdout)
    _print_data_warnings(checked.warnings, sys.stdout)
    return EXIT_OK


def _check_mhg(p, lowered) -> None:
    """`ppl check --data` for the mhg pass: the padded model it derived, its moves and the
    involution checks at random points."""
    program = p.build(lowered, {"chains": 1})
    print(f"data: ok (padded: {lowered.dim} unconstrained coordinates at the largest sizes)")
    for line in program.padded.describe() + program.describe_moves():
        print(line)
    res = p.validate(program, 0)
    for name, r in res["report"].items():
        print(f"validation: {name}: {r}")


def _validate_density(lowered):
    from .lower.validation import validate_density
    return validate_density(lowered, 0)


def _print_additive(lowered) -> None:
    """Which generated quantities the smc pass estimates as additive functionals, and why the
    others are not."""
    from .ir.statespace import find as find_form
    form, _ = find_form(lowered.graph)
    if form is None or not lowered.generated_names:
        return
    from .lower.additive import find as find_additive
    from .lower.statespace import SSMLowering
    found, other = find_additive(SSMLowering(lowered, form))
    print("generated quantities under smc:")
    for f in found:
        steps = ", ".join(f"{u.lo}..{u.hi}" for u in f.terms)
        print(f"  {f.name:<16} additive over steps {steps}: E[· | data] by PaRIS")
    for name, why in other.items():
        print(f"  {name:<16} not additive: {why}")


def _check_devices(args) -> None:
    """--devices N against this process's devices, before any work."""
    if getattr(args, "devices", None) is None:
        return
    from .algorithms.devices import local_devices
    try:
        local_devices(args.devices)
    except ValueError as e:
        raise UsageError(f"--devices {args.devices}: {str(e).split('; ')[0]}", None,
                         str(e).split("; ")[1] if "; " in str(e) else None) from None


def cmd_calibrate(args) -> int:
    """Simulation-based calibration of a method on a model (ppl/runtime/calibrate.py)."""
    _check_devices(args)
    model = _model(args.model)
    _print_warnings(model)
    _print_data_warnings(_check_with_model(args, model).warnings)
    from .runtime.calibrate import calibrate
    from .runtime.progress import Progress
    bar = None if args.quiet else Progress("calibrate", min_seconds=1.0, every=args.heartbeat)
    if bar is not None:
        bar.compiling("compiling and running the first replicate")
    try:
        cal = calibrate(model, args.data, method=args.method, replicates=args.replicates,
                        chains=args.chains, draws=args.draws, warmup=args.warmup, keep=args.keep,
                        seed=args.seed, variables=args.vars, output=args.output,
                        progress=None if bar is None else
                        (lambda done, total: bar(done, total, unit="replicates")),
                        **({"devices": args.devices} if args.devices is not None else {}))
    except BaseException:
        if bar is not None:
            bar.close()
        raise
    if bar is not None:
        bar.finish()
    print(f"simulation-based calibration of {args.method}: {cal.replicates} replicates, ranks "
          f"among {cal.num_draws} posterior draws, {cal.seconds:.1f} s")
    print(cal.table())
    n = len(cal.rows())
    verdict = "passed" if cal.passed(args.alpha) else "FAILED"
    print(f"calibration {verdict}: smallest p-values: chi-square {cal.min_p_value():.3g}, KS "
          f"{cal.min_ks_p_value():.3g} (threshold {args.alpha:g}/{2 * n} = {args.alpha / (2 * n):.3g}, "
          f"Bonferroni over {n} quantities × 2 tests)")
    if args.output:
        print(f"wrote {args.output}")
    return EXIT_OK if verdict == "passed" else EXIT_CALIBRATION_FAILED


def _loop_plans(ir):
    from .ir import nodes as N
    out = []

    def walk(body):
        for s in body:
            if isinstance(s, N.Loop):
                p = s.plan
                why = f" (carries {', '.join(p.carried)}" + (
                    ", lag " + ", ".join(f"{n}[{s.var}-{k}]" for n, k in p.lags) if p.lags else "") + ")" \
                    if p.carried else ""
                out.append(f"line {s.span.line}: for {s.var} — density: {p.density}, "
                           f"sampling: {p.sample}{why}")
                walk(s.body)
            elif isinstance(s, (N.Branch,)):
                walk(s.then)
                walk(s.orelse)
            elif isinstance(s, N.Generated):
                walk(s.body)

    walk(ir.body)
    return out


def cmd_graph(args) -> int:
    model = _model(args.model)
    from .ir.dot import to_dot
    dot = to_dot(model.graph, Path(args.model).stem)
    if args.output:
        from .runtime.files import write_text_atomic
        write_text_atomic(args.output, dot)
    else:
        sys.stdout.write(dot)
    return 0


def cmd_plot(args) -> int:
    """ArviZ's plots of a saved run as PNG (ppl/runtime/plots.py)."""
    from .runtime.plots import load, plot
    idata = load(args.fit)
    output = args.output or f"{Path(args.fit).stem}_{args.kind}.png"
    plot(idata, args.kind, output, args.vars, name=args.fit)
    print(f"wrote {output}")
    return 0


# ================================================================ the checks before the work
# The passes take keyword options and would drop a key they do not know: each pass lists the
# ones it takes (its `options`), and an --option outside that list is an error here.
# What each option's value must be: (test, words).
_POSITIVE_INT = (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
                 "a positive integer")
_FRACTION = (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < 1,
             "a number strictly between 0 and 1")
_BOOL = (lambda v: isinstance(v, bool), "true or false")


def _choice(*words):
    return (lambda v: v in words, "one of " + ", ".join(words))


OPTION_VALUES = {
    "particles": _POSITIVE_INT, "max_tree_depth": _POSITIVE_INT, "mh_steps": _POSITIVE_INT,
    "evidence_draws": _POSITIVE_INT, "evidence_particles": _POSITIVE_INT,
    "paris_draws": _POSITIVE_INT, "num_mcmc_steps": _POSITIVE_INT, "max_steps": _POSITIVE_INT,
    "max_size": _POSITIVE_INT, "devices": _POSITIVE_INT,
    "target_accept": _FRACTION, "target_ess": _FRACTION,
    "ess_threshold": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v <= 1,
                      "a number in (0, 1]"),
    "dense_mass": _BOOL, "paris": _BOOL,
    "resampling": _choice("systematic", "stratified", "multinomial", "residual"),
    "proposal": _choice("auto", "bootstrap", "guided"),
    "parameters": _choice("gibbs", "pmmh"),
    "dtype": _choice("float64", "float32"),
    "shard": _choice("auto", "chains", "particles"),
}
# options that have their own flag
_FLAGS = {"chains": "--chains", "draws": "--draws", "warmup": "--warmup", "seed": "--seed",
          "devices": "--devices"}


def known_options(method: str) -> Optional[frozenset]:
    """The --option keys `method` takes (its pass's `options`), or None for a pass that does
    not list them (then they are not checked)."""
    from .passes import PASSES
    declared = getattr(PASSES.get(method), "options", None)
    return frozenset(declared) if declared is not None else None


def _option_value(text: str):
    """`true`/`false` as booleans, numbers as numbers, anything else as the text."""
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for convert in (int, float):
        try:
            return convert(text)
        except (ValueError, OverflowError):
            pass
    return text


def _method_options(args) -> dict:
    """--target-accept, --particles and every --option KEY=VALUE, as keyword arguments; keys
    and values checked where the method is known only by its name (see _check_options)."""
    opts = {}
    if getattr(args, "target_accept", None) is not None:
        opts["target_accept"] = args.target_accept
    if getattr(args, "particles", None) is not None:
        opts["particles"] = args.particles
    if getattr(args, "devices", None) is not None:
        opts["devices"] = args.devices
    for item in getattr(args, "option", None) or []:
        key, sep, text = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise PPLError(f'--option "{item}" is not KEY=VALUE', None,
                           "for example --option resampling=stratified")
        if key in _FLAGS:
            raise PPLError(f'--option {key}=… sets what {_FLAGS[key]} sets', None,
                           f"use {_FLAGS[key]} {text.strip() or 'N'}")
        value = _option_value(text.strip())
        rule = OPTION_VALUES.get(key)
        if rule is not None and not rule[0](value):
            raise PPLError(f'--option {key}={text.strip()}: {key} must be {rule[1]}', None,
                           f"for example --option {key}={_example(key)}")
        opts[key] = value
    return opts


_EXAMPLES = {"target_accept": "0.9", "target_ess": "0.5", "ess_threshold": "0.5",
             "dtype": "float32", "shard": "auto",
             "dense_mass": "true", "paris": "false", "resampling": "systematic",
             "proposal": "auto", "parameters": "gibbs"}


def _example(key: str) -> str:
    return _EXAMPLES.get(key, "100")


def _check_options(options: dict, method: str) -> None:
    known = known_options(method)
    if known is None:
        return
    for key in options:
        if key not in known:
            flag = {"target_accept": "--target-accept", "particles": "--particles",
                    "devices": "--devices"}.get(key)
            what = flag or f"--option {key}"
            from .syntax.errors import did_you_mean
            near = did_you_mean(key, known)
            takes = ", ".join(sorted(known)) or "none"
            raise PPLError(f"{what}: {method} has no option {key}", None,
                           (near + " " if near else "") + f"{method} takes: {takes}")


@dataclass
class Checked:
    options: dict = field(default_factory=dict)
    warnings: List[str] = field(default_factory=list)  # from binding the data, to print
    bound: object = None  # the data, bound once (ppl.check.data.BoundData)

    def data(self, args):
        """What to give the model as its data: the data bound here, not the file again."""
        return self.bound if self.bound is not None else getattr(args, "data", None)


def _check_with_model(args, model) -> Checked:
    """The checks that need the compiled model and its data, before any inference work: the
    data (bound once here, so its warnings are printed), --vars, the method's options, and
    the memory the run needs."""
    out = Checked()
    method = getattr(args, "method", "auto")
    if hasattr(args, "option") or hasattr(args, "particles"):
        out.options = _method_options(args)
    bound = None
    if getattr(args, "data", None):
        from .check.data import bind_data, load_json
        bound = out.bound = bind_data(model.checked, load_json(args.data), Path(args.data).name)
        out.warnings = [w.format(None, args.data) for w in bound.warnings]
    if args.command == "check":
        return out
    plan_method = model.plan(method).method
    _check_options(out.options, plan_method)
    fixed = bound.fixed if bound is not None else {}
    if getattr(args, "vars", None):
        kinds = ("latent", "param") if args.command == "calibrate" else \
            ("latent", "param", "deterministic", "generated")
        names = [n for n, v in model.checked.variables.items() if v.kind in kinds and n not in fixed]
        for n in args.vars:
            if n not in names:
                from .syntax.errors import did_you_mean
                info = model.checked.variables.get(n)
                why = (f'"{n}" is {info.kind}' + (" held fixed by the data" if n in fixed else "")
                       if info is not None else f'the model has no variable "{n}"')
                near = did_you_mean(n, names)
                raise PPLError(f"--vars {n}: {why}", None,
                               (near + " " if near else "") + "variables: " + (", ".join(names) or "none"))
    if args.command == "calibrate":
        observed = [n for n, v in model.checked.variables.items() if v.observed]
        if not observed:
            raise PPLError("calibrate needs a model that observes data", None,
                           "simulation-based calibration draws data sets from the model: give it "
                           "`y ~ …` statements on data")
    if bound is not None:
        from .check.data import check_memory
        src, fname = model.source, model.filename

        def err(msg, span, hint=None):
            return PPLError(msg, span, hint, src, fname)
        check_memory(model.checked, bound.shapes, bound.fixed, err, chains=args.chains,
                     draws=args.draws, run=f"the run ({args.chains} chains × {args.draws} draws)")
    return out


# ================================================================ arguments
class UsageError(PPLError):
    """A command-line argument that cannot be used (exit 1, like every user error)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse would exit 2, which ppl keeps for its own bugs
        raise UsageError(message, None, f"see `{self.prog} --help`")


def _integer(low: int, high: Optional[int] = None):
    """An argparse type: an integer in [low, high]."""
    def integer(text: str) -> int:
        t = text.strip()
        digits = t.lstrip("+-")
        if not digits.isdigit():
            raise argparse.ArgumentTypeError(f'"{text}" is not an integer')
        within = f"from {low} to {high}" if high is not None else f"at least {low}"
        if len(digits) > 30:
            raise argparse.ArgumentTypeError(f"{text[:12]}… is out of range: it must be {within}")
        v = int(t)
        if v < low or (high is not None and v > high):
            raise argparse.ArgumentTypeError(f"{v} is out of range: it must be {within}")
        return v
    return integer


def _fraction(text: str) -> float:
    """An argparse type: a number strictly between 0 and 1."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'"{text}" is not a number') from None
    if not 0 < v < 1:
        raise argparse.ArgumentTypeError(f"{text} is out of range: it must be strictly between 0 and 1")
    return v


def _nonnegative(text: str) -> float:
    """An argparse type: a finite number, zero or more."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'"{text}" is not a number') from None
    if not (0 <= v < float("inf")):
        raise argparse.ArgumentTypeError(f"{text} is out of range: it must be 0 or more")
    return v


def _output_path(text: str) -> str:
    """An argparse type: a file that can be written (atomically) — checked before the work,
    so a long run is not lost to a missing folder."""
    from .runtime.files import check_writable
    p = Path(text)
    if text.endswith(("/", os.sep)) or p.is_dir():
        raise argparse.ArgumentTypeError(f'"{text}" is a folder: give a file name, e.g. {p / "fit.nc"}')
    folder = p.parent if str(p.parent) else Path(".")
    if not folder.exists():
        raise argparse.ArgumentTypeError(f'the folder "{folder}" does not exist')
    if not folder.is_dir():
        raise argparse.ArgumentTypeError(f'"{folder}" is not a folder')
    try:
        check_writable(text)
    except OSError as e:
        raise argparse.ArgumentTypeError(f'cannot write in "{folder}": {e.strerror or e}') from None
    return text


def _add(p, *names, **kw):
    """add_argument with the default shown in the help."""
    if "default" in kw and kw["default"] is not None and kw.get("action") is None:
        kw["help"] = f"{kw.get('help', '')} (default: {kw['default']})".strip()
    return p.add_argument(*names, **kw)


def _sampling_arguments(p, chains: int, draws: int, warmup: int, seed_max: int) -> None:
    _add(p, "--chains", type=_integer(1), default=chains, metavar="N", help="number of chains")
    _add(p, "--draws", type=_integer(1), default=draws, metavar="N",
         help="draws kept per chain")
    _add(p, "--warmup", type=_integer(0), default=warmup, metavar="N",
         help="warm-up (adaptation) iterations per chain, not kept")
    _add(p, "--seed", type=_integer(0, seed_max), default=0, metavar="S",
         help=f"random seed, an integer from 0 to {seed_max}")


def _devices_argument(p) -> None:
    _add(p, "--devices", type=_integer(1), default=None, metavar="N",
         help="local devices to spread chains (and particles) over; each chain's draws are the "
              "same on any number (default: one per core; on CPU, more devices than cores need "
              "XLA_FLAGS=--xla_force_host_platform_device_count=N)")


def _distributed_arguments(p) -> None:
    _add(p, "--coordinator", metavar="HOST:PORT", default=None,
         help="jax.distributed: the address of process 0 (every process runs the same command; "
              "process 0 prints and writes the output). Default: JAX's own environment "
              "detection (Slurm, Kubernetes, ...) when --num-processes is given")
    _add(p, "--num-processes", type=_integer(1), default=None, metavar="P",
         help="jax.distributed: the number of processes")
    _add(p, "--process-id", type=_integer(0), default=None, metavar="I",
         help="jax.distributed: this process's index, 0 … P-1")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    ap = _Parser(prog="ppl", description="ppl — probabilistic programs compiled to JAX",
                 epilog="exit codes: 0 ok, 1 error in the model, data or arguments, 2 internal "
                        "error, 3 calibration failed, 130 interrupted, 143 terminated")
    ap.add_argument("--version", action="version", version=f"ppl {__version__}")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("sample", help="run inference and print a summary",
                       description="Run inference on MODEL and print a posterior summary.")
    s.add_argument("model", metavar="MODEL", help="the .ppl model file")
    _add(s, "--data", metavar="FILE", help="data as CmdStan-style JSON")
    _add(s, "--method", default="auto", metavar="NAME",
         help="inference method: auto (the first that can run), nuts, smc, enumerate, vsde")
    _sampling_arguments(s, chains=4, draws=1000, warmup=1000, seed_max=SEED_MAX)
    _add(s, "--target-accept", type=_fraction, default=None, metavar="P",
         help="target acceptance rate, strictly between 0 and 1 (default: the method's: 0.8 for nuts)")
    _add(s, "--particles", type=_integer(1), default=None, metavar="N",
         help="number of particles (smc; default: the method's)")
    _devices_argument(s)
    _distributed_arguments(s)
    _add(s, "--option", action="append", metavar="KEY=VALUE",
         help="a method option, e.g. resampling=stratified or parameters=pmmh (repeatable); "
              "unknown keys are an error")
    _add(s, "--output", type=_output_path, metavar="FILE",
         help="write the draws, by extension: .nc NetCDF (the whole InferenceData), .csv Stan CSV "
              "(atomically; checked writable before the run)")
    _add(s, "--vars", nargs="+", metavar="NAME",
         help="variables to summarise (default: all with at most --max-elements elements)")
    _add(s, "--max-elements", type=_integer(0), default=20, metavar="N",
         help="leave arrays with more elements out of the summary")
    _add(s, "--no-validate", action="store_true",
         help="skip translation validation (default: validate)")
    _add(s, "--quiet", action="store_true",
         help="no progress report (default: a bar on a terminal, lines elsewhere)")
    _add(s, "--heartbeat", type=_nonnegative, default=5.0, metavar="SECONDS",
         help="when stderr is not a terminal, a progress line at most every SECONDS "
              "(0: at every update)")
    _add(s, "--prior", action="store_true",
         help="also draw chains × draws from the prior, with data simulated: the prior and "
              "prior_predictive groups, for prior predictive checks (default: not)")
    s.set_defaults(func=cmd_sample)

    c = sub.add_parser("check", help="compile, validate and print the inference plan",
                       description="Compile MODEL, check its data and print the inference plan.")
    c.add_argument("model", metavar="MODEL", help="the .ppl model file")
    _add(c, "--data", metavar="FILE", help="data as CmdStan-style JSON: bound, lowered and validated")
    _add(c, "--method", default="auto", metavar="NAME", help="the method to plan for")
    _add(c, "--ir", action="store_true",
         help="print the IR, and the IR after the plan's rewrites (default: not)")
    c.set_defaults(func=cmd_check)

    k = sub.add_parser("calibrate", help="simulation-based calibration of an inference method",
                       description="Simulation-based calibration: replicate data from the prior, "
                                   "infer, and test the ranks for uniformity.")
    k.add_argument("model", metavar="MODEL", help="the .ppl model file")
    _add(k, "--data", metavar="FILE",
         help="data as CmdStan-style JSON (its shapes and covariates are used)")
    _add(k, "--method", default="nuts", metavar="NAME", help="the method to calibrate")
    _add(k, "--replicates", type=_integer(1), default=100, metavar="N",
         help="simulated data sets")
    _sampling_arguments(k, chains=2, draws=500, warmup=500, seed_max=CALIBRATE_SEED_MAX)
    _devices_argument(k)
    _add(k, "--keep", type=_integer(1), default=99, metavar="N",
         help="posterior draws kept (thinned) per rank; at most chains × draws")
    _add(k, "--alpha", type=_fraction, default=0.01, metavar="P",
         help="family-wise significance level, strictly between 0 and 1")
    _add(k, "--vars", nargs="+", metavar="NAME", help="variables to rank (default: every latent)")
    _add(k, "--output", type=_output_path, metavar="FILE",
         help="write the rank histograms as PNG (atomically)")
    _add(k, "--quiet", action="store_true",
         help="no progress report (default: a bar on a terminal, lines elsewhere)")
    _add(k, "--heartbeat", type=_nonnegative, default=5.0, metavar="SECONDS",
         help="when stderr is not a terminal, a progress line at most every SECONDS "
              "(0: at every update)")
    k.set_defaults(func=cmd_calibrate)

    g = sub.add_parser("graph", help="write the model graph as Graphviz DOT (plate notation)",
                       description="Write MODEL's graph as Graphviz DOT, in plate notation.")
    g.add_argument("model", metavar="MODEL", help="the .ppl model file")
    _add(g, "--output", "-o", type=_output_path, metavar="FILE",
         help="write the DOT text to FILE (atomically; default: standard output)")
    g.set_defaults(func=cmd_graph)

    pl = sub.add_parser("plot", help="plot a saved run (a .nc file from --output) as PNG",
                        description="ArviZ's plots of a saved run, as PNG.")
    pl.add_argument("fit", metavar="FIT", help="NetCDF file written by ppl sample --output")
    pl.add_argument("kind", nargs="?", default="trace",
                    choices=["trace", "rank", "pair", "ppc", "forest", "energy"],
                    help="the plot (default: trace)")
    _add(pl, "--output", "-o", type=_output_path, metavar="FILE",
         help="the PNG file (atomically; default: FIT_KIND.png here)")
    _add(pl, "--vars", nargs="+", metavar="NAME", help="variables to plot (default: the first few)")
    pl.set_defaults(func=cmd_plot)

    r = sub.add_parser("repl", help="build and run a model interactively",
                       description="An interactive session: build and run a model line by line.")
    r.add_argument("model", nargs="?", metavar="MODEL", help="a .ppl file to start from")
    r.set_defaults(func=_run_repl)
    return ap


def _run_repl(args) -> int:
    # JAX, numpyro and networkx first, while Ctrl-C still ends the process cleanly: in the
    # session it raises KeyboardInterrupt, and one landing inside an import would leave that
    # module half-initialised for the rest of the session
    from . import api  # noqa: F401
    from .runtime import signals
    signals.uninstall()  # Ctrl-C belongs to the session: it stops a line, not the process
    return __import__("ppl.repl", fromlist=["run"]).run(model_path=args.model) or EXIT_OK


def _check_args(args) -> None:
    """The checks across arguments (each argument alone is checked as it is parsed)."""
    if args.command == "calibrate" and args.keep > args.chains * args.draws:
        raise UsageError(f"--keep {args.keep} is more than the {args.chains * args.draws} draws of "
                         f"a replicate (--chains {args.chains} × --draws {args.draws})", None,
                         "keep at most chains × draws")


# ================================================================ the entry point
def _out_of_memory(e: BaseException) -> Optional[str]:
    """The first line of an out-of-memory error, from Python or XLA; None for anything else."""
    if isinstance(e, MemoryError):
        return str(e).strip().splitlines()[0] if str(e).strip() else "out of memory"
    text = str(e)
    if "RESOURCE_EXHAUSTED" in text or "Out of memory" in text and "Runtime" in type(e).__name__:
        lines = [ln for ln in text.strip().splitlines() if ln.strip()]
        return lines[0] if lines else "out of memory"
    return None


def run(argv: Optional[List[str]]) -> int:
    """Parse, check and run one command; the exit code. Every error becomes a message."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # --help, --version
        return int(e.code or 0) if not isinstance(e.code, str) else EXIT_USER_ERROR
    except PPLError as e:
        sys.stderr.write(e.format() + "\n")
        return EXIT_USER_ERROR
    try:
        _check_args(args)
        if sys.getrecursionlimit() < RECURSION_LIMIT:
            sys.setrecursionlimit(RECURSION_LIMIT)
        return args.func(args)
    except PPLInternalError as e:
        sys.stderr.write(e.format() + "\n")
        return EXIT_INTERNAL_ERROR
    except PPLError as e:
        sys.stderr.write(e.format() + "\n")
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        sys.stderr.write("ppl: interrupted (SIGINT, Ctrl-C)\n")
        return 130
    except BrokenPipeError:  # `ppl check m.ppl | head`: the reader left
        return EXIT_USER_ERROR
    except Exception as e:
        oom = _out_of_memory(e)
        if oom is not None and not os.environ.get("PPL_DEBUG"):
            sys.stderr.write(PPLError(f"out of memory: {oom}", None,
                                      "use fewer chains, draws or particles, or less data; "
                                      "`ppl check` shows the model's size").format() + "\n")
            return EXIT_USER_ERROR
        if os.environ.get("PPL_DEBUG"):
            raise
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        sys.stderr.write(f"internal error in ppl: {type(e).__name__}: {first}\n"
                         "This is a bug in ppl; rerun with PPL_DEBUG=1 for the traceback and report it.\n")
        return EXIT_INTERNAL_ERROR


def main(argv: Optional[List[str]] = None) -> int:
    """The `ppl` command. Called without arguments it is the process (the console script,
    `python -m ppl`): it takes over SIGINT and SIGTERM first, and ends the process itself with
    the exit code, without waiting for XLA's threads. Called with a list (tests, embedding),
    it returns the exit code."""
    if argv is not None:
        return run(argv)
    from .runtime import signals
    signals.install()  # before anything slow: JAX is imported later, on demand
    code = EXIT_INTERNAL_ERROR
    try:
        code = run(None)
    finally:
        _exit_now(code)
    return code  # pragma: no cover


def _exit_now(code: int) -> None:
    """Flush and leave. os._exit skips the interpreter's teardown, where XLA's compile threads
    still running can abort the process ("terminate called after throwing …", exit 134)."""
    from .runtime import files, signals
    try:
        import logging
        logging.shutdown()
    except Exception:
        pass
    with files.LOCK:  # not in the middle of a rename
        signals.exit_process(code)


if __name__ == "__main__":
    main()
