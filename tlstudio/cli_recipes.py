"""``tlstudio train`` with --compare-baseline, --compare-scratch or --find-recipe: honest
comparisons over seeds and the recipe search, printed as tables (or one JSON object).

Called by :func:`tlstudio.cli.cmd_train` with the built project and its progress display;
this module never imports the CLI (no import circle)."""
from __future__ import annotations

import json

from .cli_common import EXIT_FAILED as FAILED
from .cli_common import EXIT_OK as OK
from .cli_common import EXIT_STOPPED as STOPPED
from .cli_common import _console, _err


def run_comparison(args, plugins, project, show, kind: str) -> int:
    """``--compare-baseline`` (kind "baseline") or ``--compare-scratch`` (kind "scratch")."""
    from tlstudio.core.analysis.compare import compare_with_baseline, compare_with_scratch
    from tlstudio.core.engine import RunControl

    try:
        if kind == "baseline":
            cmp = compare_with_baseline(project, args.compare_seeds, args.compare_metric, on_event=show,
                                        control=RunControl(), runs_dir=args.runs_dir, plugins=plugins)
        else:
            cmp = compare_with_scratch(project, args.compare_seeds, args.compare_metric or "accuracy", on_event=show,
                                       control=RunControl(), runs_dir=args.runs_dir, plugins=plugins)
    except KeyboardInterrupt:
        _err("Interrupted.")
        return STOPPED
    finally:
        show.close()
    if args.json:
        print(json.dumps(cmp.to_dict(), default=str))
    else:
        from rich.table import Table

        title = "Against the plain recipe" if kind == "baseline" else "Negative-transfer check"
        t = Table(title=f"{title} — test {cmp.metric.replace('_', ' ')}")
        for c in ("arm", "recipe", "weights", "seeds", "per seed", "mean ± sd", "95% CI"):
            t.add_column(c, overflow="fold")
        for arm in (cmp.first, cmp.second):
            lo, hi = arm.ci95
            t.add_row(arm.name, arm.recipe, arm.weights, str(len(arm.values)), " ".join(f"{v:.3f}" for v in arm.values),
                      f"{arm.mean:.3f} ± {arm.sd or 0:.3f}" if arm.mean is not None else "–",
                      f"{lo:.3f}–{hi:.3f}" if lo is not None else "–")
        lo, hi = cmp.difference_ci95
        t.add_row(f"{cmp.first.name} − {cmp.second.name}", "paired by seed", "", str(len(cmp._paired())), "",
                  f"{cmp.difference:+.3f}" if cmp.difference is not None else "–",
                  f"{lo:+.3f} to {hi:+.3f}" if lo is not None else "–")
        con = _console()
        con.print(t)
        warn = cmp.negative_transfer if kind == "scratch" else cmp.does_not_help
        con.print(("[bold red]" if warn else "[green]") + cmp.verdict + ("[/bold red]" if warn else "[/green]"))
    failed = cmp.first.failures + cmp.second.failures
    for f in failed:
        _err(f"failed: {f}")
    return FAILED if failed and not cmp.complete else OK


def run_recipe_search(args, plugins, project, show) -> int:
    """``--find-recipe [--budget-minutes M]``: the search, its table, and the winner saved as
    the project's recipe (into the project file when one was given)."""
    from tlstudio.core.analysis.recipe import apply_recipe, find_recipe
    from tlstudio.core.engine import RunControl

    def on_event(e: dict) -> None:
        if e.get("kind") != "recipe":
            show(e)

    try:
        res = find_recipe(project, args.budget_minutes, args.compare_metric or "auto", epochs=args.epochs,
                          on_event=on_event, control=RunControl(), runs_dir=args.runs_dir, plugins=plugins)
    except KeyboardInterrupt:
        _err("Interrupted.")
        return STOPPED
    finally:
        show.close()
    saved = None
    if res.best is not None and project.path is not None and not args.no_save:
        from tlstudio.core.config import load_project

        # the file as it is, with the winner's technique and training (command-line overrides stay out)
        saved = apply_recipe(load_project(project.path), res.best, plugins).save(project.path)
    if args.json:
        print(json.dumps({**res.to_dict(), "saved_to": str(saved) if saved else None}, default=str))
    else:
        from rich.table import Table

        m = res.metric.replace("_", " ")
        t = Table(title=f"Recipe search — validation {m} (the test split held back)")
        for c in ("recipe", "epochs", f"validation {m}", "95% CI", "time (s)", "outcome"):
            t.add_column(c, overflow="fold")
        for a in res.arms:
            lo, hi = a.ci95
            t.add_row(a.name, f"{a.epochs_done}/{a.epochs}", f"{a.score:.3f}" if a.score is not None else "–",
                      f"{lo:.3f}–{hi:.3f}" if lo is not None else "–", f"{a.seconds:.0f}", a.status)
        con = _console()
        con.print(t)
        con.print(res.verdict)
        if saved:
            con.print(f"Saved as the project's recipe: {saved}")
        elif res.best is not None:
            con.print(f"The chosen run: {res.best.run_dir} (give a project file to save the recipe into it)")
    if res.stopped:
        return STOPPED
    return OK if res.best is not None else FAILED
