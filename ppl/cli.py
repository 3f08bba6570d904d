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
    from .syntax.parser import read_source
    source = read_source(path)  # UTF-8 (BOM or not) or UTF-16; a framed error otherwise
    from .api import Model
    return Model(source, str(path))


def _print_warnings(model, stream=sys.stderr):
    for w in model.warnings:
        stream.write(w.format(model.source, model.filename) + "\n")


def _summary_vars(idata, max_elems: int, wanted: Optional[List[str]]):
    post = idata.posterior
    names = wanted or [n for n in post.data_vars]
    shown, hidden = [], []
    for n in names:
        if n not in post.data_vars:
            raise PPLError(f'no variable "{n}" in the posterior', None,
                           "variables: " + ", ".join(post.data_vars))
        size = int(post[n].size // (post.sizes["chain"] * post.sizes["draw"]))
        (shown if wanted or size <= max_elems else hidden).append(n)
    return shown, hidden


def cmd_sample(args) -> int:
    model = _model(args.model)
    _print_warnings(model)
    from .runtime.results import convergence_warnings, summarize, summary_table, write_netcdf
    t0 = time.perf_counter()
    idata = model.sample(args.data, method=args.method, chains=args.chains, draws=args.draws,
                         warmup=args.warmup, seed=args.seed,
                         progress=not args.quiet and sys.stderr.isatty(),
                         validate=not args.no_validate,
                         **_method_options(args))
    elapsed = time.perf_counter() - t0
    plan = model.last_plan
    print(f"method: {plan.method} — {plan.reason}")
    has_posterior = "posterior" in idata.groups()
    attrs = (idata.posterior if has_posterior else getattr(idata, idata.groups()[0])).attrs
    ev = attrs.get("log_evidence")
    if ev is not None:
        se = attrs.get("log_evidence_se")
        print(f"log evidence: {float(ev):.4f}" + (f" ± {float(se):.4f}" if se is not None else ""))
    smoothed = [k[len("smoothed_"):] for k in attrs if k.startswith("smoothed_") and not k.endswith("_se")]
    if smoothed:
        print(f"additive functionals, E[· | data] ({attrs.get('smoothing_method', '')}):")
        for n in smoothed:
            se = attrs.get(f"smoothed_{n}_se")
            print(f"  {n} = {float(attrs[f'smoothed_{n}']):.6g}" + (f" ± {float(se):.2g}" if se is not None else ""))
    if attrs.get("marginals"):
        _print_exact_marginals(attrs["marginals"], args.max_elements)
    shown, hidden = _summary_vars(idata, args.max_elements, args.vars) if has_posterior else ([], [])
    df = summarize(idata, var_names=shown) if has_posterior and shown else None
    if shown:
        print(summary_table(df, var_names=shown))
    if hidden:
        print(f"(not shown, more than {args.max_elements} elements each: {', '.join(hidden)}; "
              "use --vars NAME to show them)")
    stats = idata.sample_stats if "sample_stats" in idata.groups() else None
    if stats is not None and "diverging" in stats and has_posterior:
        n_div = int(stats["diverging"].sum())
        print(f"{idata.posterior.sizes['chain']} chains × {idata.posterior.sizes['draw']} draws, "
              f"{n_div} divergent transitions, {elapsed:.2f} s")
    # R-hat and ESS judge Markov chains; independent filters or exact draws are not chains
    algorithm = str(attrs.get("smc_algorithm", ""))
    mcmc = attrs.get("inference_method") == "nuts" or algorithm.startswith("particle Gibbs")
    multi_chain = mcmc and has_posterior and idata.posterior.sizes.get("chain", 1) > 1
    checks = convergence_warnings(df) if multi_chain and df is not None else []
    for w in list(getattr(model, "last_warnings", [])) + checks:
        sys.stderr.write(f"warning: {w}\n")
    if args.output:
        write_netcdf(idata, args.output)
        print(f"wrote {args.output}")
    return 0


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


def _print_exact_marginals(text: str, max_elements: int) -> None:
    """Exact posterior probabilities (from enumeration), before the Monte Carlo summary."""
    import json
    import numpy as np
    marginals = json.loads(text)
    print("exact posterior marginals:")
    for name, m in marginals.items():
        probs = np.asarray(m["probabilities"])
        values = m["values"]
        if probs.ndim == 1:
            body = ", ".join(f"P({name}={v}) = {p:.6f}" for v, p in zip(values, probs))
            print(f"  {body}")
        else:
            flat = probs.reshape(-1, probs.shape[-1])
            for k, row in enumerate(flat[:max_elements]):
                idx = ", ".join(str(i + 1) for i in np.unravel_index(k, probs.shape[:-1]))
                print("  " + ", ".join(f"P({name}[{idx}]={v}) = {p:.6f}" for v, p in zip(values, row)))
    print()


def cmd_check(args) -> int:
    model = _model(args.model)
    g = model.graph
    print(f"{args.model}: ok")
    print("variables:")
    for v in g.variables():
        kind = "observed data" if v.observed else v.kind
        t = _type_text(model, v)
        extra = f" ~ {', '.join(sorted(set(v.dists)))}" if v.dists else ""
        print(f"  {v.name:<16} {kind:<14} {t}{extra}")
    if g.discrete_latents():  # how each discrete latent is handled (ppl/ir/discrete.py)
        from .ir.discrete import analyze
        print("discrete latents:")
        for line in analyze(g).describe():
            print("  " + line)
    plans = _loop_plans(model)
    if plans:
        print("loops:")
        for line in plans:
            print("  " + line)
    from .passes.base import choose, passes
    print("inference:")
    for name, p in passes().items():
        d = p.diagnose(g)
        print(f"  {name:<10} {'yes' if d else 'no '}  {d.reason}")
    try:
        plan = choose(g, args.method)
        print(f"plan: {plan.method} ({plan.reason})")
    except PPLError as e:
        print(f"plan: none — {e.message}")
    if args.data:
        lowered = model.lower(args.data)
        import jax
        if lowered.marginal is not None:  # discrete latents summed out: check the factorisation
            from .lower.marginalize import validate_marginal
            res = validate_marginal(lowered, jax.random.PRNGKey(0))
        else:
            res = lowered.validate(0)
        print(f"data: ok ({lowered.dim} unconstrained dimensions)")
        if res.get("checked"):
            print(f"validation: lowered log density = numpyro reference at {res['points']} random "
                  f"points (max |difference| {res['max_abs_diff']:.2g})")
        else:
            print(f"validation: skipped ({res['reason']})")
        _print_additive(g, lowered)
    _print_warnings(model, sys.stdout)
    return 0


def _print_additive(graph, lowered) -> None:
    """Which generated quantities the smc pass estimates as additive functionals, and why the
    others are not."""
    from .ir.statespace import find as find_form
    form, _ = find_form(graph)
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
    bar = Progress("calibrate", min_seconds=1.0) if not args.quiet and sys.stderr.isatty() else None
    cal = calibrate(model, args.data, method=args.method, replicates=args.replicates,
                    chains=args.chains, draws=args.draws, warmup=args.warmup, keep=args.keep,
                    seed=args.seed, variables=args.vars, output=args.output, progress=bar)
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


def _type_text(model, v):
    if v.type is None:
        return "(inferred)"
    from .syntax.errors import source_line
    s = v.type.span
    line = source_line(model.source, s.line)
    return line[s.col - 1:s.end_col - 1] if s.line == s.end_line and line else v.type.base


def _loop_plans(model):
    from .syntax import ast as A
    out = []

    def walk(body):
        for s in body:
            if isinstance(s, A.For):
                p = model.graph.loop_plan(s)
                why = f" (carries {', '.join(p.carried)}" + (
                    ", lag " + ", ".join(f"{n}[{s.var}-{k}]" for n, k in p.lags) if p.lags else "") + ")" \
                    if p.carried else ""
                out.append(f"line {s.span.line}: for {s.var} — density: {p.density}, "
                           f"sampling: {p.sample}{why}")
                walk(s.body)
            elif isinstance(s, A.If):
                walk(s.then)
                walk(s.orelse)
            elif isinstance(s, A.Generated):
                walk(s.body)

    walk(model.graph.body)
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
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_sample)
    c = sub.add_parser("check", help="compile, validate and print the inference plan")
    c.add_argument("model")
    c.add_argument("--data")
    c.add_argument("--method", default="auto")
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
    k.add_argument("--quiet", action="store_true")
    k.set_defaults(func=cmd_calibrate)
    g = sub.add_parser("graph", help="write the model graph as Graphviz DOT (plate notation)")
    g.add_argument("model")
    g.add_argument("--output", "-o")
    g.set_defaults(func=cmd_graph)
    r = sub.add_parser("repl", help="build and run a model interactively")
    r.set_defaults(func=lambda args: __import__("ppl.repl", fromlist=["run"]).run())
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
