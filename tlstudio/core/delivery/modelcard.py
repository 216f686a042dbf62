"""The model card of an exported package: what the model is, what it was trained and tested
on, how good it is (with 95% confidence intervals), what it is for and not for, how it was
made (run configuration, library versions) and the hashes of its files."""
from __future__ import annotations

import platform
import sys
from pathlib import Path

from ..analysis.summary import decision_markdown, decision_rows
from ..analysis.confidence import read_json, test_results
from ..tasks.traits import task_traits



def _f(v, digits: int = 3) -> str:
    return "–" if v is None else (f"{v:.{digits}f}" if isinstance(v, float) else str(v))


def _ci(ci) -> str:
    return f"{ci[0]:.3f}–{ci[1]:.3f}" if ci else "–"


def library_versions() -> dict[str, str]:
    """Versions of the libraries that matter for running and reproducing a model, now."""
    import importlib.metadata as md

    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    try:
        import torch

        out["cuda"] = str(torch.version.cuda)
    except ImportError:  # pragma: no cover
        pass
    for dist in ("tlstudio", "torch", "torchvision", "timm", "transformers", "numpy", "pillow", "onnx", "onnxruntime",
                 "torchmetrics"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    return out


def default_intended_use(task: str, labels: list[str], data: dict, project_name: str) -> str:
    what = task_traits(task).purpose or f"does {task}"
    classes = ", ".join(labels) if labels else "its outputs"
    size = data.get("image_size")
    return (f"This model {what} ({classes}). It was adapted with Transfer Learning Studio from the project "
            f"\"{project_name}\" and is meant for images of the same kind as its training data"
            + (f" (resized to {size}x{size} pixels)" if size else "")
            + ": research, quality control and decision support under the supervision of a qualified person. "
              "It is not a certified medical device and must not be the sole basis of a diagnosis or treatment "
              "decision. Validate it on your own local data before any use.")


def limitations(task: str, labels: list[str], data: dict, test: dict, ci: dict) -> list[str]:
    """Plain-language limitations, derived from the run's own data and results."""
    out = []
    counts = data.get("split_counts") or {}
    train = counts.get("train") or {}
    n_train = sum(train.values()) if train else None
    if n_train is not None:
        out.append(f"Trained on {n_train} images from one source ({data.get('source', '?')}); images from other "
                   "scanners, sites, stains or populations may be classified less well.")
        if train and min(train.values()) * 3 < max(train.values()):
            few = min(train, key=train.get)
            out.append(f"The classes were unbalanced in training (fewest: '{few}', {train[few]} images): "
                       "that class is likely to be recognised less reliably.")
    n_test = test.get("n")
    if n_test:
        acc = ci.get("accuracy")
        width = (acc[1] - acc[0]) if acc else None
        out.append(f"Tested on {n_test} held-out images of the same source"
                   + (f"; the 95% interval of the accuracy is {width * 100:.0f} percentage points wide" if width else "")
                   + ". The true performance on new data may lie anywhere in the intervals below, or lower on "
                     "data unlike the training data.")
    else:
        out.append("The run has no test split: its performance has not been measured on held-out data.")
    if task.endswith("classification") and labels:
        dec = (test.get("decision") or {}).get("decision") or {}
        calibrated = dec.get("temperature", 1.0) != 1.0
        out.append(f"It always answers with one of its {len(labels)} classes ({', '.join(labels)}), even for an "
                   "input that belongs to none of them; "
                   + ("its probabilities are calibrated on the validation split (temperature scaling), which holds "
                      "for data like the training data only." if calibrated else "its probabilities are not calibrated."))
        if (test.get("decision") or {}).get("conformal"):
            out.append("The prediction sets hold the true class at the stated rate on average over cases like the "
                       "validation data, not for every single case, and not for data from elsewhere.")
    leak = (data.get("leakage") or {}).get("count")
    if leak:
        out.append(f"{leak} validation/test image(s) have a near-identical twin in the training data (leakage "
                   "check): the test figures are optimistic.")
    if data.get("report", {}).get("skipped"):
        out.append(f"{len(data['report']['skipped'])} file(s) of the data set could not be read and were left out "
                   "of training and testing.")
    return out


def build_model_card(run, package: dict, file_hashes: dict[str, str], intended_use: str | None = None) -> tuple[str, dict]:
    """(model_card.md text, model_card.json dict) for ``run`` exported as ``package``."""
    d = Path(run.dir)
    data = read_json(d / "data.json")
    env = read_json(d / "env.json")
    final = read_json(d / "final.json")
    res = test_results(d)
    test, ci = res["metrics"], res["ci"]
    project_toml = (d / "project.toml").read_text(encoding="utf-8") if (d / "project.toml").exists() else ""
    labels = package.get("labels") or []
    task = package.get("task", "")
    use = intended_use or default_intended_use(task, labels, data, package.get("name", ""))
    lim = limitations(task, labels, data, test, ci)
    now_versions = library_versions()
    card = {
        "model": {k: package.get(k) for k in ("name", "task", "technique", "architecture", "exporter", "runtime",
                                              "model_file", "inputs", "outputs", "labels", "run_id", "checkpoint",
                                              "created", "tlstudio")},
        "pretrained_weights": _weights_of(d),
        "data": {k: data.get(k) for k in ("reader", "source", "fingerprint", "class_names", "image_size", "split_counts")}
        | {"skipped_files": len((data.get("report") or {}).get("skipped") or [])},
        "metrics": {"test": test, "confidence_intervals_95": ci, "best_epoch": final.get("best_epoch"),
                    "monitor": final.get("monitor"), "best_value": final.get("best_value")},
        "decision": {"rows": dict(decision_rows(test, data)), "decision": package.get("decision"),
                     "leakage": data.get("leakage"), "groups": data.get("groups"),
                     "subgroups": test.get("subgroups")},
        "parity": package.get("parity"),
        "intended_use": use,
        "limitations": lim,
        "run_configuration": project_toml,
        "versions": {"training": env, "export": now_versions | (package.get("versions") or {})},
        "file_hashes_sha256": file_hashes,
    }
    return _markdown(card, package, data, test, ci), card


def _weights_of(d: Path) -> str:
    try:
        from ..engine.checkpoint import read_checkpoint

        p = d / "checkpoints" / "best.pt"
        if not p.exists():
            p = d / "checkpoints" / "last.pt"
        info = read_checkpoint(p).get("model_info") or {}
        return info.get("weights_path") or info.get("weights") or ""
    except Exception:  # noqa: BLE001 - the card is still written without it
        return ""


def _markdown(card: dict, package: dict, data: dict, test: dict, ci: dict) -> str:
    m = card["model"]
    par = package.get("parity") or {}
    L = [f"# Model card: {m['name']}", "",
         f"{m['technique']} on {m['architecture']} ({m['task']}), exported as {package.get('exporter')} "
         f"(`{m['model_file']}`, runs with {m['runtime']}) from run `{m['run_id']}` on {m['created']} "
         f"by Transfer Learning Studio {m['tlstudio']}.", "",
         "## Model", "",
         f"- Classes ({len(m['labels'] or [])}): {', '.join(m['labels'] or [])}",
         f"- Inputs: {', '.join(m['inputs'])} (batch first, any batch size); outputs: {', '.join(m['outputs'])}"
         + (" (logits: apply softmax for probabilities)" if package.get("postprocess") == "softmax" else ""),
         "- Preprocessing: `preprocessing.json`"
         + (f" — {package['preprocessing'].get('size', ['?'])[0]} px, "
            f"{package['preprocessing'].get('formula', '')}, mean {package['preprocessing'].get('mean')}, "
            f"std {package['preprocessing'].get('std')}" if package.get("preprocessing", {}).get("kind") == "image" else ""),
         f"- Pretrained starting point: {card['pretrained_weights'] or 'see the run configuration'}",
         f"- Checkpoint: {m['checkpoint'].get('which')} (epoch {m['checkpoint'].get('epoch')}; best "
         f"{card['metrics']['monitor']} = {_f(card['metrics']['best_value'])})",
         f"- Parity: the exported model was checked against the PyTorch model on {par.get('n_inputs')} real "
         f"{par.get('split') or ''} images (batches of {', '.join(map(str, par.get('batch_sizes', [])))}): "
         f"max abs difference {par.get('max_abs_diff', float('nan')):.2e} (allowed {par.get('tolerance')}, fp32).", "",
         "## Intended use", "", card["intended_use"], "",
         "## Limitations", ""] + [f"- {x}" for x in card["limitations"]] + [""]
    L += ["## Data and splits", "",
          f"Source: `{data.get('source', '?')}` (reader {data.get('reader', '?')}, fingerprint {data.get('fingerprint', '?')}); "
          f"{card['data']['skipped_files']} file(s) skipped as unreadable.", ""]
    sc = data.get("split_counts") or {}
    names = data.get("class_names") or m["labels"] or []
    if sc and names:
        L += ["| split | " + " | ".join(names) + " | total |", "|---" * (len(names) + 2) + "|"]
        L += [f"| {s} | " + " | ".join(str(sc[s].get(c, 0)) for c in names) + f" | {sum(sc[s].values())} |"
              for s in ("train", "val", "test") if s in sc]
        L.append("")
    L += ["## Test metrics (95% confidence intervals)", ""]
    if test.get("n"):
        L += [f"n = {test['n']} test images. {ci.get('method', '')}.", "",
              "| metric | value | 95% CI |", "|---|---|---|"]
        for key, title in (("accuracy", "Accuracy"), ("balanced_accuracy", "Balanced accuracy"), ("auc", "AUC"),
                           ("f1_macro", "Macro F1")):
            if key in test:
                L.append(f"| {title} | {_f(test.get(key))} | {_ci(ci.get(key))} |")
        pc, pci = test.get("per_class") or {}, ci.get("per_class") or {}
        if pc:
            L += ["", "| class | sensitivity (95% CI) | specificity (95% CI) | precision | F1 | support |",
                  "|---|---|---|---|---|---|"]
            for c, v in pc.items():
                cc = pci.get(c) or {}
                L.append(f"| {c} | {_f(v.get('sensitivity'))} ({_ci(cc.get('sensitivity'))}) | {_f(v.get('specificity'))} "
                         f"({_ci(cc.get('specificity'))}) | {_f(v.get('precision'))} | {_f(v.get('f1'))} | {v.get('support')} |")
        cm = test.get("confusion_matrix")
        if cm:
            L += ["", "Confusion matrix (rows: true class, columns: predicted):", "",
                  "| | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
            L += [f"| {names[i]} | " + " | ".join(map(str, row)) + " |" for i, row in enumerate(cm)]
    else:
        L.append("No test results (the run had no test split).")
    L += [""] + decision_markdown(test, data)
    L += ["## Run configuration", "", "```toml", card["run_configuration"].rstrip(), "```", "",
          "## Library versions", "", "| library | training | export |", "|---|---|---|"]
    tr, ex = card["versions"]["training"], card["versions"]["export"]
    for k in sorted(set(tr) | set(ex)):
        if k in ("created", "threads", "seed", "data_fingerprint", "deterministic"):
            continue
        L.append(f"| {k} | {tr.get(k, '–')} | {ex.get(k, '–')} |")
    L += ["", "## File hashes (SHA-256)", "", "| file | sha256 |", "|---|---|"]
    L += [f"| {f} | `{h}` |" for f, h in card["file_hashes_sha256"].items()]
    L += ["", "`SHA256SUMS` covers every file of the package, this card included (`sha256sum -c SHA256SUMS`).", ""]
    return "\n".join(L)
