"""Unique code assignment: nearest codes, then collision resolution that always ends unique.

1. Every tool gets its nearest code per level (residual quantisation, no balancing).
2. Sinkhorn rounds. Tools whose full code is shared ("movers"; all members of a
   colliding group, since any of them may keep the slot) are re-assigned on the LAST
   level, per prefix (the first L-1 codes), over the slots of that prefix that no
   other tool holds. The log-domain Sinkhorn plan of movers x free slots has unit mass
   per mover and per slot (a dummy row absorbs the unused slots), i.e. a relaxed
   one-to-one matching by distance; each mover takes its argmax slot. Repeated, with
   epsilon halved each round, while collisions remain (at most `resolve_rounds`).
3. Deterministic fallback for what Sinkhorn leaves (e.g. identical embeddings, whose
   plan rows are identical): groups in code order; within a group, members sorted by
   distance to the shared codeword (ties: row index); the first keeps the code (unless
   an existing tool owns it), each other takes the nearest free last-level slot of its
   prefix; if that prefix is full, the nearest prefix (second-to-last level varied, by
   distance) that has a free slot. If nothing is free, CollisionError with the report.

The result is checked: 100% unique (and disjoint from existing codes) or an error,
never a silent duplicate. Incremental assignment treats existing codes as fixed.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from toolweaver.codes.config import RQVAEConfig
from toolweaver.codes.rqvae import RQVAE
from toolweaver.codes.sinkhorn import normalise_cost, sinkhorn_log

logger = logging.getLogger(__name__)

Code = tuple[int, ...]
# argmax only needs a roughly converged plan; one call per colliding prefix, so keep it bounded
SINKHORN_MAX_ITERS = 300
SINKHORN_TOL = 1e-4


@dataclass
class CollisionReport:
    """How the nearest codes of `n_tools` tools were made unique (next to `n_existing`
    fixed codes); filled in as resolution goes (the `collision_report` table's row)."""

    n_tools: int
    n_existing: int
    collision_rate_before: float  # 1 - distinct nearest codes / tools
    colliding_tools_before: int = 0
    rounds: int = 0  # Sinkhorn rounds run
    resolved_by_sinkhorn: int = 0
    fallback_used: int = 0  # tools placed by the deterministic nearest-free-slot fallback
    prefix_moves: int = 0  # of those, placed under another prefix than their nearest code's
    moved: list[int] = field(default_factory=list)  # rows whose code is not their nearest code
    collisions_after: int = 0

    def summary(self) -> dict[str, float | int]:
        """Every count, without the (long) list of moved rows."""
        return {k: v for k, v in asdict(self).items() if k != "moved"} | {"n_moved": len(self.moved)}


class CollisionError(RuntimeError):
    """Codes could not be made unique; `report` says how far resolution got."""

    def __init__(self, message: str, report: CollisionReport) -> None:
        super().__init__(f"{message}; report: {report.summary()}")
        self.report = report


@dataclass(frozen=True)
class CodeAssignment:
    """code_matrix (N, L) int64 with unique rows; report: how collisions were resolved."""

    code_matrix: np.ndarray
    report: CollisionReport


def assign_codes(model: RQVAE, embeddings: np.ndarray, cfg: RQVAEConfig) -> CodeAssignment:
    """Unique codes (N, L) for embeddings (N, D)."""
    z = _latents(model, embeddings)
    code_matrix, report = resolve_collisions(model, z, _nearest(model, z), set(), cfg)
    return CodeAssignment(code_matrix=code_matrix, report=report)


def assign_new_codes(
    model: RQVAE, new_embeddings: np.ndarray, existing_levels: np.ndarray, cfg: RQVAEConfig
) -> np.ndarray:
    """Codes (N_new, L) for new tools: unique, disjoint from existing_levels (M, L), which
    never change."""
    existing = np.asarray(existing_levels, dtype=np.int64)
    if existing.ndim != 2 or (len(existing) and existing.shape[1] != model.levels):
        raise ValueError(f"existing_levels must be (M, {model.levels}), got {existing.shape}")
    taken = {tuple(int(c) for c in row) for row in existing}
    if len(taken) != len(existing):
        raise ValueError("existing_levels contains duplicate codes; they must be unique already")
    z = _latents(model, new_embeddings)
    code_matrix, report = resolve_collisions(model, z, _nearest(model, z), taken, cfg)
    logger.info("incremental codes: %s", report.summary())
    return code_matrix


def _latents(model: RQVAE, embeddings: np.ndarray) -> torch.Tensor:
    if embeddings.ndim != 2 or embeddings.shape[1] != model.input_dim:
        raise ValueError(f"embeddings must be (N, {model.input_dim}), got {embeddings.shape}")
    device = next(model.parameters()).device
    x = torch.from_numpy(np.ascontiguousarray(embeddings, dtype=np.float32)).to(device)
    return model.encode(x)


@torch.no_grad()
def _nearest(model: RQVAE, z: torch.Tensor) -> np.ndarray:
    if len(z) == 0:
        return np.zeros((0, model.levels), dtype=np.int64)
    return torch.cat([model.quantizer(chunk).indices for chunk in z.split(16384)]).cpu().numpy()


@torch.no_grad()
def resolve_collisions(
    model: RQVAE, z: torch.Tensor, nearest: np.ndarray, taken: set[Code], cfg: RQVAEConfig
) -> tuple[np.ndarray, CollisionReport]:
    """Nearest codes (N, L) of latents z (N, d) -> unique codes disjoint from `taken`."""
    n, k = len(nearest), model.codebook_size
    capacity = k**model.levels
    distinct = len({tuple(r) for r in nearest.tolist()})
    report = CollisionReport(n_tools=n, n_existing=len(taken), collision_rate_before=1.0 - distinct / n if n else 0.0)
    if n + len(taken) > capacity:
        raise CollisionError(f"{n} new + {len(taken)} existing tools exceed K**L = {capacity} codes", report)
    state = _State(model, z, nearest.copy(), taken)
    report.colliding_tools_before = sum(len(m) for m in state.collisions().values())
    epsilon = cfg.resolve_epsilon
    for _ in range(cfg.resolve_rounds):
        groups = state.collisions()
        if not groups:
            break
        before = sum(len(m) for m in groups.values())
        state.sinkhorn_round(groups, epsilon)
        report.rounds += 1
        after = sum(len(m) for m in state.collisions().values())
        report.resolved_by_sinkhorn += before - after
        epsilon *= 0.5  # sharper plans each round, closer to a hard matching
        if after == before:
            break  # no progress: Sinkhorn cannot separate these (e.g. identical rows)
    groups = state.collisions()
    report.fallback_used, report.prefix_moves = state.fallback(groups, report)
    report.moved = np.flatnonzero((state.codes != nearest).any(1)).tolist()
    _check_unique(state.codes, taken, report)
    logger.info("collision resolution: %s", report.summary())
    return state.codes, report


def _check_unique(codes: np.ndarray, taken: set[Code], report: CollisionReport) -> None:
    rows = [tuple(r) for r in codes.tolist()]
    duplicates = len(rows) - len(set(rows))
    clashes = sum(r in taken for r in rows)
    if duplicates or clashes:
        report.collisions_after = duplicates + clashes
        raise CollisionError(f"{duplicates} duplicate codes and {clashes} clashes with existing codes remain", report)


class _State:
    """Current codes of the movable tools plus occupancy per prefix (incl. fixed codes)."""

    def __init__(self, model: RQVAE, z: torch.Tensor, codes: np.ndarray, taken: set[Code]) -> None:
        self.model, self.z, self.codes, self.taken = model, z, codes, taken
        self.quantizer = model.quantizer
        self.levels, self.k = model.levels, model.codebook_size

    def collisions(self) -> dict[Code, list[int]]:
        """Codes held by more than one tool (or by a tool and an existing code) -> movable holders."""
        holders: dict[Code, list[int]] = defaultdict(list)
        for i, row in enumerate(self.codes.tolist()):
            holders[tuple(row)].append(i)
        return {c: m for c, m in sorted(holders.items()) if len(m) > 1 or c in self.taken}

    def used_slots(self, exclude: set[int]) -> dict[Code, set[int]]:
        """prefix -> last-level codes in use, by fixed codes and by movable tools not in `exclude`."""
        used: dict[Code, set[int]] = defaultdict(set)
        for code in self.taken:
            used[code[:-1]].add(code[-1])
        for i, row in enumerate(self.codes.tolist()):
            if i not in exclude:
                used[tuple(row[:-1])].add(row[-1])
        return used

    def prefix_residual(self, rows: list[int] | np.ndarray, prefix: Code) -> torch.Tensor:
        """Residual (M, d) left for the last level after quantising `rows` with `prefix`."""
        residual = self.z[torch.as_tensor(np.asarray(rows), device=self.z.device)]
        codes = torch.tensor(prefix, dtype=torch.long, device=residual.device).expand(len(residual), len(prefix))
        return self.quantizer.residual_after(residual, codes)

    def distances(self, residual: torch.Tensor, prefix: Code) -> torch.Tensor:
        """Squared distances (M, K) of residuals after `prefix` to the next level's codewords."""
        level = len(prefix)
        prev = torch.full((len(residual),), prefix[-1], dtype=torch.long, device=residual.device) if prefix else None
        return self.quantizer.level_distances(residual, level, prev)

    def sinkhorn_round(self, groups: dict[Code, list[int]], epsilon: float) -> None:
        """Re-assign the last level of every mover by a Sinkhorn matching per prefix."""
        movers_by_prefix: dict[Code, list[int]] = defaultdict(list)
        for code, members in groups.items():
            movers_by_prefix[code[:-1]].extend(members)
        all_movers = {i for members in groups.values() for i in members}
        used = self.used_slots(exclude=all_movers)
        for prefix, movers in sorted(movers_by_prefix.items()):
            movers = sorted(movers)
            free = np.array(sorted(set(range(self.k)) - used[prefix]), dtype=np.int64)
            if len(free) < len(movers):
                continue  # the fallback moves some of them to another prefix
            distances = self.distances(self.prefix_residual(movers, prefix), prefix)
            choice = self._match(distances[:, torch.as_tensor(free, device=distances.device)], epsilon)
            self.codes[movers, -1] = free[choice]

    def _match(self, distances: torch.Tensor, epsilon: float) -> np.ndarray:
        """Sinkhorn plan of M movers x F >= M free slots (unit masses + one dummy row) -> argmax."""
        m, f = distances.shape
        cost = normalise_cost(distances)
        row_mass = torch.ones(m, device=cost.device)
        if f > m:  # the dummy row takes the slots nobody needs, at no cost
            cost = torch.cat([cost, torch.zeros(1, f, device=cost.device)])
            row_mass = torch.cat([row_mass, torch.tensor([float(f - m)], device=cost.device)])
        col_mass = torch.ones(f, device=cost.device)
        plan = sinkhorn_log(
            cost.float(),
            epsilon,
            row_mass=row_mass / f,
            col_mass=col_mass / f,
            max_iters=SINKHORN_MAX_ITERS,
            tol=SINKHORN_TOL,
        )
        return plan.log_plan[:m].argmax(1).cpu().numpy()

    def fallback(self, groups: dict[Code, list[int]], report: CollisionReport) -> tuple[int, int]:
        """Deterministic placement of every remaining collision; returns (tools placed, prefix moves)."""
        if not groups:
            return 0, 0
        used = self.used_slots(exclude=set())
        placed = prefix_moves = 0
        for code, members in groups.items():
            distance = self.distances(self.prefix_residual(members, code[:-1]), code[:-1])[:, code[-1]].cpu().numpy()
            order = [members[j] for j in np.lexsort((np.array(members), distance))]
            movers = order if code in self.taken else order[1:]  # order[0] keeps `code`
            for i in movers:
                new_code = self._nearest_free(i, used)
                if new_code is None:
                    raise CollisionError(f"no free code left for tool row {i} (code {code})", report)
                prefix_moves += new_code[:-1] != code[:-1]
                used[new_code[:-1]].add(new_code[-1])
                self.codes[i] = new_code
                placed += 1
        return placed, prefix_moves

    def _nearest_free(self, i: int, used: dict[Code, set[int]]) -> Code | None:
        """Nearest free slot for tool row i: own prefix first, then the nearest prefixes."""
        own = tuple(int(c) for c in self.codes[i, :-1])
        for prefix in [own, *self._other_prefixes(i, own)]:
            distance = self.distances(self.prefix_residual([i], prefix), prefix)[0].cpu().numpy()
            for slot in np.argsort(distance, kind="stable"):
                if int(slot) not in used[prefix]:
                    return (*prefix, int(slot))
        return None

    def _other_prefixes(self, i: int, own: Code) -> list[Code]:
        """Prefixes differing from `own` in the second-to-last level, nearest first."""
        if self.levels < 2:
            return []
        head = own[:-1]
        distance = self.distances(self.prefix_residual([i], head), head)[0].cpu().numpy()
        return [(*head, int(c)) for c in np.argsort(distance, kind="stable") if int(c) != own[-1]]
