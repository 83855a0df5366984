"""Chat templates, system messages, special tokens and the assistant-answer format.

One Jinja file (`templates/medical_chatml.jinja`, ChatML with `{% generation %}` markers) serves all three
stages; a stage differs only in its default system message, which is prepended to the template as a
Jinja `set` line so that a saved tokenizer carries it. Stage 3 (DPO) prefers one reasoning answer over
another, so it shares stage 2's message.

With retrieval (docs/architecture.md, "Retrieval-augmented coding") the user turn is the note followed by a numbered list of candidate
codes (`candidate_prompt`), in every stage, and the answer picks codes from it; the answer format is the same:

    Patient with type 2 diabetes, no complications.

    Candidates:
    1. E11.9 Type 2 diabetes mellitus without complications
    2. E11.65 Type 2 diabetes mellitus with hyperglycemia

The assistant answer is the one format that training data, the output parser and the evaluator share
(docs/data_contracts.md):

    <think>free-text reasoning</think>      <- stages 2 and 3 only
    ICD10: E11.9
    CPT: 99213
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from functools import cache
from importlib import resources
from typing import Any

from thce.utils.code_systems.registry import CODE_SYSTEMS

SYSTEM_MESSAGES = {
    "stage_1": "You are a medical coding assistant. Convert clinical narratives to billing codes.",
    "stage_2": "You are a medical coding expert. Use <think> tags to show your reasoning.",
    "stage_3": "You are a medical coding expert. Use <think> tags to show your reasoning.",
}
THINK_START = "<think>"
THINK_END = "</think>"
REASONING_TOKENS = (THINK_START, THINK_END)
END_OF_TURN = "<|im_end|>"
# SmolLM2 ships pad = <|im_end|>: padding with the end-of-turn token lets collators mask it out of the
# loss, and the model never learns to stop. <|endoftext|> (id 0) never occurs inside a conversation.
PAD_TOKEN = "<|endoftext|>"
_ANSWER_LINE = re.compile(rf"^\s*({'|'.join(CODE_SYSTEMS)})\s*:\s*(\S+)\s*$", re.MULTILINE)
_THINK_SPAN = re.compile(f"{re.escape(THINK_START)}(.*?){re.escape(THINK_END)}", re.DOTALL)


@cache
def _base_template() -> str:
    return (resources.files("thce.utils") / "templates" / "medical_chatml.jinja").read_text(encoding="utf-8")


def chat_template(template: str = "stage_1", system_message: str | None = None) -> str:
    """The Jinja chat template of a stage, with its default system message baked in."""
    if template not in SYSTEM_MESSAGES:
        raise ValueError(f"unknown chat template {template!r}; expected one of {', '.join(SYSTEM_MESSAGES)}")
    message = system_message if system_message is not None else SYSTEM_MESSAGES[template]
    # json.dumps gives a double-quoted string literal that Jinja parses identically.
    return "{%- set stage_system_message = " + json.dumps(message) + " -%}\n" + _base_template()


def prepare_tokenizer(
    tokenizer: Any,
    template: str = "stage_1",
    special_tokens: Iterable[str] = (),
    system_message: str | None = None,
) -> int:
    """Install the stage's chat template, add special tokens, set a dedicated pad token.

    Returns how many tokens were added to the vocabulary (resize the model with `prepare_model`).
    """
    tokenizer.chat_template = chat_template(template, system_message)
    new_tokens = [t for t in special_tokens if t not in tokenizer.get_vocab()]
    added = tokenizer.add_special_tokens({"additional_special_tokens": new_tokens}) if new_tokens else 0
    if PAD_TOKEN in tokenizer.get_vocab():
        tokenizer.pad_token = PAD_TOKEN
    elif tokenizer.pad_token is None or tokenizer.pad_token == tokenizer.eos_token:
        added += tokenizer.add_special_tokens({"pad_token": PAD_TOKEN})
    tokenizer.eos_token = END_OF_TURN
    return added


# A new token whose job an existing token already does starts as a copy of it. `</think>` ends a segment as
# `<|im_end|>` does: as a copy, its logit is already high where the model would end a segment (log-prob about
# -1 after a stage-1 answer) and training only has to tell the two apart. An "average" row starts near -17,
# and a short run (tens of steps, each moving a row by about the learning rate) left it near -10, so the
# model never closed its trace and wrote until the think budget forced it.
INITIAL_EMBEDDING = {THINK_START: "<|im_start|>", THINK_END: END_OF_TURN}


def prepare_model(model: Any, tokenizer: Any) -> None:
    """Grow the embeddings to the tokenizer and point the model's pad/eos ids at the tokenizer's. New rows
    are drawn around the mean of the existing ones (so new tokens start as "average" tokens rather than
    noise), except that tokens in `INITIAL_EMBEDDING` start as a copy of the token they stand in for (plus 1%
    noise)."""
    old_size = model.get_input_embeddings().weight.shape[0]
    if len(tokenizer) > old_size:
        import torch

        model.resize_token_embeddings(len(tokenizer), mean_resizing=True)
        vocab = tokenizer.get_vocab()
        layers = (model.get_input_embeddings(), model.get_output_embeddings())
        matrices = {id(layer.weight): layer.weight for layer in layers if layer is not None}
        with torch.no_grad():
            for token, source in INITIAL_EMBEDDING.items():
                if vocab.get(token, -1) >= old_size and vocab.get(source, old_size) < old_size:
                    for weight in matrices.values():  # once when tied
                        row = weight[vocab[source]]
                        # 1% noise: an untrained copy would tie with its source's logit exactly.
                        weight[vocab[token]] = row + 0.01 * row.std() * torch.randn_like(row)
    for config in (model.config, getattr(model, "generation_config", None)):
        if config is not None:
            config.pad_token_id = tokenizer.pad_token_id
            config.eos_token_id = tokenizer.convert_tokens_to_ids(END_OF_TURN)


def format_answer(codes: Iterable[Mapping[str, str]], reasoning: str | None = None) -> str:
    """Render codes (`{"system", "code"}`) and optional reasoning as the assistant answer."""
    lines = [f"{code['system']}: {code['code']}" for code in codes]
    body = "\n".join(lines)
    if reasoning:
        return f"{THINK_START}{reasoning.strip()}{THINK_END}\n{body}"
    return body


def parse_answer_codes(answer: str) -> list[dict[str, str]]:
    """The `SYSTEM: CODE` lines of a well-formed answer (training data; the model's own output goes
    through the tolerant `thce.inference.output_parser`)."""
    return [{"system": s, "code": c} for s, c in _ANSWER_LINE.findall(_THINK_SPAN.sub("", answer))]


def answer_reasoning(answer: str) -> str | None:
    """The `<think>` reasoning of a well-formed answer, or None."""
    match = _THINK_SPAN.search(answer)
    return match.group(1).strip() if match else None


CANDIDATES_HEADER = "Candidates:"


def _field(candidate: Any, name: str) -> str:
    return str(candidate[name] if isinstance(candidate, Mapping) else getattr(candidate, name))


def candidate_prompt(text: str, candidates: Sequence[Any] | None = None) -> str:
    """The user turn: the note, then (when there are candidates) a blank line and the numbered list
    `N. CODE description`. Candidates are retrieval `Candidate`s or mappings with `code` and `description`
    (already trimmed by the retriever). The code comes right after `N. ` with a space before it, so it is
    tokenised exactly as in the answer line `ICD10: CODE`, and copying it is one easy step."""
    note = text.strip()
    if not candidates:
        return note
    lines = [
        f"{i}. {_field(c, 'code')} {' '.join(_field(c, 'description').split())}".rstrip()
        for i, c in enumerate(candidates, 1)
    ]
    return f"{note}\n\n{CANDIDATES_HEADER}\n" + "\n".join(lines)


def prompt_messages(
    text: str,
    template: str = "stage_1",
    system_message: str | None = None,
    candidates: Sequence[Any] | None = None,
) -> list[dict]:
    """The system + user turns for a clinical narrative (TRL's conversational `prompt`), with the
    numbered candidate list when `candidates` are given (`candidate_prompt`)."""
    message = system_message if system_message is not None else SYSTEM_MESSAGES[template]
    return [
        {"role": "system", "content": message},
        {"role": "user", "content": candidate_prompt(text, candidates)},
    ]


def assistant_messages(codes: Iterable[Mapping[str, str]], reasoning: str | None = None) -> list[dict]:
    """The assistant turn (TRL's conversational `completion`, `chosen` or `rejected`)."""
    return [{"role": "assistant", "content": format_answer(codes, reasoning)}]
