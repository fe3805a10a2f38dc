"""Arrow schemas of the tables the pipeline stages write after ingest: codes stage
reports, fine-tuning examples and metrics, evaluation rows.

Declared here, in `storage`, so any process can write or read any table without
importing a stage module; `storage.schemas.SCHEMAS` includes every one of them.
"""

from __future__ import annotations

import pyarrow as pa

PIPELINE_SCHEMAS: dict[str, pa.Schema] = {
    "collision_report": pa.schema(
        [
            pa.field("codes_version", pa.string(), False),
            pa.field("mode", pa.string(), False),  # "full" | "incremental"
            pa.field("n_tools", pa.int64(), False),
            pa.field("n_existing", pa.int64(), False),
            pa.field("collision_rate_before", pa.float64(), False),
            pa.field("colliding_tools_before", pa.int64(), False),
            pa.field("rounds", pa.int64(), False),
            pa.field("resolved_by_sinkhorn", pa.int64(), False),
            pa.field("fallback_used", pa.int64(), False),
            pa.field("prefix_moves", pa.int64(), False),
            pa.field("collisions_after", pa.int64(), False),
            pa.field("moved_tool_ids", pa.list_(pa.string()), False),
        ]
    ),
    "vocabulary": pa.schema(
        [
            pa.field("token", pa.string(), False),
            pa.field("level", pa.int32(), False),
            pa.field("code", pa.int32(), False),
            pa.field("codes_version", pa.string(), False),
        ]
    ),
    "rqvae_epochs": pa.schema(
        [
            pa.field("codes_version", pa.string(), False),
            pa.field("epoch", pa.int32(), False),
            pa.field("phase", pa.string(), False),  # "warmup" | "rq"
            pa.field("loss_total", pa.float64()),
            pa.field("loss_recon", pa.float64()),
            pa.field("loss_quant", pa.float64()),
            pa.field("loss_cousage", pa.float64()),
            pa.field("collision_rate", pa.float64()),  # null in warm-up epochs (no codes yet)
            pa.field("utilisation", pa.list_(pa.float64())),
            pa.field("perplexity", pa.list_(pa.float64())),
            pa.field("revived", pa.int64()),
            pa.field("seconds", pa.float64(), False),
        ]
    ),
    "code_metrics": pa.schema(
        [
            pa.field("codes_version", pa.string(), False),
            pa.field("mode", pa.string(), False),
            pa.field("n_tools", pa.int64(), False),
            pa.field("distinct_codes", pa.int64(), False),
            pa.field("collision_rate_before", pa.float64()),
            pa.field("utilisation", pa.list_(pa.float64()), False),
            pa.field("perplexity", pa.list_(pa.float64()), False),
            pa.field("alignment_cousage", pa.float64()),
            pa.field("alignment_random", pa.float64()),
            pa.field("alignment_lift", pa.float64()),
            pa.field("k", pa.int32(), False),
            pa.field("recall_at_k", pa.float64()),
        ]
    ),
    "sft_examples": pa.schema(
        [
            pa.field("example_id", pa.string(), nullable=False),  # "<stage>/<tool_id|query_id|trajectory_id>"
            pa.field("stage", pa.string(), nullable=False),  # memorization | retrieval | trajectory
            pa.field("split", pa.string(), nullable=False),  # train | validation | test
            pa.field("source", pa.string(), nullable=False),
            pa.field("query_id", pa.string()),
            pa.field("conversations", pa.string(), nullable=False),  # JSON [{role, content, loss}]
            pa.field("n_tools", pa.int32(), nullable=False),
        ]
    ),
    "sft_rejects": pa.schema(
        [
            pa.field("stage", pa.string(), nullable=False),
            pa.field("source", pa.string(), nullable=False),
            pa.field("query_id", pa.string()),
            pa.field("tool_id", pa.string()),
            pa.field("reason", pa.string(), nullable=False),
        ]
    ),
    "train_metrics": pa.schema(
        [
            pa.field("run_id", pa.string(), nullable=False),
            pa.field("config_hash", pa.string(), nullable=False),
            pa.field("stage", pa.string(), nullable=False),
            pa.field("step", pa.int64(), nullable=False),
            pa.field("epoch", pa.int64(), nullable=False),
            pa.field("loss", pa.float64(), nullable=False),
            pa.field("lr", pa.float64(), nullable=False),
            pa.field("grad_norm", pa.float64(), nullable=False),
            pa.field("tokens", pa.int64(), nullable=False),
            pa.field("loss_tokens", pa.int64(), nullable=False),
            pa.field("step_s", pa.float64(), nullable=False),
            pa.field("tokens_per_s", pa.float64(), nullable=False),
        ]
    ),
    "eval_results": pa.schema(
        [
            pa.field("method", pa.string(), nullable=False),
            pa.field("setting", pa.string(), nullable=False),  # in-domain | multi-domain
            pa.field("convention", pa.string(), nullable=False),  # standard | toolgen
            pa.field("metric", pa.string(), nullable=False),  # ndcg@1 ... exact_set_acc
            pa.field("value", pa.float64(), nullable=False),
            pa.field("n_queries", pa.int64(), nullable=False),
            pa.field("dataset", pa.string(), nullable=False),
            pa.field("split", pa.string(), nullable=False),
            pa.field("zero_shot", pa.bool_(), nullable=False),
            pa.field("model", pa.string()),  # embedder / checkpoint id
            pa.field("data_versions", pa.string()),  # JSON
            pa.field("fit_s", pa.float64()),
            pa.field("rank_s", pa.float64()),
            pa.field("evaluated_at", pa.timestamp("us", tz="UTC"), nullable=False),
        ]
    ),
}
# The update set of a rebuild holds examples of the same shape as `sft_examples`.
PIPELINE_SCHEMAS["sft_update"] = PIPELINE_SCHEMAS["sft_examples"]
