"""The decision sections of the model card and the HTML report, from a run's files.

    rows = decision_rows(test, data)     # [(what, value)] : operating point, calibration, sets, leaks, groups
    md = decision_markdown(test, data)   # model card lines
    html = decision_html(test, data)     # report section (tables and the reliability diagram)

``test`` is evaluation_test.json (its "decision" and "subgroups" blocks), ``data`` the run's
data.json (its "leakage" and "groups" blocks).  A run without them gives nothing.
"""
from __future__ import annotations

import html as _html


def _f(v, digits: int = 3) -> str:
    return "–" if v is None else (f"{v:.{digits}f}" if isinstance(v, float) else str(v))


def _ci(ci) -> str:
    return f"{ci[0]:.3f}–{ci[1]:.3f}" if ci else "–"


def decision_rows(test: dict, data: dict) -> list[tuple[str, str]]:
    """(what, value) lines a clinician reads about how the model's outputs are used."""
    rep = test.get("decision") or {}
    dec = rep.get("decision") or {}
    rows: list[tuple[str, str]] = []
    if rep:
        rows.append(("How it decides", rep.get("description", "")))
    op = rep.get("operating_point")
    if op:
        pos = rep.get("positive_class")
        rows.append((f"Test sensitivity for '{pos}' at the operating point",
                     f"{_f(op['sensitivity'])} (95% CI {_ci(op.get('sensitivity_ci95'))}; {op['tp']} of "
                     f"{op['tp'] + op['fn']} found)"))
        rows.append(("Test specificity at the operating point",
                     f"{_f(op['specificity'])} (95% CI {_ci(op.get('specificity_ci95'))}; {op['tn']} of "
                     f"{op['tn'] + op['fp']} cleared)"))
        rows.append(("Positive / negative predictive value (test prevalence)",
                     f"{_f(op.get('ppv'))} ({_ci(op.get('ppv_ci95'))}) / {_f(op.get('npv'))} ({_ci(op.get('npv_ci95'))})"))
        if dec.get("chosen_on") and dec.get("chosen_on") != "validation":
            rows.append(("Caution", f"the threshold was set {dec['chosen_on']}, not chosen on the validation split: "
                                    "if it was set while looking at these test figures, they overstate the model"))
    cal = rep.get("calibration")
    if cal:
        b, a = cal.get("before") or {}, cal.get("after") or {}
        rows.append(("Calibration on test (ECE / MCE / Brier)",
                     f"before {_f(b.get('ece'))} / {_f(b.get('mce'))} / {_f(b.get('brier'))}; after temperature "
                     f"scaling (T = {_f(cal.get('temperature'))}) {_f(a.get('ece'))} / {_f(a.get('mce'))} / "
                     f"{_f(a.get('brier'))}"))
    cf = rep.get("conformal")
    if cf:
        rows.append(("Prediction sets on test",
                     f"{cf.get('method', '').upper()} at the {cf.get('level', 0):.0%} level: coverage {_f(cf.get('coverage'))} "
                     f"(95% CI {_ci(cf.get('coverage_ci95'))}), mean set size {_f(cf.get('mean_set_size'), 2)}; "
                     f"{cf.get('singletons')} single-class, {cf.get('uncertain')} uncertain (two or more classes), "
                     f"{cf.get('empty')} empty"))
    leak = data.get("leakage")
    if leak is not None:
        n = leak.get("count", 0)
        rows.append(("Leakage check", (f"{n} validation/test image(s) have a near-identical twin in another split: "
                                       "figures on them overstate the model" if n else
                                       "no image of one split was found again in another")
                     + f" ({leak.get('method', '')})"))
    groups = data.get("groups")
    if groups:
        leaking = groups.get("leaking") or []
        rows.append(("Patients / groups", f"{groups['groups']} groups, {groups['per_group']['min']}–"
                                          f"{groups['per_group']['max']} images each; "
                     + (f"{len(leaking)} group(s) lie in more than one split" if leaking else "no group in two splits")))
    return rows


def subgroup_table(test: dict) -> tuple[list[str], list[list[str]], str] | None:
    """(header, rows, rule) of the subgroup report, or None."""
    sg = test.get("subgroups")
    if not sg:
        return None
    head = [sg.get("column") or "subgroup", "n"] + [m for m in sg["metrics"]] + ["far below the whole"]
    rows = []
    for g in [{"name": "(whole test set)", **sg["whole"], "far_below": []}] + sg["groups"]:
        rows.append([str(g["name"]), str(g["n"])] + [f"{_f(g.get(m))} ({_ci(g.get(f'{m}_ci95'))})" for m in sg["metrics"]]
                    + [", ".join(g.get("far_below") or []) or ""])
    return head, rows, sg.get("rule", "")


def decision_markdown(test: dict, data: dict) -> list[str]:
    rows = decision_rows(test, data)
    if not rows:
        return []
    L = ["## Decision: operating point, calibration, prediction sets", "", "| | |", "|---|---|"]
    L += [f"| {a} | {b} |" for a, b in rows]
    sg = subgroup_table(test)
    if sg:
        head, body, rule = sg
        L += ["", f"### Results by {head[0]} (95% CIs)", "", "| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
        L += ["| " + " | ".join(r) + " |" for r in body]
        L += ["", rule + "."]
    return L + [""]


def reliability_png(test: dict) -> str | None:
    """The reliability diagram (before and after calibration) as a base64 PNG (matplotlib Agg)."""
    cal = (test.get("decision") or {}).get("calibration")
    if not cal:
        return None
    import base64
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.4, 4.0), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(111)
    ax.plot([0, 1], [0, 1], "--", color="#999", lw=1)
    for key, colour, label in (("before", "#D55E00", "before"), ("after", "#0072B2", "after calibration")):
        bins = [b for b in (cal.get(key) or {}).get("bins", []) if b["n"]]
        if bins:
            ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], "o-", color=colour, ms=4,
                    label=f"{label} (ECE {(cal.get(key) or {}).get('ece', 0):.3f})")
    ax.set_xlabel("confidence (top class)")
    ax.set_ylabel("share correct")
    ax.set_title("Reliability diagram (test)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def decision_html(test: dict, data: dict) -> str:
    rows = decision_rows(test, data)
    if not rows:
        return ""
    e = _html.escape
    parts = ["<h2>Decision: operating point, calibration, prediction sets</h2><table>"]
    parts += [f"<tr><th>{e(a)}</th><td style='text-align:left'>{e(b)}</td></tr>" for a, b in rows]
    parts.append("</table>")
    png = reliability_png(test)
    if png:
        parts.append(f"<figure><img alt='Reliability diagram' src='data:image/png;base64,{png}'>"
                     "<figcaption>Reliability diagram: each point is a bin of test cases by confidence; on the "
                     "diagonal, a confidence of 0.8 is right 8 times in 10.</figcaption></figure>")
    sg = subgroup_table(test)
    if sg:
        head, body, rule = sg
        parts.append(f"<h3>Results by {e(head[0])}</h3><table><tr>" + "".join(f"<th>{e(h)}</th>" for h in head) + "</tr>"
                     + "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in body)
                     + f"</table><p class='muted'>{e(rule)}.</p>")
    leak = data.get("leakage") or {}
    if leak.get("pairs"):
        parts.append(f"<h3>Leaking images ({leak['count']})</h3><table><tr><th>image</th><th>split</th><th>twin</th>"
                     "<th>split</th><th>hash bits</th></tr>"
                     + "".join(f"<tr><td>{e(p['a_ref'])}</td><td>{e(p['a_split'])}</td><td>{e(p['b_ref'])}</td>"
                               f"<td>{e(p['b_split'])}</td><td>{p['hamming']}</td></tr>" for p in leak["pairs"][:100])
                     + "</table>")
    return "\n".join(parts)
