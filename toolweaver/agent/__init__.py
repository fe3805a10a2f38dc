"""Using the trained model: the tool-call loop, its two constrained phases, executors, export.

- `schema`: BFCL parameter documents -> JSON Schema (mapped once);
- `arguments`: argument JSON generated under a tool's schema (xgrammar);
- `executors`: run calls offline (BFCL's simulated classes) or say "no executor";
- `loop`: the agent conversation in the trajectory stage's format;
- `export`: a merged Hugging Face folder plus `tools.json`.
"""
