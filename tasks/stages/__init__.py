"""Prefect-free stage functions: each reads the store, calls the `toolweaver` library, writes through the store."""
