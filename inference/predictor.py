"""Batched, constrained prediction: clinical text in, parsed codes with confidences out.

    predictor = Predictor("outputs/stage_3/final")
    predictor.predict(["Patient has hypertension"])
    -> [{"code": "I10", "confidence": 0.95, "codes": [{"system": "ICD10", "code": "I10", ...}],
         "reasoning": "...", "raw": "<think>...</think>\\nICD10: I10", "candidates": [...]}]

How it runs (docs/architecture.md, model and precision): weights in the device precision (bf16 on CPUs with avx512_bf16),
prompts sorted by token count and batched with left padding, the `AnswerGrammar` of `constraints.py` applied
at every step: greedy decoding by `decoding.py` (forced tokens run together, the KV cache kept for
reranking), or beam search by transformers' `generate` with the grammar as a logits processor. The prompt
is the model's own chat template: a THCE checkpoint carries its stage's template and system message; any
other tokenizer (the base SmolLM2) gets stage 1's.

Retrieval (docs/architecture.md): when the checkpoint's `thce_config.yaml` has `retrieval.enabled` (or a
`retrieval` config is passed), each note's candidates are retrieved from the whole code set, the prompt
lists them (`candidate_prompt`), and decoding is constrained to the codes that note was offered
(`candidate_grammar`), so every emitted code exists and was offered. Each result carries its `offered` list.

Confidence of a code = the model's probability of the code's tokens, from the raw logits (before the
constraint renormalises them), so a constrained random model reports near-zero confidence, honestly.
"""

from __future__ import annotations

import dataclasses
import os
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from loguru import logger

from thce.inference.decoding import Decoded
from thce.inference.output_parser import parse_answer
from thce.utils.errors import UserError
from thce.utils.medical_chat_templates import (
    END_OF_TURN,
    THINK_END,
    THINK_START,
    candidate_prompt,
    prepare_tokenizer,
)

DEFAULT_MAX_NEW_TOKENS = 32  # two answer lines ("ICD10: S72.001A" is 13 tokens + newline)
DEFAULT_MAX_NEW_TOKENS_REASONING = 256
ANSWER_RESERVE = 40  # tokens kept for the answer lines after a forced </think>


class Predictor:
    """Load a model once, then `predict(texts)` in batches.

    Args:
        model_name_or_path: a stage's `final/` directory, any local checkpoint, or the base model id.
        precision: "auto" (the device's: bf16 / fp16 / fp32), or one of them.
        constrained: constrain codes to billable codes (`constraints.py`).
        force_format: also force the answer format (see `constraints.py`); only with `constrained`.
        batch_size: prompts per `generate` call.
        max_new_tokens: default 32, or 256 for reasoning models.
        num_beams: >1 runs beam search and returns every beam's codes as ranked `candidates`.
        max_codes: most answer lines when the format is forced.
        think_budget: tokens of reasoning before `</think>` is forced (default max_new_tokens - 40).
        systems: code systems to constrain; default ICD10 plus CPT/HCPCS where a code file is configured.
        retrieval: a `RetrievalConfig`; default: the checkpoint's own (`checkpoint_retrieval`), else none.
        rerank: with candidates, choose the FIRST answer code again after generating: "model" by the
            model's own score of every offered code (`candidate_scores.py`), "fusion" by that score plus
            the retriever's rank as a prior (`fusion_weight` * -log rank); "none" keeps the generated answer.
            None (and `fusion_weight` None): the retrieval section's `rerank` / `fusion_weight`.
        model, tokenizer: already-loaded objects (tests, the training pipeline); skip loading.
    """

    def __init__(
        self,
        model_name_or_path: str | os.PathLike | None = None,
        precision: str = "auto",
        constrained: bool = True,
        *,
        force_format: bool = True,
        batch_size: int = 32,
        max_new_tokens: int | None = None,
        num_beams: int = 1,
        max_codes: int = 5,
        think_budget: int | None = None,
        systems: Sequence[str] | None = None,
        retrieval: Any = None,
        rerank: str | None = None,
        fusion_weight: float | None = None,
        device: str | None = None,
        model: Any = None,
        tokenizer: Any = None,
    ) -> None:

        from thce.utils.models import default_device, resolve_model, select_precision, torch_dtype

        if rerank not in (None, "none", "model", "fusion"):
            raise UserError(f"rerank must be none, model or fusion (got {rerank!r})")
        if batch_size < 1 or num_beams < 1:
            raise UserError(f"batch_size and num_beams must be at least 1 (got {batch_size}, {num_beams})")
        self.device = device or default_device()
        self.precision = select_precision(self.device, precision)
        self.name = str(model_name_or_path) if model_name_or_path is not None else "in-memory model"
        if model is None or tokenizer is None:
            if model_name_or_path is None:
                raise UserError("Predictor needs a model path (or an in-memory model and tokenizer)")
            resolved = resolve_model(model_name_or_path)
            tokenizer, model = _load(resolved.path, torch_dtype(self.precision))
        else:
            model = model.to(torch_dtype(self.precision))
        self.tokenizer = _ensure_thce_template(tokenizer)
        self.tokenizer.padding_side = "left"
        if len(self.tokenizer) > model.get_input_embeddings().weight.shape[0]:
            raise UserError(
                f"{self.name}: the tokenizer has {len(self.tokenizer)} tokens but the model only "
                f"{model.get_input_embeddings().weight.shape[0]} embeddings; was it saved with prepare_model?"
            )
        self.model = model.to(self.device).eval()
        self.reasoning = is_reasoning_tokenizer(self.tokenizer)
        self.timings = {"retrieval_seconds": 0.0}
        self.constrained = constrained
        self.force_format = force_format and constrained
        self.batch_size = batch_size
        self.num_beams = num_beams
        self.max_new_tokens = max_new_tokens or (
            DEFAULT_MAX_NEW_TOKENS_REASONING if self.reasoning else DEFAULT_MAX_NEW_TOKENS
        )
        self.max_codes = max_codes
        self.think_budget = think_budget
        if self.reasoning and think_budget is None:
            self.think_budget = max(1, self.max_new_tokens - ANSWER_RESERVE)
        self.eot_id = self.tokenizer.convert_tokens_to_ids(END_OF_TURN)
        self.grammar = self._build_grammar(systems) if constrained else None
        if retrieval is None and model_name_or_path is not None:
            retrieval = checkpoint_retrieval(model_name_or_path)
        self.retrieval = retrieval if retrieval is not None and retrieval.enabled else None
        self.rerank = rerank or (self.retrieval.rerank if self.retrieval is not None else "none")
        if fusion_weight is None:
            fusion_weight = self.retrieval.fusion_weight if self.retrieval is not None else 1.0
        self.fusion_weight = fusion_weight
        self.retriever = None
        if self.retrieval is not None:
            from thce.retrieval import get_retriever

            self.retriever = get_retriever(self.retrieval)

    def _build_grammar(self, systems: Sequence[str] | None) -> Any:
        from thce.inference.constraints import AnswerGrammar, load_code_trie

        tries = []
        for system in systems or ("ICD10", "CPT", "HCPCS"):
            try:
                tries.append(load_code_trie(system, self.tokenizer))
            except UserError as err:
                if systems is not None:  # asked for explicitly: the user must configure its code file
                    raise
                logger.debug(f"{system} codes are not constrained: {err}")
        return AnswerGrammar(
            self.tokenizer,
            tries,
            reasoning=self.reasoning,
            force_format=self.force_format,
            max_codes=self.max_codes,
            think_budget=self.think_budget,
        )

    def describe(self) -> dict[str, Any]:
        """The settings a result was produced with (recorded in evaluation results)."""
        return {
            "model": self.name,
            "precision": self.precision,
            "device": self.device,
            "constrained": self.constrained,
            "force_format": self.force_format,
            "constrained_systems": [t.system for t in self.grammar.tries] if self.grammar else [],
            "reasoning": self.reasoning,
            "batch_size": self.batch_size,
            "num_beams": self.num_beams,
            "max_new_tokens": self.max_new_tokens,
            "max_codes": self.max_codes,
            "think_budget": self.think_budget,
            "retrieval": dataclasses.asdict(self.retrieval) if self.retrieval is not None else None,
            "rerank": self.rerank,
            "fusion_weight": self.fusion_weight,
        }

    def prompt(self, text: str, candidates: Sequence[Any] | None = None) -> str:
        """The chat-formatted prompt for one clinical text and its offered candidates (the template adds
        the stage's system message)."""
        return self.tokenizer.apply_chat_template(
            [{"role": "user", "content": candidate_prompt(text, candidates)}],
            add_generation_prompt=True,
            tokenize=False,
        )

    def predict(
        self,
        texts: Sequence[str],
        progress: Callable[[int], None] | None = None,
        candidates: Sequence[Sequence[Any]] | None = None,
    ) -> list[dict[str, Any]]:
        """Predict codes for each text, in input order. `progress(n)` is called after each batch.

        `candidates` (one list per text) overrides the retriever; by default a retrieval checkpoint
        retrieves them itself."""
        if isinstance(texts, str):
            raise TypeError("predict() takes a list of texts; wrap a single text in a list")
        started = time.perf_counter()
        if candidates is None and self.retriever is not None:
            candidates = self.retriever.retrieve_batch(list(texts))
        self.timings["retrieval_seconds"] += time.perf_counter() - started
        if candidates is not None and len(candidates) != len(texts):
            raise ValueError(f"predict(): {len(texts)} texts but {len(candidates)} candidate lists")
        offered = list(candidates) if candidates is not None else [None] * len(texts)
        prompts = [self.prompt(text, offered[i]) for i, text in enumerate(texts)]
        token_ids = self.tokenizer(prompts, add_special_tokens=False).input_ids  # once: lengths, then batches
        lengths = [len(ids) for ids in token_ids]
        self._check_context(lengths)
        # Sorting by token count keeps padding (wasted prefill) small; results go back to input order.
        order = sorted(range(len(prompts)), key=lambda i: lengths[i])
        results: list[dict[str, Any] | None] = [None] * len(prompts)
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            batch_results, decoded = self._predict_batch(
                [token_ids[i] for i in batch], [offered[i] for i in batch]
            )
            if self.rerank != "none":
                self._rerank([prompts[i] for i in batch], [offered[i] for i in batch], batch_results, decoded)
            for index, result in zip(batch, batch_results, strict=True):
                if offered[index] is not None:
                    result["offered"] = [_candidate_dict(c) for c in offered[index]]
                results[index] = result
            if progress is not None:
                progress(len(batch))
        return results  # type: ignore[return-value]

    def _rerank(
        self,
        prompts: list[str],
        offered: list[Sequence[Any] | None],
        results: list[dict[str, Any]],
        decoded: Decoded | None,
    ) -> None:
        """Choose each answer's first code again among its offered ICD-10-CM codes (`candidate_scores.py`).
        Scoring continues from greedy decoding's own KV cache where the answer wrote its `ICD10:`; other rows
        (beam search, no code line) prefill their prompt and `ICD10:` once more."""
        from thce.inference.candidate_scores import (
            first_code_prefix,
            generated_prefixes,
            rerank_first_code,
            score_codes,
            score_first_code,
        )

        offered_codes = {
            i: [_get(c, "code") for c in o if _get(c, "system") == "ICD10"]
            for i, o in enumerate(offered)
            if o
        }
        # Fusion adds -weight * log(rank) to the model's score. Where the model's greedy first code is the
        # retriever's first, both terms favour it (up to greedy vs. whole-code scoring), so fusion only scores
        # the rows where they disagree.
        rows = [
            i
            for i, row_codes in offered_codes.items()
            if row_codes
            and not (
                self.rerank == "fusion"
                and results[i]["codes"]
                and results[i]["codes"][0]["code"] == row_codes[0]
            )
        ]
        spent = {i: self._prefix_tokens(decoded, i) for i in rows}
        cached = [i for i in rows if spent[i] is not None]
        prefilled = [i for i in rows if spent[i] is None]
        scores: dict[int, list[float]] = {}
        if cached:
            prefixes = generated_prefixes(decoded, cached, [spent[i] for i in cached])
            codes = [offered_codes[i] for i in cached]
            scores.update(zip(cached, score_codes(self.model, self.tokenizer, prefixes, codes), strict=True))
        if prefilled:
            texts = [prompts[i] + (first_code_prefix(results[i]["raw"]) or "ICD10:") for i in prefilled]
            codes = [offered_codes[i] for i in prefilled]
            scores.update(
                zip(
                    prefilled,
                    score_first_code(self.model, self.tokenizer, texts, codes, self.device),
                    strict=True,
                )
            )
        for i in rows:
            result, row_codes, row_scores = results[i], offered_codes[i], scores[i]
            result["candidate_scores"] = {
                code: round(score, 4) for code, score in zip(row_codes, row_scores, strict=True)
            }
            result["codes"] = rerank_first_code(
                result["codes"], row_codes, row_scores, self.rerank, self.fusion_weight
            )
            if result["codes"]:
                result["code"], result["confidence"] = (
                    result["codes"][0]["code"],
                    result["codes"][0].get("confidence"),
                )

    def _prefix_tokens(self, decoded: Decoded | None, row: int) -> int | None:
        """How many of the row's new tokens spell its answer up to the first `ICD10:` exactly; else None."""
        from thce.inference.candidate_scores import first_code_prefix

        if decoded is None:
            return None
        text = ""
        for count, token in enumerate(decoded.tokens[row], start=1):
            if token == self.eot_id:
                return None
            text += self.tokenizer.decode([token], skip_special_tokens=False)
            prefix = first_code_prefix(text)
            if prefix is not None:
                return count if len(prefix) == len(text) else None
        return None

    def _grammars(self, offered: list[Sequence[Any] | None]) -> Any:
        """One grammar for the batch, or one per example restricted to the codes it was offered."""
        from thce.inference.constraints import candidate_grammar

        if self.grammar is None or all(o is None for o in offered):
            return self.grammar
        return [
            candidate_grammar(self.grammar, self.tokenizer, [(_get(c, "system"), _get(c, "code")) for c in o])
            if o
            else self.grammar
            for o in offered
        ]

    def _check_context(self, lengths: Sequence[int]) -> None:
        """Refuse a prompt (of `lengths[i]` tokens) that, with room for the answer, does not fit the model's
        context window (the model would otherwise read past its trained positions and answer nonsense, silently)."""
        window = getattr(self.model.config, "max_position_embeddings", None)
        if not window:
            return
        for index, length in enumerate(lengths):
            if length > window - self.max_new_tokens:
                raise UserError(
                    f"text {index + 1} is {length:,} tokens with its prompt; {self.name} reads at most "
                    f"{window:,} tokens including {self.max_new_tokens} for the answer: shorten or split it"
                )

    def _predict_batch(
        self, token_ids: list[list[int]], offered: list[Sequence[Any] | None]
    ) -> tuple[list[dict[str, Any]], Decoded | None]:
        """Decode and parse each tokenized prompt's answer: greedily (`decoding.py`, which also leaves the KV
        cache that reranking continues from), or by beam search (transformers' `generate`)."""
        from thce.inference.decoding import greedy_decode

        encoded = self.tokenizer.pad({"input_ids": token_ids}, return_tensors="pt")  # left-padded
        encoded = {key: value.to(self.device) for key, value in encoded.items()}
        grammars = self._grammars(offered)
        if self.num_beams > 1:
            return self._beam_search(encoded, grammars), None
        decoded = greedy_decode(
            self.model,
            encoded["input_ids"],
            encoded["attention_mask"],
            grammars if isinstance(grammars, list) else [grammars] * len(token_ids),
            self.max_new_tokens,
            self.eot_id,
            self.tokenizer.pad_token_id,
        )
        results = []
        for tokens, logprobs in zip(decoded.tokens, decoded.logprobs, strict=True):
            result = self._decode(tokens, logprobs)
            result["candidates"] = [{"system": c["system"], "code": c["code"]} for c in result["codes"]]
            results.append(result)
        return results, decoded

    def _beam_search(self, encoded: dict[str, Any], grammars: Any) -> list[dict[str, Any]]:
        """Beam search with the grammar as a logits processor; every beam's codes become ranked candidates."""
        import torch
        from transformers import LogitsProcessorList

        from thce.inference.constraints import make_logits_processor

        prompt_length = encoded["input_ids"].shape[1]
        processors = LogitsProcessorList()
        beams = self.num_beams
        if grammars is not None:
            processors.append(make_logits_processor(grammars, prompt_length, self.max_new_tokens, beams))
        with torch.inference_mode():
            output = self.model.generate(
                **encoded,
                max_new_tokens=self.max_new_tokens,
                do_sample=False,
                num_beams=beams,
                num_return_sequences=beams,
                logits_processor=processors,
                eos_token_id=self.eot_id,
                pad_token_id=self.tokenizer.pad_token_id,
                return_dict_in_generate=True,
                output_logits=True,
                temperature=None,
                top_p=None,
                top_k=None,
            )
        generated = output.sequences[:, prompt_length:]
        # log-probability of each generated token under the raw (unconstrained) logits
        token_logprobs = self.model.compute_transition_scores(
            output.sequences, output.logits, output.beam_indices, normalize_logits=True
        )
        results = []
        for row in range(len(generated) // beams):
            beams_out = [
                self._decode(generated[index].tolist(), token_logprobs[index].float().tolist())
                for index in range(row * beams, (row + 1) * beams)
            ]
            beams_out[0]["candidates"] = _ranked_candidates(beams_out)
            results.append(beams_out[0])
        return results

    def _decode(self, tokens: list[int], logprobs: list[float]) -> dict[str, Any]:
        """Decode one answer (special tokens kept, so `<think>` survives), parse it, attach confidences."""
        pieces: list[str] = []
        for token in tokens:
            if token == self.eot_id or token == self.tokenizer.pad_token_id:
                break
            pieces.append(self.tokenizer.decode([token], skip_special_tokens=False))
        truncated = False
        if self.grammar is not None and len(pieces) == len(tokens):  # stopped by the token limit
            from thce.inference.constraints import CODE, PREFIX

            if self.grammar.state_of(tokens)[0] in (CODE, PREFIX):
                # a code line cut off by the token limit is not an answer: drop it
                truncated = True
                cut = max((i for i, piece in enumerate(pieces) if "\n" in piece), default=-1)
                pieces = pieces[: cut + 1] if cut >= 0 else []
        raw = "".join(pieces)
        result = parse_answer(raw)
        result["truncated"] = truncated
        _attach_confidences(result, pieces, logprobs)
        result["generated_tokens"] = len(pieces)
        return result


def checkpoint_retrieval(model_name_or_path: str | os.PathLike) -> Any:
    """The `retrieval:` section of a checkpoint's `thce_config.yaml` (what it was trained with), or None
    for a directory without one (the base model, a foreign checkpoint)."""
    from thce.utils.config import RetrievalConfig, build_dataclass
    from thce.utils.stage_layout import RESOLVED_CONFIG, checkpoint_config

    saved = checkpoint_config(model_name_or_path)
    section = saved.get("retrieval") if saved else None
    if section is None:
        return None
    where = str(Path(model_name_or_path) / RESOLVED_CONFIG)
    return build_dataclass(RetrievalConfig, section, section="retrieval", file=where)


def _get(candidate: Any, name: str) -> Any:
    return candidate[name] if isinstance(candidate, dict) else getattr(candidate, name)


def _candidate_dict(candidate: Any) -> dict[str, Any]:
    return {name: _get(candidate, name) for name in ("system", "code", "description", "score")}


def _load(path: Path, dtype: Any) -> tuple[Any, Any]:
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(
            f"{path} is not a loadable causal language model (corrupt or incomplete weights?): {first}"
        ) from err
    return tokenizer, model


def _ensure_thce_template(tokenizer: Any) -> Any:
    """A tokenizer saved by THCE training carries its stage's template; anything else gets stage 1's."""
    template = tokenizer.chat_template if isinstance(tokenizer.chat_template, str) else ""
    if "stage_system_message" not in template:
        prepare_tokenizer(tokenizer, "stage_1")
    return tokenizer


def is_reasoning_tokenizer(tokenizer: Any) -> bool:
    """True for stage 2/3 checkpoints: the template's system message asks for `<think>` and both tags are
    single tokens."""
    template = tokenizer.chat_template if isinstance(tokenizer.chat_template, str) else ""
    first_line = template.split("\n", 1)[0]
    vocab = tokenizer.get_vocab()
    return THINK_START in first_line and THINK_START in vocab and THINK_END in vocab


def _attach_confidences(result: dict[str, Any], pieces: list[str], logprobs: list[float]) -> None:
    """Confidence of each parsed code = exp(sum of the log-probabilities of the tokens spelling it)."""
    import math

    offsets = []
    position = 0
    for piece in pieces:
        offsets.append((position, position + len(piece)))
        position += len(piece)
    raw = "".join(pieces)
    answer_start = raw.find(THINK_END)
    search_from = answer_start + len(THINK_END) if answer_start >= 0 else 0
    for entry in result["codes"]:
        pattern = r"\.?".join(re.escape(ch) for ch in entry["code"].replace(".", ""))
        match = re.search(pattern, raw[search_from:], re.IGNORECASE)
        if match is None:
            continue
        start, end = search_from + match.start(), search_from + match.end()
        search_from = end
        total = sum(
            logprobs[i]
            for i, (a, b) in enumerate(offsets)
            if a < end and b > start and i < len(logprobs) and math.isfinite(logprobs[i])
        )
        entry["confidence"] = float(f"{math.exp(total):.4g}")
    if result["codes"]:
        result["confidence"] = result["codes"][0]["confidence"]


def _ranked_candidates(beams: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Distinct codes over the beams, best beam first (what top-k accuracy ranks)."""
    seen: set[tuple[str, str]] = set()
    ranked = []
    for beam in beams:
        for code in beam["codes"]:
            key = (code["system"], code["code"])
            if key not in seen:
                seen.add(key)
                ranked.append({"system": key[0], "code": key[1]})
    return ranked
