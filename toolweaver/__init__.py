"""ToolWeaver: the pure library (parsing, embedding, RQ-VAE, Sinkhorn, codes, training,
decoding, metrics). It never imports prefect, duckdb, deltalake, storage, tasks or flows."""

__version__ = "0.1.0"
