"""Cost reports: vocabulary growth (codes vs atomic tokens) and retrieval latency / memory.

Vocabulary: ToolGen adds one token per tool plus ``<<Finish>>`` (46,985 for ToolBench);
ToolWeaver adds L×K code tokens plus ``<<Finish>>``, independent of the number of tools.
Latency: per-query wall time (mean and P95) of a retrieval callable, with peak device
memory on CUDA (``torch.cuda.max_memory_allocated``) or the process's peak RSS on CPU.
"""

from __future__ import annotations

import math
import resource
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

FINISH_TOKENS = 1  # <<Finish>> is added by both methods


@dataclass(frozen=True)
class VocabularyReport:
    n_tools: int
    n_levels: int
    codebook_size: int
    atomic_tokens_added: int  # one per tool + Finish
    code_tokens_added: int  # L×K + Finish
    code_tokens_used: int  # distinct (level, index) pairs the catalog's codes use
    reduction: float  # atomic / codes

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def vocabulary_report(codes: Sequence[Sequence[int]], n_levels: int, codebook_size: int) -> VocabularyReport:
    """Tokens each method adds for the catalog whose codes (levels per tool) are given."""
    if not codes:
        raise ValueError("no tool codes: run the codes stage first")
    bad = [c for c in codes if len(c) != n_levels or any(not 0 <= i < codebook_size for i in c)]
    if bad:
        raise ValueError(f"{len(bad)} codes do not fit L={n_levels}, K={codebook_size} (first: {list(bad[0])})")
    atomic = len(codes) + FINISH_TOKENS
    coded = n_levels * codebook_size + FINISH_TOKENS
    used = len({(level, index) for code in codes for level, index in enumerate(code)})
    return VocabularyReport(len(codes), n_levels, codebook_size, atomic, coded, used, atomic / coded)


def count_virtual_tokens(path: Path) -> int:
    """Non-empty lines of ToolGen's ``virtual_tokens.txt`` (its added-token list)."""
    with path.open(encoding="utf-8") as handle:
        return sum(1 for line in handle if line.strip())


@dataclass(frozen=True)
class LatencyReport:
    name: str
    n_queries: int
    mean_ms: float
    p95_ms: float
    peak_memory_bytes: int
    memory_kind: str  # "cuda_max_allocated" | "cpu_max_rss"

    def as_dict(self) -> dict[str, float | int | str]:
        return asdict(self)


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 100]) of a non-empty sample."""
    if not values:
        raise ValueError("percentile of an empty sample")
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def _cpu_max_rss_bytes() -> int:
    # ru_maxrss is KiB on Linux, bytes on macOS.
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)


def measure_latency(
    name: str, run_one: Callable[[object], object], inputs: Iterable[object], device: torch.device, warmup: int = 2
) -> LatencyReport:
    """Time ``run_one`` per input after ``warmup`` untimed calls; CUDA is synchronised around each."""
    items = list(inputs)
    if len(items) <= warmup:
        raise ValueError(f"need more than {warmup} inputs (warm-up calls are not timed)")
    for item in items[:warmup]:
        run_one(item)
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    times_ms: list[float] = []
    for item in items[warmup:]:
        started = time.perf_counter()
        run_one(item)
        if cuda:
            torch.cuda.synchronize(device)  # kernels are async: time until they finish
        times_ms.append((time.perf_counter() - started) * 1000)
    peak = int(torch.cuda.max_memory_allocated(device)) if cuda else _cpu_max_rss_bytes()
    return LatencyReport(
        name,
        len(times_ms),
        sum(times_ms) / len(times_ms),
        percentile(times_ms, 95),
        peak,
        "cuda_max_allocated" if cuda else "cpu_max_rss",
    )
