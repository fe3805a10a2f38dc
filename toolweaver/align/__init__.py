"""Generative alignment (stage 2 of the method): teach an LLM to emit tool codes.

- `datasets`, `splits`: ShareGPT examples (memorization / retrieval / trajectory), split by query.
- `vocab`: the code-token vocabulary (`<a_0>…`, `<<Finish>>`) and embedding initialisation.
- `trie`, `decode`: constrained beam search over the valid codes (top-k distinct tools).
- `tiny`: tiny tokenizer and Llama built in code, for tests.
- `models`, `collate`, `train`: model loading, tokenisation with loss masks, staged training.

Submodules are imported explicitly (`from toolweaver.align.decode import retrieve`) so that
importing the package stays light.
"""
