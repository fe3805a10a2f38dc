"""Prefect layer: plan, stage adapters and registry, caching, reporting, progress, catalog sensor."""
