"""Unique code assignment: forced collisions, both fallback paths, Sinkhorn rounds,
incremental placement that never moves existing codes, vocabulary strings."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.codes.helpers import clustered, tiny_config
from toolweaver.codes import (
    RQVAE,
    CollisionError,
    assign_codes,
    assign_new_codes,
    format_code,
    parse_code,
    train_rqvae,
    vocabulary,
)
from toolweaver.codes.assign import resolve_collisions


def unique_rows(code_matrix: np.ndarray) -> bool:
    return len({tuple(r) for r in code_matrix.tolist()}) == len(code_matrix)


@pytest.fixture(scope="module")
def model_and_data() -> tuple[RQVAE, np.ndarray, object]:
    x = clustered(n=256)
    result = train_rqvae(x, None, tiny_config())
    return result.model, x, result.cfg


def test_assignment_is_unique_and_reports(model_and_data) -> None:
    model, x, cfg = model_and_data
    x = x[:60]  # K**L = 64 slots
    out = assign_codes(model, x, cfg)
    assert out.code_matrix.shape == (60, 2) and out.code_matrix.dtype == np.int64
    assert unique_rows(out.code_matrix)
    assert ((out.code_matrix >= 0) & (out.code_matrix < 8)).all()
    report = out.report
    nearest = model.nearest_indices(torch.from_numpy(x)).numpy()
    assert report.collision_rate_before == pytest.approx(1 - len(np.unique(nearest, axis=0)) / 60)
    assert report.collision_rate_before > 0  # crowded on purpose, so resolution ran
    assert report.collisions_after == 0
    assert report.moved == np.flatnonzero((out.code_matrix != nearest).any(1)).tolist()


def test_identical_embeddings_force_collisions_and_both_fallbacks(model_and_data) -> None:
    model, x, cfg = model_and_data
    same = np.repeat(x[:1], 20, axis=0)  # 20 identical tools, only 8 slots per prefix
    out = assign_codes(model, same, cfg)
    assert unique_rows(out.code_matrix)
    report = out.report
    assert report.collision_rate_before == pytest.approx(19 / 20)
    assert report.resolved_by_sinkhorn == 0  # identical rows: Sinkhorn cannot split them
    assert report.fallback_used == 19
    assert report.prefix_moves == 20 - 8  # the own prefix holds 8, the rest move on
    nearest = model.nearest_indices(torch.from_numpy(same[:1])).numpy()[0]
    assert tuple(out.code_matrix[0]) == tuple(nearest)  # the first (lowest row) keeps the nearest code
    own_prefix = out.code_matrix[:, 0] == nearest[0]
    assert own_prefix.sum() == 8
    # deterministic: the same call gives the same codes
    assert np.array_equal(assign_codes(model, same, cfg).code_matrix, out.code_matrix)


def test_fallback_takes_the_next_best_free_slot_by_distance(model_and_data) -> None:
    model, x, cfg = model_and_data
    same = np.repeat(x[:1], 2, axis=0)
    out = assign_codes(model, same, cfg.model_copy(update={"resolve_rounds": 0}))
    z = model.encode(torch.from_numpy(same[:1]))
    quantizer = model.quantizer
    books = quantizer.codebooks.detach()
    first = int(out.code_matrix[0, 0])
    residual = z[0] - books[0, first]
    framed = residual @ quantizer.whiten[0, first] if quantizer.whitened else residual  # the cell's frame
    by_distance = ((framed[None] - books[1]) ** 2).sum(1).argsort(stable=True).tolist()
    assert out.code_matrix[0].tolist() == [first, by_distance[0]]
    assert out.code_matrix[1].tolist() == [first, by_distance[1]]
    assert out.report.fallback_used == 1 and out.report.rounds == 0


def test_sinkhorn_rounds_resolve_near_duplicates(model_and_data) -> None:
    model, x, cfg = model_and_data
    rng = np.random.default_rng(0)
    near = np.repeat(x[:1], 6, axis=0) + 0.05 * rng.normal(size=(6, x.shape[1])).astype(np.float32)
    z = model.encode(torch.from_numpy(near))
    # force one shared code so that the test does not depend on where they land
    nearest = np.tile(model.nearest_indices(torch.from_numpy(near[:1])).numpy(), (6, 1))
    code_matrix, report = resolve_collisions(model, z, nearest, set(), cfg)
    assert unique_rows(code_matrix)
    assert (code_matrix[:, 0] == nearest[0, 0]).all()  # only the last level moved
    assert report.rounds >= 1 and report.resolved_by_sinkhorn > 0
    assert report.fallback_used + report.resolved_by_sinkhorn >= 5


def test_capacity_overflow_is_a_loud_error(model_and_data) -> None:
    model, x, cfg = model_and_data
    too_many = np.repeat(x, 1, axis=0)[:65]  # K**L = 64
    with pytest.raises(CollisionError, match="exceed") as info:
        assign_codes(model, too_many, cfg)
    assert info.value.report.n_tools == 65


def test_full_catalog_of_identical_tools_fills_every_slot(model_and_data) -> None:
    model, x, cfg = model_and_data
    out = assign_codes(model, np.repeat(x[:1], 64, axis=0), cfg)
    assert unique_rows(out.code_matrix)
    assert len(out.code_matrix) == 64


def test_incremental_keeps_existing_codes_and_stays_unique(model_and_data) -> None:
    model, x, cfg = model_and_data
    old, new = x[:40], x[40:60]
    existing = assign_codes(model, old, cfg).code_matrix
    frozen = existing.copy()
    added = assign_new_codes(model, new, existing, cfg)
    assert np.array_equal(existing, frozen)  # never mutated
    assert added.shape == (20, 2)
    everything = np.concatenate([existing, added])
    assert unique_rows(everything)
    # adding copies of existing tools forces clashes with existing codes; still disjoint
    clones = assign_new_codes(model, old[:10], existing, cfg)
    assert unique_rows(np.concatenate([existing, clones]))


def test_incremental_rejects_bad_existing_codes(model_and_data) -> None:
    model, x, cfg = model_and_data
    with pytest.raises(ValueError, match="duplicate"):
        assign_new_codes(model, x[:2], np.array([[1, 2], [1, 2]]), cfg)
    with pytest.raises(ValueError, match="existing_levels"):
        assign_new_codes(model, x[:2], np.array([[1, 2, 3]]), cfg)


def test_code_strings_round_trip() -> None:
    assert format_code([12, 45]) == "<a_12><b_45>"
    assert parse_code("<a_12><b_45>") == (12, 45)
    assert parse_code(format_code((0, 7, 1023))) == (0, 7, 1023)
    for bad in ["", "<a_1><c_2>", "<b_1>", "<a_1> <b_2>", "<a_x>", "a_1"]:
        with pytest.raises(ValueError):
            parse_code(bad)


def test_vocabulary() -> None:
    tokens = vocabulary(2, 3)
    assert tokens == ["<a_0>", "<a_1>", "<a_2>", "<b_0>", "<b_1>", "<b_2>"]
    assert len(set(vocabulary(3, 1024))) == 3 * 1024


def test_incremental_500_new_tools_at_test_scale() -> None:
    x = clustered(n=2500, dim=16, clusters=40, seed=3)
    cfg = tiny_config(codebook_size=64, epochs=2, batch_size=256)
    result = train_rqvae(x[:2000], None, cfg)
    existing = assign_codes(result.model, x[:2000], result.cfg).code_matrix
    before = existing.copy()
    added = assign_new_codes(result.model, x[2000:], existing, result.cfg)
    assert np.array_equal(existing, before)  # 0 existing codes changed
    assert added.shape == (500, 2)
    assert unique_rows(np.concatenate([existing, added]))
