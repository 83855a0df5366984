"""Constrained decoding: every code the model writes is a real, billable code.

The answer format (docs/data_contracts.md) is spelled out at token level as a small grammar:

    answer := [<think> FREE-TEXT </think> "\\n"]  line+  <|im_end|>        (the think part: reasoning models)
    line   := PREFIX CODE ("\\n" | <|im_end|>)
    PREFIX := the tokens of "ICD10:" (and "CPT:", "HCPCS:" where a code file is configured)
    CODE   := the tokens of " " + one billable code, walked in a prefix trie (`CodeTrie`)

`CodeConstraintProcessor` (a transformers `LogitsProcessor`) enforces it in one of two modes:

- `force_format=True` (THCE's default): the answer itself is forced. A reasoning model must open with
  `<think>`; inside it the text is free, except that the turn cannot end there and, after `think_budget`
  tokens, `</think>` is forced so the answer always gets written. After `</think>\\n` (from the first token
  for stage-1 models) every line is a PREFIX followed by a billable code, ended by a newline or the
  end-of-turn token; at most `max_codes` lines, and the turn may end only after at least one code. Even
  a random model therefore answers with valid codes (what it picks among them is its own business).
- `force_format=False`: generation is free; whenever a line starts with a PREFIX, the code after it is
  constrained to the trie. Text that is not a code line (or inside `<think>`) is untouched.

Tokenisation of a code does not depend on what precedes it (checked for every code when the trie is
built: `tok("ICD10: " + code + "\\n") == tok("ICD10:") + tok(" " + code) + tok("\\n")`), so the trie over
`tok(" " + code)` is exactly what a model trained on the answer format emits.

With retrieval, each example gets its own grammar over only the codes it was offered
(`candidate_grammar`: tries of ~10 codes, built in about a millisecond), so every emitted code exists AND
was offered; the processor takes one grammar per example.

A trie is built once per (code set, tokenizer) and cached as JSON under `$THCE_HOME/tries/` (~2 s to
build, well under a second to load; JSON rather than pickle, so a planted cache file cannot run code).
Per decoding step the processor does one dict lookup per row: the state of a row is
keyed by its generated tokens, so it survives beam search reordering rows between steps.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from loguru import logger

from thce.utils.errors import UserError
from thce.utils.io import write_atomically
from thce.utils.medical_chat_templates import END_OF_TURN, THINK_END, THINK_START

TRIE_SCHEMA = 3  # 3: JSON instead of pickle
ROOT, LEAF = 0, 1  # every childless end of a code shares node 1: 74k fewer empty dicts

# Grammar modes (a state is a tuple `(mode, node, system_index, codes_done, think_tokens)`).
THINK_OPEN, THINK, AFTER_THINK, LINE, PREFIX, CODE, FREE, DONE = range(8)


@dataclass
class CodeTrie:
    """A prefix trie over the token sequences of `" " + code` for every code of one system."""

    system: str
    children: list[dict[int, int]]
    terminal: bytearray
    n_codes: int
    max_length: int = 0  # tokens in the longest code

    def walk(self, tokens: Iterable[int]) -> int | None:
        """Node reached by following `tokens` from the root, or None if they leave the trie."""
        node = ROOT
        for token in tokens:
            node = self.children[node].get(token)
            if node is None:
                return None
        return node

    def contains(self, tokens: Sequence[int]) -> bool:
        """True if `tokens` spell a whole code."""
        node = self.walk(tokens)
        return node is not None and bool(self.terminal[node])


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """A hash of the tokenizer's full definition (vocabulary, merges, normaliser, added tokens)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    text = backend.to_str() if backend is not None else repr(sorted(tokenizer.get_vocab().items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def build_code_trie(system: str, codes: Sequence[str], tokenizer: Any, check: bool = True) -> CodeTrie:
    """Tokenise every code as it appears after `SYSTEM:` and insert it into a trie (`check`: warn about
    codes whose tokens differ inside an answer line; the full code sets pass it, so per-example subsets
    skip it)."""
    sequences = tokenizer([f" {code}" for code in codes], add_special_tokens=False).input_ids
    if check:
        _check_context_free(system, codes, sequences, tokenizer)
    children: list[dict[int, int]] = [{}, {}]
    terminal = bytearray([0, 1])
    for sequence in sequences:
        node = ROOT
        for position, token in enumerate(sequence):
            last = position == len(sequence) - 1
            child = children[node].get(token)
            if child is None:
                child = LEAF if last else _new_node(children, terminal)
                children[node][token] = child
            elif child == LEAF and not last:
                # a code that is a token-prefix of another: it gets a node of its own, still terminal
                child = _new_node(children, terminal)
                terminal[child] = 1
                children[node][token] = child
            elif last:
                terminal[child] = 1
            node = child
    return CodeTrie(system, children, terminal, len(codes), max((len(s) for s in sequences), default=0))


def _new_node(children: list[dict[int, int]], terminal: bytearray) -> int:
    children.append({})
    terminal.append(0)
    return len(children) - 1


def _check_context_free(
    system: str, codes: Sequence[str], sequences: list[list[int]], tokenizer: Any
) -> None:
    prefix = tokenizer(f"{system}:", add_special_tokens=False).input_ids
    newline = tokenizer("\n", add_special_tokens=False).input_ids
    in_context = tokenizer([f"{system}: {code}\n" for code in codes], add_special_tokens=False).input_ids
    differing = [c for c, s, f in zip(codes, sequences, in_context, strict=True) if f != prefix + s + newline]
    if differing:
        logger.warning(
            f"{len(differing)} {system} codes tokenise differently inside an answer line (e.g. {differing[:3]}); "
            "the trie follows the standalone tokenisation"
        )


def load_code_trie(system: str, tokenizer: Any, codes: Sequence[str] | None = None) -> CodeTrie:
    """The trie of `system`'s billable codes for `tokenizer`, from the on-disk cache when possible.

    `codes` defaults to the validator's `billable_codes(system)` (raises `UserError` for CPT/HCPCS
    without a configured code file).
    """
    from thce.utils.models import thce_home

    if codes is None:
        from thce.utils.code_validator import billable_codes

        codes = billable_codes(system)
    codes_hash = hashlib.sha256("\n".join(codes).encode()).hexdigest()[:16]
    key = f"{system}-{codes_hash}-{tokenizer_fingerprint(tokenizer)}-v{TRIE_SCHEMA}"
    path = thce_home() / "tries" / f"{key}.json"
    if path.is_file():
        try:
            return trie_from_json(path.read_bytes())
        except Exception as err:  # a truncated or foreign file: rebuild rather than fail
            logger.warning(f"Ignoring unreadable code trie cache {path} ({err}); rebuilding it")
    logger.info(
        f"Building the {system} decoding trie over {len(codes):,} codes (once; cached in {path.parent})"
    )
    trie = build_code_trie(system, codes, tokenizer)
    try:
        write_atomically(path, trie_to_json(trie))
    except (OSError, UserError) as err:  # a read-only home still decodes, only slower to start next time
        logger.warning(f"Could not cache the code trie at {path}: {err}")
    return trie


def trie_to_json(trie: CodeTrie) -> str:
    """The trie as JSON (children flattened into offset/token/target lists): data only, never code."""
    offsets, tokens, targets = [0], [], []
    for children in trie.children:
        tokens.extend(children)
        targets.extend(children.values())
        offsets.append(len(tokens))
    return json.dumps(
        {
            "schema": TRIE_SCHEMA,
            "system": trie.system,
            "n_codes": trie.n_codes,
            "max_length": trie.max_length,
            "offsets": offsets,
            "tokens": tokens,
            "targets": targets,
            "terminal": list(trie.terminal),
        },
        separators=(",", ":"),
    )


def trie_from_json(blob: bytes | str) -> CodeTrie:
    """The inverse of `trie_to_json`; raises ValueError on anything else."""
    data = json.loads(blob)
    if not isinstance(data, dict) or data.get("schema") != TRIE_SCHEMA:
        raise ValueError(f"not a version-{TRIE_SCHEMA} THCE code trie")
    offsets, tokens, targets = data["offsets"], data["tokens"], data["targets"]
    children = [dict(zip(tokens[a:b], targets[a:b], strict=True)) for a, b in itertools.pairwise(offsets)]
    terminal = bytearray(data["terminal"])
    if len(children) != len(terminal) or len(tokens) != len(targets):
        raise ValueError("inconsistent code trie arrays")
    return CodeTrie(data["system"], children, terminal, int(data["n_codes"]), int(data["max_length"]))


class AnswerGrammar:
    """The token-level answer grammar (module docstring): `advance` moves a state by one token,
    `allowed` says which tokens may come next (None: anything)."""

    def __init__(
        self,
        tokenizer: Any,
        tries: Sequence[CodeTrie],
        *,
        reasoning: bool = False,
        force_format: bool = True,
        max_codes: int = 5,
        think_budget: int | None = None,
    ) -> None:
        if not tries:
            raise ValueError("constrained decoding needs at least one code trie")
        self.tries = list(tries)
        self.reasoning = reasoning
        self.force_format = force_format
        self.max_codes = max(1, max_codes)
        self.think_budget = think_budget
        self.newline = _single_token(tokenizer, "\n")
        self.eot = tokenizer.convert_tokens_to_ids(END_OF_TURN)
        self.think_start = self.think_end = -1
        if reasoning:
            self.think_start = tokenizer.convert_tokens_to_ids(THINK_START)
            self.think_end = tokenizer.convert_tokens_to_ids(THINK_END)
        # The line prefixes ("ICD10:" ...) as a second, tiny trie whose ends name the system.
        self.prefix_children: list[dict[int, int]] = [{}]
        self.prefix_system: dict[int, int] = {}
        for index, trie in enumerate(self.tries):
            node = 0
            for token in tokenizer(f"{trie.system}:", add_special_tokens=False).input_ids:
                child = self.prefix_children[node].get(token)
                if child is None:
                    self.prefix_children.append({})
                    child = len(self.prefix_children) - 1
                    self.prefix_children[node][token] = child
                node = child
            self.prefix_system[node] = index
        prefix_length = max(
            len(tokenizer(f"{t.system}:", add_special_tokens=False).input_ids) for t in self.tries
        )
        # a whole answer line: prefix, the longest code, the newline
        self.max_line_tokens = prefix_length + max(t.max_length for t in self.tries) + 1
        self._allowed_cache: dict[tuple, Any] = {}

    def initial_state(self) -> tuple:
        """State before the first generated token."""
        if self.reasoning and self.force_format:
            return (THINK_OPEN, 0, 0, 0, 0)
        return (LINE, 0, 0, 0, 0)

    def advance(self, state: tuple, token: int) -> tuple:
        """The state after `token`."""
        mode, node, system, done, thought = state
        if mode == DONE or token == self.eot:
            return (DONE, 0, 0, done + (mode == CODE), thought)
        if mode == THINK_OPEN:
            return (THINK, 0, 0, done, 0) if token == self.think_start else (FREE, 0, 0, done, 0)
        if mode == THINK:
            if token == self.think_end:
                return (
                    (AFTER_THINK, 0, 0, done, thought) if self.force_format else (LINE, 0, 0, done, thought)
                )
            return (THINK, 0, 0, done, thought + 1)
        if mode == AFTER_THINK:
            return (LINE, 0, 0, done, thought) if token == self.newline else (FREE, 0, 0, done, thought)
        if mode in (LINE, PREFIX):
            child = self.prefix_children[node].get(token)
            if child is not None:
                if child in self.prefix_system:
                    return (CODE, ROOT, self.prefix_system[child], done, thought)
                return (PREFIX, child, 0, done, thought)
        elif mode == CODE:
            trie = self.tries[system]
            child = trie.children[node].get(token)
            if child is not None:
                return (CODE, child, system, done, thought)
            if token == self.newline and trie.terminal[node]:
                return (LINE, 0, 0, done + 1, thought)
        # free text (only reachable unforced, or from a model that ignored a forced token)
        if token == self.newline:
            return (LINE, 0, 0, done, thought)
        if token == self.think_start and self.reasoning:
            return (THINK, 0, 0, done, 0)
        return (FREE, 0, 0, done, thought)

    def allowed(self, state: tuple, remaining: int | None = None) -> Any:
        """A LongTensor of the allowed next tokens, `"no_eot"` (anything but end-of-turn), or None.

        `remaining` (tokens left before max_new_tokens) ends the answer at a line start when another
        line might not fit, so the token limit never cuts a code in half.
        """
        mode, node, system, done, thought = state
        if remaining is not None and mode == LINE and done and remaining < self.max_line_tokens:
            state = (LINE, 0, 0, self.max_codes, thought)
            return self.allowed(state)
        if mode == CODE:
            key: tuple = (CODE, node, system)
        elif not self.force_format or mode in (DONE, FREE):
            return None
        elif mode == THINK:
            if self.think_budget is not None and thought >= self.think_budget:
                key = (THINK,)
            else:
                return "no_eot"
        elif mode == LINE:
            key = (LINE, min(done, 1), done >= self.max_codes)
        else:
            key = (mode, node)
        cached = self._allowed_cache.get(key)
        if cached is None:
            cached = self._allowed_cache[key] = self._build_allowed(key)
        return cached

    def _build_allowed(self, key: tuple) -> Any:
        import torch

        mode = key[0]
        if mode == CODE:
            trie = self.tries[key[2]]
            tokens = list(trie.children[key[1]])
            if trie.terminal[key[1]]:
                tokens += [self.newline, self.eot]
        elif mode == THINK:
            tokens = [self.think_end]
        elif mode == THINK_OPEN:
            tokens = [self.think_start]
        elif mode == AFTER_THINK:
            tokens = [self.newline]
        elif mode == LINE:
            _, any_done, full = key
            tokens = [self.eot] if full else list(self.prefix_children[0]) + ([self.eot] if any_done else [])
        else:  # PREFIX
            tokens = list(self.prefix_children[key[1]])
        return torch.tensor(tokens, dtype=torch.long)

    def state_of(self, tokens: Iterable[int]) -> tuple:
        """The state after a whole generated sequence (for tests and diagnostics)."""
        state = self.initial_state()
        for token in tokens:
            state = self.advance(state, token)
        return state


def _single_token(tokenizer: Any, text: str) -> int:
    ids = tokenizer(text, add_special_tokens=False).input_ids
    if len(ids) != 1:
        raise ValueError(
            f"the tokenizer splits {text!r} into {len(ids)} tokens; constrained decoding needs one"
        )
    return ids[0]


class CodeConstraintProcessor:
    """A transformers `LogitsProcessor` applying an `AnswerGrammar` to every row of a batch.

    `prompt_length` is the (left-padded) prompt width: everything after it was generated. A row's state
    is looked up by its generated tokens, advanced from its parent's state of the previous step, so rows
    may be reordered between steps (beam search) without confusing states.
    """

    def __init__(
        self,
        grammar: AnswerGrammar | Sequence[AnswerGrammar],
        prompt_length: int,
        max_new_tokens: int | None = None,
        rows_per_example: int = 1,
    ) -> None:
        # One grammar for all rows, or one per example (rows `i * rows_per_example ...` belong to example i:
        # beam search keeps each example's beams together, however it reorders them).
        self.grammars = [grammar] if isinstance(grammar, AnswerGrammar) else list(grammar)
        self.grammar = self.grammars[0]
        self.prompt_length = prompt_length
        self.max_new_tokens = max_new_tokens
        self.rows_per_example = rows_per_example
        self._states: dict[tuple, tuple] = {}

    def _grammar_of(self, row: int) -> tuple[int, AnswerGrammar]:
        if len(self.grammars) == 1:
            return 0, self.grammars[0]
        example = row // self.rows_per_example
        return example, self.grammars[example]

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        generated = input_ids[:, self.prompt_length :].tolist()
        states: dict[tuple, tuple] = {}
        rows: list[int] = []
        allowed_lists: list[Any] = []
        no_eot_rows: list[int] = []
        eot_columns: list[int] = []
        for row, sequence in enumerate(generated):
            example, grammar = self._grammar_of(row)
            key = (example, *sequence)
            state = states.get(key)
            if state is None:
                parent = self._states.get(key[:-1]) if sequence else None
                state = grammar.advance(parent, key[-1]) if parent is not None else grammar.state_of(sequence)
                states[key] = state
            remaining = self.max_new_tokens - len(sequence) if self.max_new_tokens is not None else None
            allowed = grammar.allowed(state, remaining)
            if allowed is None:
                continue
            if isinstance(allowed, str):
                no_eot_rows.append(row)
                eot_columns.append(grammar.eot)
            else:
                rows.append(row)
                allowed_lists.append(allowed)
        self._states = states
        # a copy: `generate` keeps the tensor it passes in as the step's raw logits (confidences, reranking)
        scores = scores.clone()
        if rows:
            # keep the allowed scores, wipe the constrained rows, put the allowed scores back
            columns = torch.cat(allowed_lists)
            row_index = torch.repeat_interleave(
                torch.tensor(rows), torch.tensor([len(a) for a in allowed_lists])
            )
            kept = scores[row_index, columns]
            scores[rows] = float("-inf")
            scores[row_index, columns] = kept
        if no_eot_rows:
            scores[no_eot_rows, eot_columns] = float("-inf")
        return scores


def make_logits_processor(
    grammar: AnswerGrammar | Sequence[AnswerGrammar],
    prompt_length: int,
    max_new_tokens: int | None = None,
    rows_per_example: int = 1,
) -> Any:
    """`CodeConstraintProcessor` registered as a transformers `LogitsProcessor` subclass."""
    from transformers import LogitsProcessor

    class _Processor(CodeConstraintProcessor, LogitsProcessor):
        pass

    return _Processor(grammar, prompt_length, max_new_tokens, rows_per_example)


def candidate_grammar(
    template: AnswerGrammar, tokenizer: Any, offered: Iterable[tuple[str, str]]
) -> AnswerGrammar:
    """`template`'s grammar (its reasoning, format, max_codes and think budget) over only the offered
    `(system, code)` pairs: one small trie per system present. Systems follow `template`'s order."""
    by_system: dict[str, list[str]] = {}
    for system, code in offered:
        codes = by_system.setdefault(system, [])
        if code not in codes:
            codes.append(code)
    order = [t.system for t in template.tries]
    systems = sorted(by_system, key=lambda s: order.index(s) if s in order else len(order))
    if not systems:
        raise ValueError("candidate_grammar needs at least one offered code")
    tries = [build_code_trie(system, by_system[system], tokenizer, check=False) for system in systems]
    return AnswerGrammar(
        tokenizer,
        tries,
        reasoning=template.reasoning,
        force_format=template.force_format,
        max_codes=min(template.max_codes, sum(len(c) for c in by_system.values())),
        think_budget=template.think_budget,
    )
