"""The artifact store: Delta tables with lineage, a checkpoint registry and DuckDB SQL.

Never imports torch, `toolweaver`, prefect, `tasks` or `flows`.
"""

from storage.schemas import SCHEMAS, SchemaError, embeddings_schema, register_schema
from storage.sql import WriteRefused, connect, run_sql
from storage.store import Store, TableRef, default_root

__all__ = [
    "SCHEMAS",
    "SchemaError",
    "Store",
    "TableRef",
    "WriteRefused",
    "connect",
    "default_root",
    "embeddings_schema",
    "register_schema",
    "run_sql",
]
