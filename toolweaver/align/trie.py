"""A trie over the valid code token-id sequences, each ending in EOS.

Stored flat (CSR) so that decoding never walks Python dicts on the hot path: node `n`'s
outgoing edges are `offsets[n]:offsets[n+1]`, with `edge_token` (the token id),
`edge_child` (the next node, -1 for an EOS edge) and `edge_tool` (the tool index an EOS
edge completes, -1 otherwise). Node 0 is the root. Restricting to a candidate subset
(the in-domain setting) builds a smaller trie.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class CodeTrie:
    tool_ids: tuple[str, ...]
    sequences: tuple[tuple[int, ...], ...]  # token ids of each tool's code (no EOS)
    eos_id: int
    offsets: torch.Tensor  # (n_nodes + 1,) int64
    edge_token: torch.Tensor  # (n_edges,) int64
    edge_child: torch.Tensor  # (n_edges,) int64, -1 for EOS edges
    edge_tool: torch.Tensor  # (n_edges,) int64, -1 for non-EOS edges
    _child_maps: tuple[dict[int, int], ...]  # per node token -> child (prefix walks)

    @property
    def n_nodes(self) -> int:
        return len(self._child_maps)

    def allowed(self, node: int) -> torch.Tensor:
        """Token ids allowed after reaching `node` (a view, no copy)."""
        return self.edge_token[self.offsets[node] : self.offsets[node + 1]]

    def walk(self, prefix: Sequence[int]) -> int | None:
        """The node reached by `prefix` (generated token ids), None when it leaves the trie."""
        node = 0
        for token in prefix:
            node = self._child_maps[node].get(int(token), -1)
            if node < 0:
                return None
        return node

    def to(self, device: torch.device | str) -> CodeTrie:
        return CodeTrie(
            self.tool_ids,
            self.sequences,
            self.eos_id,
            self.offsets.to(device),
            self.edge_token.to(device),
            self.edge_child.to(device),
            self.edge_tool.to(device),
            self._child_maps,
        )

    def restrict(self, tool_ids: Sequence[str]) -> CodeTrie:
        """The trie of a candidate subset; unknown tool ids are an error."""
        index = {t: i for i, t in enumerate(self.tool_ids)}
        unknown = [t for t in tool_ids if t not in index]
        if unknown:
            raise KeyError(f"{len(unknown)} candidate tools are not in the trie, e.g. {unknown[:3]}")
        keep = sorted({index[t] for t in tool_ids})
        trie = build_trie({self.tool_ids[i]: self.sequences[i] for i in keep}, self.eos_id)
        return trie.to(self.offsets.device)


def build_trie(sequences: Mapping[str, Sequence[int]], eos_id: int) -> CodeTrie:
    """Trie of `{tool_id: code token ids}`. Raises on empty or duplicate sequences (a tool
    would be ambiguous) and on EOS inside a code. A code that is a prefix of another is
    allowed: its node has both the EOS edge and child edges."""
    if not sequences:
        raise ValueError("cannot build a trie over zero tools")
    tool_ids = tuple(sorted(sequences))
    seqs = tuple(tuple(int(t) for t in sequences[t]) for t in tool_ids)
    children: list[dict[int, int]] = [{}]
    terminal: dict[int, int] = {}  # node -> tool index
    for tool_index, seq in enumerate(seqs):
        if not seq or eos_id in seq:
            raise ValueError(f"tool {tool_ids[tool_index]!r}: code ids {seq} are empty or contain EOS")
        node = 0
        for token in seq:
            if token not in children[node]:
                children[node][token] = len(children)
                children.append({})
            node = children[node][token]
        if node in terminal:
            raise ValueError(f"tools {tool_ids[terminal[node]]!r} and {tool_ids[tool_index]!r} share a code")
        terminal[node] = tool_index
    return _flatten(tool_ids, seqs, eos_id, children, terminal)


def _flatten(
    tool_ids: tuple[str, ...],
    seqs: tuple[tuple[int, ...], ...],
    eos_id: int,
    children: list[dict[int, int]],
    terminal: dict[int, int],
) -> CodeTrie:
    offsets: list[int] = [0]
    tokens: list[int] = []
    childs: list[int] = []
    tools: list[int] = []
    for node, edges in enumerate(children):
        for token, child in sorted(edges.items()):
            tokens.append(token)
            childs.append(child)
            tools.append(-1)
        if node in terminal:
            tokens.append(eos_id)
            childs.append(-1)
            tools.append(terminal[node])
        offsets.append(len(tokens))
    long = torch.int64
    return CodeTrie(
        tool_ids,
        seqs,
        eos_id,
        torch.tensor(offsets, dtype=long),
        torch.tensor(tokens, dtype=long),
        torch.tensor(childs, dtype=long),
        torch.tensor(tools, dtype=long),
        tuple(children),
    )
