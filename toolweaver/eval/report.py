"""Evaluation reports: a console/markdown table and a PNG bar chart next to it.

Every table section and chart panel names its NDCG convention, because the two differ
by a lot on multi-tool queries (ToolLens: ~0.33 standard vs ~0.53 ToolGen for BM25).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path

from toolweaver.eval.base import as_float

logger = logging.getLogger(__name__)

TABLE_METRICS: tuple[str, ...] = ("ndcg@1", "ndcg@3", "ndcg@5", "recall@5", "exact_set_acc")
CHART_METRICS: tuple[str, ...] = ("ndcg@1", "ndcg@3", "ndcg@5", "recall@5")
_SECTION = ("dataset", "split", "setting", "convention")


def _sections(
    rows: Sequence[Mapping[str, object]],
) -> dict[tuple[str, ...], dict[str, dict[str, Mapping[str, object]]]]:
    """(dataset, split, setting, convention) -> method -> metric -> row, in first-seen order."""
    out: dict[tuple[str, ...], dict[str, dict[str, Mapping[str, object]]]] = defaultdict(lambda: defaultdict(dict))
    for row in rows:
        out[tuple(str(row[k]) for k in _SECTION)][str(row["method"])][str(row["metric"])] = row
    return out


def markdown_table(rows: Sequence[Mapping[str, object]]) -> str:
    """One markdown table per (dataset, split, setting, convention); a method per line."""
    if not rows:
        raise ValueError("no evaluation rows to report")
    parts: list[str] = []
    for (dataset, split, setting, convention), methods in _sections(rows).items():
        parts.append(f"### {dataset} / {split} — {setting}, NDCG convention: {convention}\n")
        parts.append("| method | zero-shot | queries | " + " | ".join(TABLE_METRICS) + " |")
        parts.append("|---|---|---|" + "---|" * len(TABLE_METRICS))
        for method, metrics in methods.items():
            first = metrics.get("ndcg@5") or next(iter(metrics.values()))
            cells = [f"{as_float(metrics[m]['value']):.4f}" if m in metrics else "—" for m in TABLE_METRICS]
            parts.append(
                f"| {method} | {'yes' if first['zero_shot'] else 'no'} | {first['n_queries']} | "
                + " | ".join(cells)
                + " |"
            )
        parts.append("")
    return "\n".join(parts)


def bar_chart(rows: Sequence[Mapping[str, object]], path: Path) -> Path:
    """Grouped bars (metric on x, one bar per method), one panel per section; saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers and CI
    import matplotlib.pyplot as plt

    sections = _sections(rows)
    if not sections:
        raise ValueError("no evaluation rows to chart")
    fig, axes = plt.subplots(len(sections), 1, figsize=(8, 3.2 * len(sections)), squeeze=False)
    for ax, ((dataset, split, setting, convention), methods) in zip(axes[:, 0], sections.items(), strict=True):
        width = 0.8 / max(len(methods), 1)
        for i, (method, metrics) in enumerate(methods.items()):
            values = [as_float(metrics[m]["value"]) if m in metrics else 0.0 for m in CHART_METRICS]
            ax.bar([x + i * width for x in range(len(CHART_METRICS))], values, width, label=method)
        ax.set_xticks([x + 0.4 - width / 2 for x in range(len(CHART_METRICS))], CHART_METRICS)
        ax.set_ylim(0, 1)
        ax.set_title(f"{dataset}/{split} {setting} — NDCG convention: {convention}", fontsize=9)
        ax.legend(fontsize=7, ncol=4)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_report(rows: Sequence[Mapping[str, object]], report_dir: Path, command: str = "") -> tuple[Path, Path]:
    """``eval_report.md`` and ``eval_report.png`` in ``report_dir``; returns both paths."""
    report_dir.mkdir(parents=True, exist_ok=True)
    png = bar_chart(rows, report_dir / "eval_report.png")
    header = ["# ToolWeaver evaluation", ""]
    if command:
        header += ["Command:", "", f"    {command}", ""]
    header += ["![metrics](eval_report.png)", ""]
    md = report_dir / "eval_report.md"
    md.write_text("\n".join(header) + markdown_table(rows) + "\n", encoding="utf-8")
    logger.info("report written to %s and %s", md, png)
    return md, png
