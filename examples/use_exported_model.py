"""Use a model exported by `toolweaver export` with transformers alone (no project code).

    python examples/use_exported_model.py EXPORT_DIR "find the weather in Paris"
    python examples/use_exported_model.py EXPORT_DIR --input queries.jsonl --top-k 5

Retrieval: the model writes a tool's code after the user's request; a beam search over
the codes in tools.json (a trie: only real codes can be written) gives the top-k tools,
scored like `toolweaver retrieve` (sum of the code tokens' log-probabilities, the end
token not scored). Calling: the agent format of the trajectory stage — the best tool's
code, its documentation, then the model writes the arguments as JSON (here with plain
greedy generation; `toolweaver agent` constrains them to the tool's schema).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

AGENT_SYSTEM = (
    "Solve the task with tools. Each step: give the code of one tool (or <<Finish>>); "
    "after its documentation is shown, give its arguments as JSON."
)


def prompt_ids(tokenizer, messages: list[dict]) -> list[int]:
    """The prompt tokenised message by message (each message = the text the chat template
    adds to the prefix, then the generation header), exactly as the model was trained."""
    ids, rendered = [], ""
    pieces = [tokenizer.apply_chat_template(messages[: i + 1], tokenize=False) for i in range(len(messages))]
    pieces.append(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
    for text in pieces:
        if text[len(rendered) :]:
            ids += tokenizer(text[len(rendered) :], add_special_tokens=False)["input_ids"]
        rendered = text
    return ids


@torch.no_grad()
def log_probs(model, ids: list[int]) -> torch.Tensor:
    return torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0, -1].float(), dim=-1)


def build_trie(codes: dict[str, list[int]], eos: int) -> tuple[list[str], list[list[tuple[int, int, int]]]]:
    """Tool ids (sorted) and per node its edges (token, child, tool index): children by
    token, then the end edge (child -1) of a complete code."""
    tool_ids = sorted(codes)
    children: list[dict[int, int]] = [{}]
    terminal: dict[int, int] = {}
    for index, tool_id in enumerate(tool_ids):
        node = 0
        for token in codes[tool_id]:
            if token not in children[node]:
                children[node][token] = len(children)
                children.append({})
            node = children[node][token]
        terminal[node] = index
    edges = []
    for node, kids in enumerate(children):
        out = [(token, child, -1) for token, child in sorted(kids.items())]
        if node in terminal:
            out.append((eos, -1, terminal[node]))
        edges.append(out)
    return tool_ids, edges


def beam_search(model, prompt: list[int], trie, top_k: int) -> list[tuple[int, float]]:
    """Top-k (tool index, score): `top_k` beams, finished codes collected until no alive
    prefix can beat the k-th finished one (log-probabilities only fall)."""
    edges = trie[1]
    beams = [([], 0, 0.0, log_probs(model, prompt))]  # (prefix, node, score, next log-probs)
    finished: list[tuple[float, int]] = []
    while beams:
        candidates = []
        for prefix, node, score, logp in beams:
            for token, child, tool in edges[node]:
                if tool >= 0:
                    finished.append((score, tool))
                else:
                    candidates.append((score + float(logp[token]), prefix + [token], child))
        if not candidates:
            break
        best_alive = max(c[0] for c in candidates)
        if len(finished) >= top_k and best_alive <= sorted((s for s, _ in finished), reverse=True)[top_k - 1]:
            break
        candidates.sort(key=lambda c: -c[0])
        chosen = candidates[:top_k]
        if all(len(edges[child]) == 1 and edges[child][0][2] >= 0 for _, _, child in chosen):
            finished += [(score, edges[child][0][2]) for score, _, child in chosen]
            break
        beams = [(prefix, child, score, log_probs(model, prompt + prefix)) for score, prefix, child in chosen]
    finished.sort(key=lambda p: (-p[0], p[1]))
    return [(tool, score) for score, tool in finished[:top_k]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("export_dir", type=Path)
    parser.add_argument("query", nargs="?")
    parser.add_argument("--input", type=Path, help='JSON lines of {"query": ..., "id": ...}')
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--call", action="store_true", help="also write the best tool's arguments")
    args = parser.parse_args()
    model = AutoModelForCausalLM.from_pretrained(args.export_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(args.export_dir)
    tools = json.loads((args.export_dir / "tools.json").read_text())["tools"]
    by_id = {entry["tool_id"]: entry for entry in tools.values()}
    codes = {entry["tool_id"]: tokenizer.convert_tokens_to_ids(_code_tokens(code)) for code, entry in tools.items()}
    trie = build_trie(codes, tokenizer.eos_token_id)
    queries = (
        [
            (str(q.get("id", i)), q["query"])
            for i, q in enumerate(map(json.loads, args.input.read_text().splitlines()), 1)
        ]
        if args.input
        else [("0", args.query)]
    )
    out = []
    for qid, text in queries:
        found = beam_search(model, prompt_ids(tokenizer, [{"role": "user", "content": text}]), trie, args.top_k)
        row = {"id": qid, "tools": [{"tool_id": trie[0][i], "score": s} for i, s in found]}
        if args.call and found:
            row["call"] = call(model, tokenizer, text, by_id[trie[0][found[0][0]]])
        out.append(row)
    json.dump(out, sys.stdout)


def _code_tokens(code: str) -> list[str]:
    return [code] if code.startswith("<<") else [piece + ">" for piece in code.split(">") if piece]


def call(model, tokenizer, text: str, tool: dict) -> dict:
    messages = [
        {"role": "system", "content": AGENT_SYSTEM},
        {"role": "user", "content": text},
        {"role": "assistant", "content": tool["code"]},
        {"role": "user", "content": tool["documentation"]},
    ]
    ids = prompt_ids(tokenizer, messages)
    generated = model.generate(torch.tensor([ids]), max_new_tokens=128, do_sample=False)[0, len(ids) :]
    arguments = tokenizer.decode(generated, skip_special_tokens=True).strip()
    return {"name": tool["name"], "arguments": arguments}


if __name__ == "__main__":
    main()
