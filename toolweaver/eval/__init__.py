"""Evaluation: retrieval metrics in two labelled NDCG conventions, the baselines (BM25,
dense, fine-tuned dense), an adapter for the generative (LLM) methods, the harness that
runs them all on one split, reports and cost measurements.

Importing this package imports nothing heavy; the modules are imported explicitly
(`toolweaver.eval.metrics`, `.bm25`, `.dense`, `.toolretriever`, `.llm`, `.harness`,
`.sets`, `.report`, `.costs`, `.methods`).
"""
