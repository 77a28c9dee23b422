"""The job's report: training curves and reliability diagrams (PNG) and an HTML page.

Rendering only: every number comes from ``metrics.json`` and the held-out reliability bins
the metric library counted (``training.evaluation``); nothing is computed here.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

CURVES_PNG = "training_curves.png"
RELIABILITY_PNG = "reliability.png"


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(doc: dict[str, Any], path: Path) -> None:
    plt = _plt()
    epochs = [r["epoch"] for r in doc["epochs"]]
    fig, (ax_loss, ax_metrics) = plt.subplots(1, 2, figsize=(11, 4))
    for key in ("loss", "ce", "kd", "rare"):
        ax_loss.plot(epochs, [r["train"][key] for r in doc["epochs"]], marker="o", label=f"train {key}")
    ax_loss.plot(epochs, [r["heldout"].get("nll") for r in doc["epochs"]], marker="s", ls="--",
                 label="held-out NLL")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_xticks(epochs)
    ax_loss.set_title("loss")
    ax_loss.legend(fontsize=8)
    for key in ("promotion_score", "teacher_match", "accuracy", "recall.safety_escalation", "ece"):
        ax_metrics.plot(epochs, [r["heldout"].get(key) for r in doc["epochs"]], marker="o", label=key)
    chosen = doc["choice"]["epoch"]
    if chosen is not None:
        ax_metrics.axvline(chosen, color="grey", ls=":", label=f"kept epoch {chosen}")
    ax_metrics.set_xlabel("epoch")
    ax_metrics.set_xticks(epochs)
    ax_metrics.set_title("held-out metrics")
    ax_metrics.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_reliability(before: list[tuple[float, float, int]], after: list[tuple[float, float, int]],
                     ece_before: float | None, ece_after: float | None, path: Path) -> None:
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(9, 4), sharey=True)
    for ax, bins, title, ece in ((axes[0], before, "before scaling", ece_before),
                                 (axes[1], after, "after scaling", ece_after)):
        ax.plot([0, 1], [0, 1], color="grey", ls=":")
        if bins:
            conf, acc, n = zip(*bins)
            ax.bar(conf, acc, width=1 / 15, alpha=0.6, edgecolor="black")
            ax.scatter(conf, acc, s=[max(8, 200 * k / max(n)) for k in n], zorder=3)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("top-1 confidence")
        ax.set_title(f"{title} (ECE {'–' if ece is None else f'{ece:.4f}'})")
    axes[0].set_ylabel("accuracy")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _table(rows: list[list[Any]], header: list[str]) -> str:
    def cell(x: Any) -> str:
        return html.escape("–" if x is None else f"{x:.4f}" if isinstance(x, float) else str(x))

    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell(x)}</td>" for x in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def write_report(out: Path, doc: dict[str, Any], before: list[tuple[float, float, int]],
                 after: list[tuple[float, float, int]]) -> None:
    """``report.html`` with the two PNGs beside it."""
    plot_curves(doc, out / CURVES_PNG)
    cal = doc["calibration"]
    plot_reliability(before, after, cal["ece_before"], cal["ece_after"], out / RELIABILITY_PNG)
    keys = ["promotion_score", "teacher_match", "accuracy", "recall.safety_escalation", "ece",
            "hallucination_proxy", "nll"]
    epoch_rows = [[r["epoch"], r["train"]["loss"], *[r["heldout"].get(k) for k in keys],
                   "kept" if r["epoch"] == doc["choice"]["epoch"] else ""] for r in doc["epochs"]]
    compare_rows = []
    for key, row in doc["comparison"].items():
        for who in ("trained", "logged_student"):
            m = row.get(who)
            if m is not None:
                compare_rows.append([key, row.get("support"), who, *[m.get(k) for k in
                                     ("accuracy", "teacher_match", "recall.safety_escalation", "ece",
                                      "promotion_score")]])
    title = html.escape(f"{doc['model']} {doc.get('model_version', '')}")
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}</style>
</head><body>
<h1>Retraining report: {title}</h1>
<p>{html.escape(doc['choice']['reason'].capitalize())}. Temperature {cal['temperature']:.3f}.</p>
<h2>Epochs (held-out, metric library)</h2>
{_table(epoch_rows, ["epoch", "train loss", *keys, ""])}
<img src="{CURVES_PNG}" alt="training curves">
<h2>Calibration</h2>
<p>ECE before {_num(cal['ece_before'])}, after {_num(cal['ece_after'])};
NLL before {_num(cal['nll_before'])}, after {_num(cal['nll_after'])}.</p>
<img src="{RELIABILITY_PNG}" alt="reliability before and after temperature scaling">
<h2>Trained vs logged student (held-out)</h2>
{_table(compare_rows, ["slice", "support", "model", "accuracy", "teacher_match",
                       "recall.safety_escalation", "ece", "promotion_score"])}
<h2>Dataset</h2>
{_table([[k, v] for k, v in doc['dataset'].items()], ["count", "value"])}
</body></html>
"""
    (out / "report.html").write_text(page)


def _num(x: float | None) -> str:
    return "–" if x is None else f"{x:.4f}"
