"""Using the trained model: the tool-call loop, its two constrained phases, executors.

- `schema`: BFCL parameter documents -> JSON Schema (mapped once);
- `arguments`: argument JSON generated under a tool's schema (xgrammar);
- `executors`: run calls offline (BFCL's simulated classes) or say "no executor";
- `catalog`: code -> tool entries (what `tools.json` of an export holds);
- `loop`: the agent conversation in the trajectory stage's format;
- `incontext`: the base-model baseline that reads documents in its prompt.
The export of a merged Hugging Face folder is a stage (`tasks/stages/agent.py`): it reads
the store.
"""
