"""The ``tlstudio`` commands besides training: plugins, models, validate-data, predict, export,
report, doctor, decide, runs (the parser in :mod:`tlstudio.cli` calls them)."""
from __future__ import annotations

import json
from pathlib import Path

from .core.tasks.traits import manifest_traits, table_task, task_traits
from .cli_common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, _console, _err


def cmd_plugins(args, plugins) -> int:
    if args.enable or args.disable:
        name = args.enable or args.disable
        if name not in plugins.plugins:
            _err(f"No plugin named {name!r}. Known: {', '.join(sorted(plugins.plugins))}")
            return EXIT_USAGE
        plugins.set_enabled(name, bool(args.enable))
        print(f"{name}: {'enabled' if args.enable else 'disabled'} (remembered)")
        return EXIT_OK
    plugins.collect_all()
    rows = list(plugins.plugins.values())
    if args.json:
        print(json.dumps([{"name": p.name, "module": p.module, "distribution": p.dist, "version": p.version,
                           "builtin": p.builtin, "status": p.status, "errors": p.errors, "provides": p.provides,
                           "load_seconds": round(p.load_seconds, 3), "notes": p.notes,
                           "from_manifest": p.from_manifest}
                          for p in rows], indent=2))
        return EXIT_OK
    from rich.table import Table

    t = Table(title="Plugins" + (" (safe mode: third-party plugins off)" if plugins.safe_mode else ""))
    for c in ("plugin", "package", "status", "load (s)", "provides / error"):
        t.add_column(c, overflow="fold")
    for p in rows:
        style = {"failed": "red", "disabled": "dim"}.get(p.status, "green")
        what = "; ".join(p.errors + p.notes) if p.errors or p.notes else ", ".join(i for v in p.provides.values() for i in v)
        slow = not p.builtin and p.notes
        load = "manifest" if p.from_manifest else f"{p.load_seconds:.1f}"
        t.add_row(p.name, f"{p.dist} {p.version}", f"[{style}]{p.status}[/{style}]",
                  (f"[yellow]{load}[/yellow]" if slow else load), what)
    _console().print(t)
    return EXIT_OK


def cmd_models(args, plugins) -> int:
    from tlstudio.core.models import ModelLibrary

    lib = ModelLibrary(sources=plugins.model_sources() or None, extra_architectures=plugins.architectures() or None)
    st = lib.list_status()
    if args.json:
        print(json.dumps([s.__dict__ for s in st], indent=2, default=str))
        return EXIT_OK
    from rich.table import Table

    t = Table(title="Model catalog")
    for c in ("model", "ready", "params (M)", "ImageNet top-1", "weights found in / how to add"):
        t.add_column(c, overflow="fold")
    for s in st:
        t.add_row(s.name, "[green]ready[/green]" if s.ready else "[dim]not ready[/dim]", f"{s.params_m:.1f}",
                  f"{s.imagenet_top1:.1f}" if s.imagenet_top1 else "–", s.path if s.ready else s.how_to_add)
    con = _console()
    con.print(t)
    con.print(f"{sum(s.ready for s in st)} of {len(st)} models ready. Add weights with `tlstudio import-weights FILE` "
              "or by placing torchvision checkpoint files in your models folder or $TORCH_HOME/hub/checkpoints.")
    from tlstudio.core.models.huggingface import hf_model_choices

    text = hf_model_choices()
    con.print("Text models (Hugging Face folders, for --model of text techniques): "
              + ("; ".join(f"{c.name} ({c.model_type}, {c.path})" for c in text) if text else "none found")
              + ". Add one by copying its folder (config.json, weights, tokenizer) into your models folder.")
    return EXIT_OK


def cmd_import_weights(args, plugins) -> int:
    from tlstudio.core.models import ModelLibrary

    lib = ModelLibrary(sources=plugins.model_sources() or None)
    path = lib.import_weights(args.file, args.model)
    print(f"Imported as {path}")
    return EXIT_OK


def cmd_validate(args, plugins) -> int:
    from tlstudio.core.data import read_data

    from tlstudio.core.overrides import apply_assignment

    options = {}
    for o in args.option or []:
        apply_assignment(options, o, flag="--option", example="text_column=review")
    readers = plugins.readers() or None
    task = None if args.task in (None, "any") else args.task
    known = {*manifest_traits(), *(getattr(r, "task", "image-classification") for r in readers or [])}
    if task is not None and task not in known:
        _err(f"--task {task}: no installed reader reads data of this task (tasks: {', '.join(sorted(known))})")
        return EXIT_USAGE
    if readers:
        # readers of annotated images recognise their files by content: let them look first;
        # the text table reader takes any .csv, so it looks last
        readers = sorted(readers, key=lambda r: 0 if getattr(r, "annotation", None) else
                         2 if task_traits(getattr(r, "task", "")).texts else 1)
    cache = None
    if args.leakage:  # the leakage check's thumbnails are made in the validating decode: each file decoded once
        from tlstudio.core.analysis.leakage import FEATURE_SIZE
        from tlstudio.core.data.store import CacheRequest
        from tlstudio.core.settings import cache_dir

        cache = CacheRequest(cache_dir(), FEATURE_SIZE)
    table = read_data(args.path, args.format or "auto", options, readers, task=task, cache=cache)
    extra = validate_groups_and_leaks(args, table, plugins)
    if args.json:
        print(json.dumps(table.report.to_dict() | extra, indent=2, default=str))
    else:
        print(table.report.summary())
        for line in extra.get("lines", []):
            print(line)
    return EXIT_OK


def validate_groups_and_leaks(args, table, plugins) -> dict:
    """validate-data's patients/groups (and whether a stored split leaks one) and leakage check."""
    from tlstudio.core.data.split import check_split, group_summary, make_split

    out: dict = {"lines": []}
    if not hasattr(table, "labels") or getattr(table, "reader", None) is None or not len(table):
        return out
    assignments, where = None, ""
    if args.split:
        chk = check_split(Path(args.split), table)
        if chk.matches:
            assignments, where = chk.assignments, f"the stored split {args.split}"
        else:
            out["lines"].append(chk.message())
            out["split_problem"] = chk.message()
    if assignments is None and table.class_names:
        try:
            assignments = make_split(table, "auto", 0.15, 0.15, 0)
            where = "the split training would make (auto, 15% validation, 15% test, seed 0)"
        except Exception:  # noqa: BLE001 - a table that cannot be split is reported by its own warnings
            assignments = None
    gs = group_summary(table, assignments)
    if gs:
        out["groups"] = gs
        pg = gs["per_group"]
        out["lines"].append(f"Patients/groups: {gs['groups']:,} ({gs['items_with_group']:,} items; {pg['min']}–{pg['max']} per "
                            f"group, median {pg['median']:g})" + (f"; {gs['items_without_group']:,} items name none"
                                                                   if gs["items_without_group"] else "") + ".")
        if not gs["split_by_group"]:
            out["lines"].append("  Fewer than 3 patients are named (anonymised data?): images are split one by one.")
        elif assignments is not None:
            out["lines"].append(f"  {where}: " + (f"{len(gs['leaking']):,} group(s) lie in more than one split "
                                                  f"({gs['leaking_items']:,} items), e.g. {gs['leaking'][0]}: a leak"
                                                  if gs["leaking"] else "no group lies in two splits"))
    if args.leakage and assignments is not None and task_traits(table_task(table)).can("leakage-check"):
        from tlstudio.core.analysis.leakage import check_table_leaks

        lib = None
        if args.leakage_features:  # frozen features too (torch and a pretrained network: about 600 MB more)
            from tlstudio.core.models import ModelLibrary

            lib = ModelLibrary(sources=plugins.model_sources() or None)
        rep = check_table_leaks(table, assignments, library=lib, features=args.leakage_features)
        out["leakage"] = rep.to_dict() | {"split": where}
        out["lines"].append(rep.summary().replace("Leakage", f"Leakage ({where})", 1))
        for lk in rep.leaks[:50]:
            out["lines"].append(f"  {lk.a_split} {lk.a_ref} = {lk.b_split} {lk.b_ref} (hash {lk.hamming} bits apart"
                                + (f", cosine {lk.cosine:.3f}" if lk.cosine is not None else "") + ")")
        if len(rep.leaks) > 50:
            out["lines"].append(f"  ... and {len(rep.leaks) - 50:,} more pairs (--json lists them all)")
    return out


def cmd_predict(args, plugins) -> int:
    from tlstudio.core.delivery.package import ModelPackage, is_package
    from tlstudio.core.delivery.predict import Predictor

    if is_package(args.run):  # an exported model package: no project, run or checkpoint needed
        pred = ModelPackage.open(args.run, plugins=plugins)
        task = pred.task_plugin
    else:
        pred = Predictor.from_run(args.run, runs_dir=args.runs_dir, plugins=plugins)
        task = pred.task
    results = pred.predict(task.expand_inputs(args.images))  # image files and folders, or texts
    if args.csv:
        pred.write_csv(results, args.csv, top_k=args.top_k)
    return _print_predictions(args, results)


def _print_predictions(args, results: list[dict]) -> int:
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for r in results:
            if r.get("error"):
                print(f"{r['ref']}\tskipped: {r['error']}")
            else:
                from tlstudio.core.delivery.predict import set_text, top_text

                p = r.get("probabilities", {}).get(r["predicted"]) if isinstance(r["predicted"], str) else None
                print(f"{r['ref']}\t{r['predicted']}" + (f"\t{p:.3f}" if p is not None else "")
                      + (f"\tset: {set_text(r['set'])}" if "set" in r else "")
                      + (f"\ttop {args.top_k}: {top_text(r['top'], args.top_k)}" if r.get("top") and args.top_k else ""))
    return EXIT_OK if all(not r.get("error") for r in results) else EXIT_FAILED


def cmd_export(args, plugins) -> int:
    from tlstudio.core.delivery.export import export_run

    con = _console(stderr=True)

    def show(e: dict) -> None:
        if e.get("kind") in ("stage", "log") and not args.json:
            con.print(f"[dim]{e.get('message')}[/dim]")

    res = export_run(args.run, args.format, args.out, runs_dir=args.runs_dir, plugins=plugins, n_inputs=args.inputs,
                     tolerance=args.tolerance, checkpoint=args.checkpoint, intended_use=args.intended_use, on_event=show)
    par = res["parity"]
    if args.json:
        print(json.dumps({"package": res["package"], "format": res["format"], "model_file": res["model_file"],
                          "run_id": res["run_id"], "max_abs_diff": par["max_abs_diff"], "tolerance": par["tolerance"],
                          "n_inputs": par["n_inputs"], "parity_split": par.get("split"), "batch_sizes": par["batch_sizes"],
                          "export_seconds": res["export_seconds"], "seconds": res["seconds"],
                          "size_bytes": res["size_bytes"], "files": res["files"]}))
    else:
        print(f"Exported run {res['run_id']} as {res['format']} to {res['package']}")
        print(f"Parity: max abs difference {par['max_abs_diff']:.3g} vs PyTorch on {par['n_inputs']} real "
              f"{par.get('split') or ''} inputs (allowed {par['tolerance']:g}) — passed")
        print(f"Model card: {Path(res['package']) / 'model_card.md'}")
        print(f"Predict with: tlstudio predict {res['package']} IMAGES...")
    return EXIT_OK


def cmd_report(args, plugins) -> int:
    from tlstudio.core.delivery.report import html_report
    from tlstudio.core.runs import open_run
    from tlstudio.core.settings import load_settings

    run = open_run(args.run, args.runs_dir or load_settings().runs_path())
    path = html_report(run.dir, out=args.out)
    print(json.dumps({"report": str(path)}) if args.json else f"Report: {path}")
    if args.open:
        import webbrowser

        webbrowser.open(path.as_uri())
    return EXIT_OK


def cmd_doctor(args, plugins) -> int:
    from tlstudio.core.analysis.doctor import FAIL, run_checks

    checks = run_checks(plugins=plugins, quick=args.quick)
    if args.json:
        print(json.dumps([c.to_dict() for c in checks], indent=2))
    else:
        con = _console()
        marks = {"ok": "[green]ok  [/green]", "warn": "[yellow]warn[/yellow]", "fail": "[red]FAIL[/red]"}
        for c in checks:
            con.print(f"{marks[c.status]}  [bold]{c.name}[/bold]: {c.message}", soft_wrap=True)
            if c.fix and c.status != "ok":
                con.print(f"      what to do: {c.fix}", soft_wrap=True)
        bad = [c for c in checks if c.status == FAIL]
        con.print(f"\n{len(bad)} problem(s) found." if bad else "\nEverything the studio needs is in place.")
    return EXIT_FAILED if any(c.status == FAIL for c in checks) else EXIT_OK


def cmd_decide(args, plugins) -> int:
    """tlstudio decide RUN ...: change a finished run's operating point, prediction sets or
    positive class without retraining (the window's "Use this operating point")."""
    from tlstudio.core.analysis.redecide import redecide
    from tlstudio.core.runs import open_run
    from tlstudio.core.settings import load_settings

    run = open_run(args.run, args.runs_dir or load_settings().runs_path())
    method = "fixed" if args.threshold is not None and args.method is None else args.method
    dec = redecide(run.dir, positive=args.positive, method=method, threshold=args.threshold, target=args.target,
                   level=args.level, conformal_method=args.conformal, chosen_on="the command line" if method == "fixed" else None)
    test = run.final().get("test", {})
    rep = test.get("decision") or {}
    if args.json:
        print(json.dumps({"decision": dec.to_dict(), "test": {k: rep.get(k) for k in ("operating_point", "conformal")}},
                         default=str))
        return EXIT_OK
    print(f"Run {run.id}: " + dec.describe())
    op = rep.get("operating_point")
    if op:
        ci = lambda v: f"{v[0]:.3f}–{v[1]:.3f}" if v else "–"  # noqa: E731
        print(f"Test at this operating point: sensitivity {op['sensitivity']:.3f} (95% CI {ci(op['sensitivity_ci95'])}), "
              f"specificity {op['specificity']:.3f} (95% CI {ci(op['specificity_ci95'])}); "
              f"TP {op['tp']}, FN {op['fn']}, TN {op['tn']}, FP {op['fp']}")
    cf = rep.get("conformal")
    if cf:
        print(f"Prediction sets on test: coverage {cf['coverage']:.3f} at the {cf['level']:.0%} level, "
              f"mean set size {cf['mean_set_size']:.2f}")
    return EXIT_OK


def cmd_runs(args, plugins) -> int:
    from tlstudio.core.runs import list_runs, summarize
    from tlstudio.core.settings import load_settings

    root = Path(args.runs_dir) if args.runs_dir else load_settings().runs_path()
    rows = [summarize(r) for r in list_runs(root)]
    if args.json:
        print(json.dumps([r.__dict__ for r in rows], indent=2, default=str))
        return EXIT_OK
    from rich.table import Table

    t = Table(title=f"Runs in {root}")
    for c in ("run", "status", "technique", "model", "best", "test acc", "test AUC"):
        t.add_column(c)
    for r in rows:
        acc, auc = r.test.get("accuracy"), r.test.get("auc")
        t.add_row(r.id, r.status, r.technique, r.model, f"{r.best_metric} {r.best_value:.3f}" if r.best_value is not None else "–",
                  f"{acc:.3f}" if acc is not None else "–", f"{auc:.3f}" if auc is not None else "–")
    _console().print(t)
    return EXIT_OK
