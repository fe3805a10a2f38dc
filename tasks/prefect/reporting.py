"""Build reports: the markdown summary artifact of a build, and the retention task."""

from __future__ import annotations

from collections.abc import Sequence

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from tasks.prefect.adapters import open_store
from tasks.prefect.plan import BuildPlan, BuildResult
from tasks.prefect.results import StageResult
from tasks.stages import evaluate as evaluate_stage
from tasks.stages.retention import RetentionReport, retain
from toolweaver.eval.report import markdown_table

SUMMARY_SQL: dict[str, str] = {
    "tools per source": "SELECT source, count(*) AS tools FROM tools GROUP BY source ORDER BY source",
    "queries per source": "SELECT source, split, count(*) AS queries FROM queries GROUP BY ALL ORDER BY ALL",
    "quarantined records": "SELECT source, reason, count(*) AS records FROM quarantine GROUP BY ALL ORDER BY ALL",
}


def summary_markdown(plan: BuildPlan, stages: Sequence[StageResult]) -> str:
    lines = [
        f"# ToolWeaver build — profile `{plan.profile.name}`",
        "",
        f"{plan.profile.description}",
        "",
        f"Store: `{plan.store}`",
        "",
        "| stage | table | version | rows | digest |",
        "|---|---|---:|---:|---|",
    ]
    for r in stages:
        for t in r.tables:
            lines.append(f"| {r.stage} | `{t.table}` | {t.version} | {t.rows} | `{t.digest[:12]}` |")
        for c in r.checkpoints:
            lines.append(f"| {r.stage} | checkpoint `{c}` | | | |")
    facts = [(r.stage, k, v) for r in stages for k, v in sorted(r.facts.items())]
    if facts:
        lines += ["", "| stage | fact | value |", "|---|---|---|"]
        lines += [f"| {s} | {k} | {v} |" for s, k, v in facts]
    lines += ["", "Inspect the results with SQL:", "", "```bash"]
    lines.append(f'toolweaver tables --store "{plan.store}"')
    for sql in SUMMARY_SQL.values():
        lines.append(f'toolweaver sql "{sql}" --store "{plan.store}"')
    lines.append(f'toolweaver sql "SELECT * FROM history ORDER BY written_at DESC LIMIT 20" --store "{plan.store}"')
    lines += ["```", ""]
    return "\n".join(lines)


@task(name="report", cache_policy=NO_CACHE, persist_result=False)
def report(plan: BuildPlan, stages: tuple[StageResult, ...]) -> BuildResult:
    """Markdown run summary as a Prefect artifact; not cached (it writes no table)."""
    markdown = summary_markdown(plan, stages) + "".join(
        _eval_table(plan.store, r) for r in stages if r.stage == "evaluate"
    )
    create_markdown_artifact(markdown=markdown, key="toolweaver-build-summary", description="ToolWeaver build summary")
    return BuildResult(profile=plan.profile.name, store=plan.store, stages=stages, summary_markdown=markdown)


@task(name="retention", cache_policy=NO_CACHE, persist_result=False)
def retention(plan: BuildPlan) -> RetentionReport | None:
    """Apply the plan's retention setting (never cached: what it deletes depends on time)."""
    if plan.retention is None:
        return None
    report = retain(open_store(plan.store), plan.retention)
    rows = [t.model_dump(mode="json") | {"kept_versions": ",".join(map(str, t.kept_versions))} for t in report.tables]
    create_table_artifact(
        table=rows, key="toolweaver-retention", description=f"retention: pruned {list(report.pruned_checkpoints)}"
    )
    return report


def _eval_table(store: str, evaluated: StageResult) -> str:
    """The evaluation table of the rows this build's evaluate stage appended."""
    ref = evaluated.table(evaluate_stage.TABLE)
    rows = open_store(store).read(ref.table, version=ref.version).to_pylist()
    latest = max(r["evaluated_at"] for r in rows)
    return "\n## Evaluation\n\n" + markdown_table([r for r in rows if r["evaluated_at"] == latest])
