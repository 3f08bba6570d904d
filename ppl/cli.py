"""The `ppl` command: sample, check, graph."""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import List, Optional

from .syntax.errors import PPLError


def _model(path: str):
    from .api import Model
    p = Path(path)
    if not p.is_file():
        raise PPLError("model file not found", None, "give the path to a .ppl file", filename=str(path))
    return Model(p.read_text(), str(path))


def _print_warnings(model, stream=sys.stderr):
    for w in model.warnings:
        stream.write(w.format(model.source, model.filename) + "\n")


def cmd_sample(args) -> int:
    model = _model(args.model)
    _print_warnings(model)
    from .runtime.results import check_output_path, report, write_output
    if args.output:
        check_output_path(args.output)  # before the run, not after it
    t0 = time.perf_counter()
    idata = model.sample(args.data, method=args.method, chains=args.chains, draws=args.draws,
                         warmup=args.warmup, seed=args.seed, progress=_progress(model, args),
                         validate=not args.no_validate, prior=args.prior,
                         **_method_options(args))
    report(model, idata, time.perf_counter() - t0, args.vars, args.max_elements)
    if args.output:
        write_output(idata, args.output)
        print(f"wrote {args.output}")
    return 0


def _progress(model, args):
    """A bar on a terminal, a line every --heartbeat seconds elsewhere; none with --quiet."""
    if args.quiet:
        return False
    from .runtime.progress import Progress
    return Progress(model.plan(args.method).method, min_seconds=1.0, every=args.heartbeat)


def _method_options(args) -> dict:
    """--target-accept, --particles and every --option KEY=VALUE, as keyword arguments."""
    opts = {}
    if args.target_accept:
        opts["target_accept"] = args.target_accept
    if args.particles:
        opts["particles"] = args.particles
    for item in args.option or []:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise PPLError(f'--option "{item}" is not KEY=VALUE', None,
                           "for example --option resampling=stratified")
        opts[key.strip().replace("-", "_")] = _option_value(text.strip())
    return opts


def _option_value(text: str):
    """`true`/`false` as booleans, numbers as numbers, anything else as the text."""
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


def cmd_check(args) -> int:
    model = _model(args.model)
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
        lowered = model.lower(args.data, plan.method if plan is not None else None)
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
    return 0


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


def cmd_calibrate(args) -> int:
    """Simulation-based calibration of a method on a model (ppl/runtime/calibrate.py)."""
    model = _model(args.model)
    _print_warnings(model)
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
                        (lambda done, total: bar(done, total, unit="replicates")))
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
    return 0 if verdict == "passed" else 3


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


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="ppl", description="ppl — probabilistic programs compiled to JAX")
    sub = ap.add_subparsers(dest="command", required=True)
    s = sub.add_parser("sample", help="run inference and print a summary")
    s.add_argument("model")
    s.add_argument("--data", help="data as CmdStan-style JSON")
    s.add_argument("--method", default="auto", help="auto (default), nuts, …")
    s.add_argument("--chains", type=int, default=4)
    s.add_argument("--draws", type=int, default=1000)
    s.add_argument("--warmup", type=int, default=1000)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--target-accept", type=float, default=None)
    s.add_argument("--particles", type=int, default=None, help="particles (smc)")
    s.add_argument("--option", action="append", metavar="KEY=VALUE",
                   help="a method option, e.g. resampling=stratified, parameters=pmmh (repeatable)")
    s.add_argument("--output", help="write the InferenceData as NetCDF (atomically)")
    s.add_argument("--vars", nargs="+", help="variables to summarise")
    s.add_argument("--max-elements", type=int, default=20,
                   help="leave arrays with more elements out of the summary (default 20)")
    s.add_argument("--no-validate", action="store_true", help="skip translation validation")
    s.add_argument("--quiet", action="store_true", help="no progress report")
    s.add_argument("--heartbeat", type=float, default=5.0, metavar="SECONDS",
                   help="when stderr is not a terminal, a progress line at most every SECONDS "
                   "(default 5; 0: at every update)")
    s.add_argument("--prior", action="store_true",
                   help="also draw chains × draws from the prior, with data simulated: the "
                   "prior and prior_predictive groups (prior predictive checks)")
    s.set_defaults(func=cmd_sample)
    c = sub.add_parser("check", help="compile, validate and print the inference plan")
    c.add_argument("model")
    c.add_argument("--data")
    c.add_argument("--method", default="auto")
    c.add_argument("--ir", action="store_true", help="print the IR, and the IR after the plan's rewrites")
    c.set_defaults(func=cmd_check)
    k = sub.add_parser("calibrate", help="simulation-based calibration of an inference method")
    k.add_argument("model")
    k.add_argument("--data", help="data as CmdStan-style JSON (its shapes and covariates are used)")
    k.add_argument("--method", default="nuts")
    k.add_argument("--replicates", type=int, default=100)
    k.add_argument("--chains", type=int, default=2)
    k.add_argument("--draws", type=int, default=500)
    k.add_argument("--warmup", type=int, default=500)
    k.add_argument("--keep", type=int, default=99, help="posterior draws kept (thinned) per rank")
    k.add_argument("--seed", type=int, default=0)
    k.add_argument("--alpha", type=float, default=0.01, help="family-wise significance level")
    k.add_argument("--vars", nargs="+", help="variables to rank (default: every latent)")
    k.add_argument("--output", help="write the rank histograms as PNG (atomically)")
    k.add_argument("--quiet", action="store_true", help="no progress report")
    k.add_argument("--heartbeat", type=float, default=5.0, metavar="SECONDS",
                   help="when stderr is not a terminal, a progress line at most every SECONDS "
                   "(default 5)")
    k.set_defaults(func=cmd_calibrate)
    g = sub.add_parser("graph", help="write the model graph as Graphviz DOT (plate notation)")
    g.add_argument("model")
    g.add_argument("--output", "-o")
    g.set_defaults(func=cmd_graph)
    pl = sub.add_parser("plot", help="plot a saved run (a .nc file from --output) as PNG")
    pl.add_argument("fit", help="NetCDF file written by ppl sample --output")
    pl.add_argument("kind", nargs="?", default="trace",
                    choices=["trace", "rank", "pair", "ppc", "forest", "energy"],
                    help="the plot (default: trace)")
    pl.add_argument("--output", "-o", help="the PNG file (default: FIT_KIND.png here)")
    pl.add_argument("--vars", nargs="+", help="variables to plot (default: the first few)")
    pl.set_defaults(func=cmd_plot)
    r = sub.add_parser("repl", help="build and run a model interactively")
    r.add_argument("model", nargs="?", help="a .ppl file to start from")
    r.set_defaults(func=lambda args: __import__("ppl.repl", fromlist=["run"]).run(model_path=args.model))
    return ap


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except PPLError as e:
        sys.stderr.write(e.format() + "\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
    except Exception as e:  # a bug in ppl: short message, traceback only on request
        if os.environ.get("PPL_DEBUG"):
            raise
        sys.stderr.write(f"internal error in ppl: {type(e).__name__}: {e}\n"
                         "This is a bug in ppl; rerun with PPL_DEBUG=1 for the traceback and report it.\n")
        return 2


if __name__ == "__main__":
    sys.exit(main())
