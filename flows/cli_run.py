"""`toolweaver run`: the main job (`make run`) — the `build` flow on the embedded default."""

from __future__ import annotations

import os
import sys
import time
from typing import Annotated, Literal

import typer

ProfileOpt = Annotated[
    str,
    typer.Option("--profile", help="quick (CPU subset, ≤ 15 min on 2 cores), full (CUDA, whole catalog) or auto"),
]
StoreOpt = Annotated[
    str | None, typer.Option("--store", help="artifact store root (default $TOOLWEAVER_HOME or ./artifacts)")
]
ForceOpt = Annotated[list[str] | None, typer.Option("--force", help="recompute this stage even if cached (repeatable)")]
RetriesOpt = Annotated[int, typer.Option("--retries", min=0, help="retries per stage on failure")]

_PROFILES = ("quick", "full", "auto")


def _forward_library_logs() -> None:
    # Read by Prefect when it configures logging (on import), so set before importing it.
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "toolweaver,tasks,storage")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # The temporary server starts slowly on a busy 2-core machine (default limit 20 s).
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def run(
    profile: ProfileOpt = "auto",
    store: StoreOpt = None,
    force: ForceOpt = None,
    retries: RetriesOpt = 0,
) -> None:
    """Run the whole build (ingest → … → evaluate) as a Prefect flow and print the results."""
    if profile not in _PROFILES:
        raise typer.BadParameter(f"--profile must be one of {', '.join(_PROFILES)}, got {profile!r}")
    _forward_library_logs()
    from flows.build import build
    from tasks.prefect.plan import BuildConfig, RunOptions

    chosen: Literal["quick", "full", "auto"] = profile  # type: ignore[assignment]
    config = BuildConfig(store=store, profile=chosen, run=RunOptions(force=tuple(force or ()), retries=retries))
    started = time.perf_counter()
    result = build(config)
    wall_s = time.perf_counter() - started
    # Results on stdout; Prefect's own logging went to stderr.
    sys.stdout.write(result.summary_markdown)
    sys.stdout.write(f"\nBuild (profile {result.profile}) finished in {wall_s:.0f} s.\n")
    sys.stdout.write(
        "\nPrefect UI: runs above used a temporary local server. To keep their history, start one with\n"
        "  prefect server start   # then, in this shell: export PREFECT_API_URL=http://127.0.0.1:4200/api\n"
        "and run `toolweaver run` again (every stage is a cache hit), or deploy with `prefect deploy --all`.\n"
    )


def register(app: typer.Typer) -> None:
    """Add `toolweaver run` to the CLI."""
    app.command("run")(run)
