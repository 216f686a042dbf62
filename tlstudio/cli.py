"""The ``tlstudio`` command line: the same engine as the window, headless.

This module builds the parser, the project of ``tlstudio train`` and runs training (one
process, torchrun, several machines); the other commands live in :mod:`tlstudio.cli_commands`
and the comparisons and the recipe search in :mod:`tlstudio.cli_recipes`."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from .cli_commands import (cmd_decide, cmd_doctor, cmd_export, cmd_import_weights, cmd_models, cmd_plugins,
                           cmd_predict, cmd_report, cmd_runs, cmd_validate)
from .core.tasks.traits import manifest_traits, task_traits
from .cli_common import EXIT_FAILED, EXIT_OK, EXIT_STOPPED, _console, _err, _print_final


def build_project(args, plugins):
    """The project of ``tlstudio train``: a project file, or quick flags, plus overrides.
    A problem is blamed on where it came from: the file, the command line's flags, or the
    ``--set`` that brought it."""
    from tlstudio.core.config import Project, load_project, project_from_dict
    from tlstudio.core.overrides import apply_assignment, check_technique_settings, switch_technique

    if args.project:
        project = load_project(args.project)
        if project.task not in plugins.tasks():
            from tlstudio.core.errors import ProjectError

            raise ProjectError(f"{project.path}: task: unknown task '{project.task}' (the installed plugins provide: "
                               f"{', '.join(sorted(plugins.tasks()))})")
        data = project.model_dump(mode="json")
        path = project.path
    else:
        if not args.data:
            raise SystemExit("Give a project file, or --data PATH (with --model, --technique ...).")
        data = Project().model_dump(mode="json")
        tid = args.technique or data["technique"]["id"]
        data["name"] = Path(args.data).stem or "Quick run"
        data["technique"]["id"] = tid
        try:
            data["task"] = plugins.technique(tid).task  # --technique faster-rcnn: a detection project
            data["training"].update(plugins.technique(tid).recommended_training())
        except Exception:  # noqa: BLE001 - an unknown technique is reported by the engine
            pass
        path = None
    if args.data:
        data["data"]["source"] = str(Path(args.data).resolve())
    if args.target_data:
        data["data"]["target_source"] = str(Path(args.target_data).resolve())
    if args.format:
        data["data"]["format"] = args.format
    if args.technique:
        note = switch_technique(data, args.technique, plugins) if args.project else ""
        if note:
            _err(f"note: {note}")
        data["technique"]["id"] = args.technique
        try:  # the task follows the technique (text-classification, detection ...)
            data["task"] = plugins.technique(args.technique).task
        except Exception:  # noqa: BLE001 - an unknown technique is reported by the engine
            pass
    if task_traits(data["task"], plugins).texts and args.model is None and not args.project:
        from tlstudio.core.models.huggingface import the_text_model

        data["model"]["architecture"] = the_text_model()  # the one found here (else it says which to choose)
    for flag, section, key in (("model", "model", "architecture"), ("weights", "model", "weights"),
                               ("image_size", "model", "image_size"), ("epochs", "training", "epochs"),
                               ("batch_size", "training", "batch_size"), ("lr", "training", "lr"),
                               ("seed", "training", "seed"), ("device", "training", "device"),
                               ("threads", "training", "threads")):
        v = getattr(args, flag, None)
        if v is not None:
            data[section][key] = v
    if args.deterministic:
        data["training"]["deterministic"] = True
    if getattr(args, "mirror_safe", None) is not None:  # the mirror question, answered on the command line
        data["augmentation"]["mirror_safe"] = args.mirror_safe
    if getattr(args, "from_run", None):
        _apply_from_run(args, data)
    project = project_from_dict(data, where="command line", path=path)
    blame = "command line"
    for s in args.set or []:
        apply_assignment(data, s)
        project = project_from_dict(data, where=f"--set {s}", path=path)
        blame = f"--set {s}" if s.strip().startswith("technique") else blame
    check_technique_settings(project, plugins, blame if blame != "command line" or not path else str(path))
    return project


class _Progress:
    """Console rendering of run events (a progress bar per epoch, a line per epoch)."""

    def __init__(self, quiet: bool):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.console = _console(stderr=quiet)
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeRemainingColumn(), TextColumn("{task.fields[info]}"), console=self.console,
                                 transient=True)
        self.task = None
        self.what = None
        self.progress.start()

    def __call__(self, e: dict) -> None:
        k = e.get("kind")
        if k == "start":
            self.console.print(f"Run {e['run_id']} — {e['technique']} on {e['model']} ({e['device']})"
                               + (" [resumed]" if e.get("resumed") else ""))
        elif k in ("progress", "batch"):
            what = e.get("task") or f"Epoch {e['epoch']}"
            total = e.get("total") or e.get("batches")
            done = e.get("done") or e.get("batch")
            info = f"loss {e['loss']:.4f}" if k == "batch" else ""
            if what != self.what:
                if self.task is not None:
                    self.progress.remove_task(self.task)
                self.task = self.progress.add_task(what, total=total, info=info)
                self.what = what
            self.progress.update(self.task, completed=done, total=total, info=info)
        elif k == "epoch":
            vals = "  ".join(f"{n[4:]} {e[n]:.4f}" for n in ("val_loss", "val_accuracy", "val_auc", "val_map_50",
                                                              "val_bleu_4") if e.get(n) is not None)
            series = "  ".join(f"{n} {v:.4f}" for n, v in e.get("series", {}).items())
            self.console.print(f"epoch {e['epoch']}/{e['epochs']}  train_loss {e.get('train_loss', float('nan')):.4f}  "
                               f"{vals}  {series}  {e['seconds']:.1f}s{'  *best' if e.get('best') else ''}")
        elif k == "log":
            style = {"warning": "yellow", "error": "red"}.get(e.get("level"), "dim")
            self.console.print(f"[{style}]{e['message']}[/{style}]", soft_wrap=True)  # paths stay whole
        elif k == "stage":
            self.console.print(f"[cyan]{e.get('message', 'stage')}[/cyan]")
        elif k in ("done", "failed", "stopped"):
            self.close()

    def close(self) -> None:
        self.progress.stop()


def _apply_from_run(args, data: dict) -> None:
    """--from-run: start from an earlier run's trained model (its architecture and image
    size unless given)."""
    from tlstudio.core.engine.sequential import resolve_run

    run = resolve_run(args.from_run, args.runs_dir)
    data["model"]["from_run"] = str(run.dir.resolve())
    if not args.project:
        earlier = run.project()
        if args.model is None:
            data["model"]["architecture"] = earlier.model.architecture
        if args.image_size is None:
            data["model"]["image_size"] = earlier.model.image_size


def cmd_compare(args, plugins, kind: str) -> int:
    """train --compare-baseline / --compare-scratch: the technique against the plain recipe, or
    the pretrained model against training from scratch, over seeds (tlstudio.cli_recipes)."""
    from tlstudio.cli_recipes import run_comparison

    return run_comparison(args, plugins, build_project(args, plugins), _Progress(quiet=args.json), kind)


def cmd_find_recipe(args, plugins) -> int:
    """train --find-recipe: the recipe search on validation (tlstudio.cli_recipes)."""
    from tlstudio.cli_recipes import run_recipe_search

    return run_recipe_search(args, plugins, build_project(args, plugins), _Progress(quiet=args.json))


def cmd_shift(args, plugins) -> int:
    """tlstudio shift SOURCE TARGET: how different two image sets look to a model (MMD)."""
    from tlstudio.core.analysis.diagnostics import measure_shift

    show = _Progress(quiet=True)
    try:
        rep = measure_shift(args.source, args.target, args.model, weights=args.weights, image_size=args.image_size,
                            max_images=args.max_images, permutations=args.permutations,
                            multi_bandwidth=args.multi_bandwidth, embedding=args.embedding, seed=args.seed,
                            device=args.device, plugins=plugins,
                            progress=lambda task, done, total: show({"kind": "progress", "task": task, "done": done,
                                                                     "total": total}))
    finally:
        show.close()
    if args.embedding_csv and args.embedding != "none":
        import csv
        import io

        from tlstudio.core.io import atomic_write_text

        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["x", "y", "domain", "label"])
        for (x, y), d, lab in zip(rep.embedding.tolist(), rep.domains.tolist(), rep.labels):
            w.writerow([f"{x:.5f}", f"{y:.5f}", "target" if d else "source", "" if lab is None else lab])
        atomic_write_text(args.embedding_csv, buf.getvalue())
    if args.json:
        print(json.dumps(rep.to_dict(with_embedding=False), default=str))
    else:
        m = rep.mmd
        print(f"MMD^2 = {m.mmd2:.5f}   p-value = {m.p_value:.4g}   ({m.n_source} source, {m.n_target} target images; "
              f"{rep.model} features at {rep.image_size} px)")
        print(rep.explanation)
    return EXIT_OK


def cmd_train(args, plugins) -> int:
    from tlstudio.core.engine import distributed as D
    from tlstudio.core.engine import RunControl, Trainer, resume, train
    from tlstudio.core.errors import StudioError
    from tlstudio.core.failures import plain_message

    if not args.resume and not D.in_torchrun():
        if getattr(args, "find_recipe", False):
            return cmd_find_recipe(args, plugins)
        for kind in ("baseline", "scratch"):
            if getattr(args, f"compare_{kind}", False):
                return cmd_compare(args, plugins, kind)
    if (args.nnodes or 1) > 1 and not D.in_torchrun():
        return _train_on_nodes(args, plugins)
    if (args.nproc or 1) > 1 and not D.in_torchrun():
        return _train_with_torchrun(args, plugins)
    if D.in_torchrun() and args.into_run and D.restart_count() > 0 and D.finished(args.into_run):
        return EXIT_OK  # torchrun restarted a job whose run already ended: nothing to do
    main = D.is_main_process()  # under torchrun only rank 0 shows progress
    if args.runs_dir:
        from tlstudio.core.runs import check_runs_folder

        check_runs_folder(args.runs_dir)
    show = _Progress(quiet=args.json) if main else _Quiet()
    control = RunControl()
    final: dict = {}
    try:
        if args.resume:
            final = resume(args.resume, on_event=show, control=control, runs_dir=args.runs_dir, plugins=plugins,
                           epochs=args.epochs)
        elif args.into_run and (Path(args.into_run) / "project.toml").exists():
            # the run's files exist: an earlier attempt of this job got that far, continue it
            final = resume(args.into_run, on_event=show, control=control, plugins=plugins)
        elif args.into_run:
            project = build_project(args, plugins)
            final = Trainer(project, on_event=show, control=control, runs_dir=args.runs_dir, plugins=plugins,
                            into_run=D.create_run_folder(args.into_run) if main else None).fit()
        else:
            project = build_project(args, plugins)
            _new_split(args, project, show)
            final = train(project, on_event=show, control=control, runs_dir=args.runs_dir, plugins=plugins)
    except StudioError as e:
        show.close()
        _err(f"error: {plain_message(e)}")
        return EXIT_FAILED
    except D.OutOfMemoryRestart as e:
        show.close()
        _err(f"Out of GPU memory ({e}): the launcher restarts the job with fewer images at a time.")
        return D.EXIT_OOM
    except KeyboardInterrupt:
        show.close()
        _err("Interrupted: resume with `tlstudio train --resume <run>`.")
        return EXIT_STOPPED
    except BaseException:
        show.close()
        raise
    show.close()
    status = final.get("status")  # (a finished run resumed: its log line said that nothing was trained)
    if D.in_torchrun():  # all processes stopped together, or rank 0 recorded the outcome
        if status == "failed":
            return EXIT_FAILED  # the others are ended by torchrun
        if not main or status == "stopped":
            return EXIT_OK
    if args.json:
        print(json.dumps({k: v for k, v in final.items() if k != "test"} | {"test": final.get("test", {})},
                         default=str))
    elif status == "done":
        _print_final(final)
    if status == "failed":
        _err(f"Training failed: {final.get('message')}")
        return EXIT_FAILED
    if status == "stopped":
        _err(f"Stopped. Resume with: tlstudio train --resume {final.get('run_dir')}")
        return EXIT_STOPPED
    return EXIT_OK


def _new_split(args, project, show) -> None:
    """--new-split: move the project's stored split aside, so that training makes a new one."""
    if not getattr(args, "new_split", False):
        return
    from tlstudio.core.data.split import archive_split

    sp = project.data.split
    if not sp.file:
        show.console.print("[yellow]--new-split: the project keeps its splits by data fingerprint (no split file): "
                           "changed data already gets a new split.[/yellow]")
        return
    old = archive_split(project.resolve(sp.file))
    if old is not None:
        show.console.print(f"[yellow]The stored split was moved to {old}; a new one is made.[/yellow]")


class _Quiet:
    """The console of a process other than rank 0: silent."""

    def __call__(self, e: dict) -> None:
        pass

    def close(self) -> None:
        pass


def _train_with_torchrun(args, plugins) -> int:
    """``tlstudio train ... --nproc N``: the run folder first, then torchrun with N processes
    re-invoking this command line; waits, and reports like a single-process run."""
    from tlstudio.core.engine import distributed as D
    from tlstudio.core.runs import open_run
    from tlstudio.core.settings import load_settings

    argv = list(getattr(args, "_argv", None) or sys.argv[1:])
    glob = D.global_args(argv)
    if args.resume:
        root = Path(args.runs_dir) if args.runs_dir else load_settings().runs_path()
        run = open_run(args.resume, root)
        if args.epochs:
            project = run.project()
            project.training.epochs = args.epochs
            run.save_project(project)
        else:
            project = run.project()
        D.clear_stop_request(run.dir)
        worker_args = glob + ["train"]
    else:
        project = build_project(args, plugins)  # bad settings are reported before anything starts
        if args.into_run:
            run = D.create_run_folder(args.into_run)
        else:
            root = Path(args.runs_dir) if args.runs_dir else load_settings().runs_path()
            run = D.new_run_folder(root, project)
        worker_args = D.strip_args(argv, {"--nproc": True, "--json": False, "--into-run": True})
    D.check_processes(project.training.device, args.nproc)
    if not args.json:
        _console().print(f"Starting {args.nproc} processes with torchrun; run folder {run.dir}")
    final = D.launch(run.dir, worker_args, args.nproc, stdout=sys.stderr if args.json else None)
    status = final.get("status")
    if args.json:
        print(json.dumps({k: v for k, v in final.items() if k != "test"} | {"test": final.get("test", {})},
                         default=str))
    if status == "failed":
        _err(f"Training failed: {final.get('message')}")
        return EXIT_FAILED
    if status == "stopped":
        _err(f"Stopped. Resume with: tlstudio train --resume {final.get('run_dir')} (with any --nproc)")
        return EXIT_STOPPED
    return EXIT_OK


def _train_on_nodes(args, plugins) -> int:
    """``tlstudio train ... --nnodes N --node-rank R --rdzv-endpoint HOST:PORT``: this machine's
    share of a multi-node torchrun job (see tlstudio.core.engine.nodes); the same command on every node."""
    from tlstudio.core.engine import distributed as D
    from tlstudio.core.engine import nodes as N

    argv = list(getattr(args, "_argv", None) or sys.argv[1:])
    if args.resume:
        from tlstudio.core.runs import open_run

        device = open_run(args.resume, Path(args.runs_dir) if args.runs_dir else None).project().training.device
    else:
        device = build_project(args, plugins).training.device  # bad settings are reported before anything starts
    nodes = N.Nodes(args.nnodes, args.node_rank, args.rdzv_endpoint or "", args.rdzv_id or "", args.rdzv_backend,
                    args.max_restarts)
    nodes.check()
    nproc = N.processes_per_node(device, args.nproc)
    D.check_processes(device, nproc)
    final = N.launch_nodes(nodes, nproc, D.strip_args(argv, N.NODE_FLAGS), D.worker_env(nproc),
                           stdout=sys.stderr if args.json else None)
    status = final.get("status")
    if args.json:
        print(json.dumps({k: v for k, v in final.items() if k != "test"} | {"test": final.get("test", {})},
                         default=str))
    elif status == "done" and "test" in final:
        _print_final(final)
    if final.get("message"):
        _err(final["message"])
    return {"done": EXIT_OK, "stopped": EXIT_STOPPED}.get(status, EXIT_FAILED)


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tlstudio", description="Transfer Learning Studio — adapt pretrained networks offline.")
    p.add_argument("--safe-mode", action="store_true", help="start with third-party plugins switched off")
    p.add_argument("--debug", action="store_true", help="show the full traceback of an error (anywhere on the line)")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a project (or quick flags); --resume a run")
    t.add_argument("project", nargs="?", help="project.toml (or a run folder's project.toml)")
    t.add_argument("--data", help="images: a folder of class folders, a CSV, an NPZ, DICOM files")
    t.add_argument("--target-data", help="target-domain data (domain adaptation)")
    t.add_argument("--format", help="data reader id (default: auto)")
    t.add_argument("--model", help="architecture (see `tlstudio models`)")
    t.add_argument("--weights", help="imagenet, none, or a weights file")
    t.add_argument("--technique", help="technique id (see `tlstudio plugins`; default progressive-unfreezing, the best recipe measured)")
    t.add_argument("--epochs", type=int)
    t.add_argument("--batch-size", type=int)
    t.add_argument("--lr", type=float)
    t.add_argument("--image-size", type=int)
    t.add_argument("--seed", type=int)
    t.add_argument("--device", help="auto, cpu, cuda, cuda:N, mps")
    t.add_argument("--threads", type=int, help="CPU threads")
    t.add_argument("--deterministic", action="store_true", help="bit-for-bit repeatable run")
    t.add_argument("--mirror-safe", action=argparse.BooleanOptionalAction, default=None,
                   help="mirror images show the same thing (a cell, a skin lesion): horizontal flips in training and "
                        "the test-time flip; --no-mirror-safe: they do not (a chest film, a digit). Not answered: no flips")
    t.add_argument("--set", action="append", metavar="KEY=VALUE", help="any project setting, e.g. training.lr=0.001 or technique.settings.trainable_groups=3")
    t.add_argument("--runs-dir", help="where runs are stored")
    t.add_argument("--resume", metavar="RUN", help="continue a stopped or interrupted run (folder or id)")
    t.add_argument("--json", action="store_true", help="print the final metrics as one JSON object")
    t.add_argument("--from-run", metavar="RUN", help="start from an earlier run's trained model (sequential transfer)")
    t.add_argument("--compare-baseline", action="store_true",
                   help="does the technique help? Train it and the recommended plain recipe (fine-tuning with its "
                        "defaults; DANN: source only; EWC: strength 0) on the same budget, several seeds, 95%% CIs")
    t.add_argument("--compare-scratch", action="store_true",
                   help="negative-transfer check: also train the plain recipe from random initialisation, several seeds")
    t.add_argument("--compare-seeds", "--seeds", type=int, default=3, metavar="N",
                   help="seeds per arm for --compare-baseline / --compare-scratch (default 3)")
    t.add_argument("--compare-metric", default=None,
                   help="test metric compared (default: accuracy; DANN: target_accuracy; EWC: source_accuracy_after); "
                        "with --find-recipe the validation metric, auc or accuracy (default: AUC for two classes)")
    t.add_argument("--find-recipe", action="store_true",
                   help="find the best recipe on validation: frozen features, fine-tuning and progressive unfreezing "
                        "at two learning rates, successive halving; the test split once at the end; the winner is "
                        "saved into the project file")
    t.add_argument("--budget-minutes", type=float, metavar="M", help="time budget of --find-recipe")
    t.add_argument("--no-save", action="store_true", help="--find-recipe: do not write the winner into the project file")
    t.add_argument("--nproc", type=int, metavar="N",
                   help="train in N processes with torchrun (DistributedDataParallel): one per GPU, or N CPU "
                        "processes; the batch size stays the global batch")
    t.add_argument("--new-split", action="store_true",
                   help="the data changed since the project's stored split was made: make a new split (the old "
                        "file is kept beside it as split.json.old-N)")
    t.add_argument("--nnodes", type=int, metavar="N",
                   help="train on N machines with torchrun's multi-node launch: run the same command on each, "
                        "with its --node-rank (docs/distributed.md); --nproc is then the processes per machine")
    t.add_argument("--node-rank", type=int, default=0, metavar="R", help="this machine's number, 0 .. N-1 (0 hosts the rendezvous)")
    t.add_argument("--rdzv-endpoint", metavar="HOST:PORT", help="where the machines meet: node 0's address and a free port")
    t.add_argument("--rdzv-id", metavar="ID", help="the job's name, the same on every machine (default: from the command)")
    t.add_argument("--rdzv-backend", choices=("c10d", "static"), default="c10d",
                   help="c10d (default: torchrun assigns the ranks) or static (--node-rank is the rank, node 0 has rank 0)")
    t.add_argument("--max-restarts", type=int, default=0, metavar="K",
                   help="multi-node: let torchrun restart the job K times after a failure (use with --into-run)")
    t.add_argument("--into-run", metavar="DIR",
                   help="train into this run folder (made if missing; continued if it holds an earlier attempt): "
                        "lets a caller know the folder before the run starts")
    t.set_defaults(func=cmd_train)

    sh = sub.add_parser("shift", help="measure the domain shift between two image sets (MMD and its p-value)")
    sh.add_argument("source", help="source images (folder, CSV, NPZ, DICOM)")
    sh.add_argument("target", help="target images")
    sh.add_argument("--model", default="mobilenet_v2", help="architecture whose features are compared")
    sh.add_argument("--weights", default="imagenet", help="imagenet, none, or a weights file")
    sh.add_argument("--image-size", type=int, default=64)
    sh.add_argument("--max-images", type=int, default=500, help="images drawn from each side (default 500)")
    sh.add_argument("--permutations", type=int, default=500)
    sh.add_argument("--multi-bandwidth", action="store_true", help="RBF kernels at 5 bandwidths around the median")
    sh.add_argument("--embedding", choices=("pca", "tsne", "none"), default="pca")
    sh.add_argument("--embedding-csv", metavar="FILE", help="write the 2-D embedding of both sets to this CSV")
    sh.add_argument("--seed", type=int, default=0)
    sh.add_argument("--device", default="cpu")
    sh.add_argument("--json", action="store_true")
    sh.set_defaults(func=cmd_shift)

    s = sub.add_parser("plugins", help="list plugins (loaded, failed, disabled)")
    s.add_argument("--json", action="store_true")
    g = s.add_mutually_exclusive_group()
    g.add_argument("--enable", metavar="NAME")
    g.add_argument("--disable", metavar="NAME")
    s.set_defaults(func=cmd_plugins, plugin_manifests=True)  # listed from manifests: no torch

    m = sub.add_parser("models", help="the model catalog: what is ready offline and how to add the rest")
    m.add_argument("--json", action="store_true")
    m.set_defaults(func=cmd_models)

    iw = sub.add_parser("import-weights", help="check a weights file and add it to your models folder")
    iw.add_argument("file")
    iw.add_argument("--model", help="architecture (detected when omitted)")
    iw.set_defaults(func=cmd_import_weights)

    v = sub.add_parser("validate-data", help="check a data set and print its report")
    v.add_argument("path")
    v.add_argument("--format")
    v.add_argument("--task", help="only the readers of this task, e.g. " + ", ".join(manifest_traits())
                   + " (default: any that recognises the data)")
    v.add_argument("--option", action="append", metavar="KEY=VALUE",
                   help="a reader option, e.g. text_column=review or label_names='0=negative,1=positive'")
    v.add_argument("--split", metavar="SPLIT_JSON", help="a stored split to check against the data (groups, leaks)")
    v.add_argument("--no-leakage", dest="leakage", action="store_false",
                   help="skip the leakage check (same or near-identical images across the splits)")
    v.add_argument("--leakage-features", action="store_true",
                   help="confirm the leakage check with frozen features as training does (loads torch and a "
                        "pretrained network); without it: perceptual hash and thumbnail similarity, a light check")
    v.add_argument("--json", action="store_true")
    v.set_defaults(func=cmd_validate, plugin_hooks={"tlstudio_dataset_readers"})  # no torch: a light, quick check


    pr = sub.add_parser("predict", help="predict with a trained run or an exported package (images; sentences for a text run)")
    pr.add_argument("run", help="run folder or id, or an exported package folder")
    pr.add_argument("images", nargs="+", help="image files or folders (sentences for a text-classification run)")
    pr.add_argument("--csv", help="write the predictions to this CSV")
    pr.add_argument("--top-k", type=int, default=3, metavar="K",
                    help="more than two classes: show (and write) the K most probable classes (default 3; 0 = off)")
    pr.add_argument("--runs-dir")
    pr.add_argument("--json", action="store_true")
    pr.set_defaults(func=cmd_predict)

    ex = sub.add_parser("export", help="export a trained run as a checked model package (ONNX, TorchScript)")
    ex.add_argument("run", help="run folder or id")
    ex.add_argument("--format", default="onnx", help="onnx or torchscript (or an exporter plugin's id)")
    ex.add_argument("--out", required=True, help="the package folder to write (new, empty, or an older package)")
    ex.add_argument("--inputs", type=int, default=32, help="validation inputs for the parity check (default 32)")
    ex.add_argument("--tolerance", type=float, default=1e-4, help="largest allowed max abs difference (default 1e-4)")
    ex.add_argument("--checkpoint", choices=("best", "last"), default="best")
    ex.add_argument("--intended-use", help="your own 'intended use' paragraph for the model card")
    ex.add_argument("--runs-dir")
    ex.add_argument("--json", action="store_true", help="print the result (parity figure, files) as JSON")
    ex.set_defaults(func=cmd_export)

    rp = sub.add_parser("report", help="write a run's HTML report (charts and tables)")
    rp.add_argument("run", help="run folder or id")
    rp.add_argument("--out", help="the HTML file (default: report.html in the run folder)")
    rp.add_argument("--open", action="store_true", help="open it in the web browser")
    rp.add_argument("--runs-dir")
    rp.add_argument("--json", action="store_true")
    rp.set_defaults(func=cmd_report)

    dr = sub.add_parser("doctor", help="check this installation: Python, torch, devices, Qt, models, folders")
    dr.add_argument("--quick", action="store_true", help="skip the slower checks (a tiny model forward pass)")
    dr.add_argument("--json", action="store_true")
    dr.set_defaults(func=cmd_doctor)

    de = sub.add_parser("decide", help="change a finished run's operating point or prediction sets (no retraining)")
    de.add_argument("run", help="run folder or id")
    de.add_argument("--positive", help="the positive class (two classes)")
    de.add_argument("--method", choices=("fixed", "youden", "sensitivity", "specificity"),
                    help="how the threshold is chosen (on the validation split; fixed: --threshold)")
    de.add_argument("--target", type=float, help="the least sensitivity or specificity on validation (e.g. 0.9)")
    de.add_argument("--threshold", type=float, help="a fixed threshold for the positive class's probability")
    de.add_argument("--level", type=float, help="prediction-set level (0.9 = 90%%; 0 = no sets)")
    de.add_argument("--conformal", choices=("lac", "aps"), help="prediction-set method")
    de.add_argument("--runs-dir")
    de.add_argument("--json", action="store_true")
    de.set_defaults(func=cmd_decide)

    r = sub.add_parser("runs", help="list runs")
    r.add_argument("--runs-dir")
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=cmd_runs)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Every error ends here as a plain message and an exit code; the traceback only with --debug."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    args = make_parser().parse_args(argv)
    args._argv = argv
    from tlstudio.core.errors import StudioError
    from tlstudio.core.failures import describe

    try:
        from tlstudio.core.plugins import PluginManager, get_plugin_manager

        hooks = getattr(args, "plugin_hooks", None)
        if hooks or getattr(args, "plugin_manifests", False):  # a light command: not every plugin imported
            plugins = PluginManager(safe_mode=args.safe_mode, only_hooks=hooks,
                                    manifests=getattr(args, "plugin_manifests", False))
        else:
            plugins = get_plugin_manager(safe_mode=args.safe_mode)
        return args.func(args, plugins)
    except KeyboardInterrupt:
        _err("Interrupted.")
        return EXIT_STOPPED
    except SystemExit:
        raise
    except BaseException as e:  # noqa: BLE001 - the edge of the program: a message, never a traceback
        f = describe(e)
        _err(f"error: {f.message}")
        if f.advice:
            _err(f.advice)
        if debug:
            _err(f.details)
        elif not isinstance(e, StudioError):
            _err("(run the command again with --debug to see the details)")
        return EXIT_FAILED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
