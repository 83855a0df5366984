"""Optional LLM backend (the seed's GPT-4 / Claude integration), behind the same `generate_records`."""

from __future__ import annotations

import random
import re
from collections.abc import Iterator, Mapping
from typing import Any

from loguru import logger

from thce.data.synthetic_generation.code_set import code_info, scope_codes
from thce.data.synthetic_generation.options import parse_options
from thce.utils.errors import UserError

LLM_OPTIONS = {
    "provider",
    "model",
    "base_url",
    "api_key_env",
    "price_per_1k_input",
    "price_per_1k_output",
    "max_cost_usd",
    "max_retries",
    "timeout_s",
    "temperature",
    "reasoning",
    "scope",
    "chapters",
    "codes",
    "top_n",
}
LLM_PROMPT = (
    "Write one realistic, de-identified clinical note excerpt (2-5 sentences, no names, dates or other PHI) "
    "that documents the condition below precisely enough to assign exactly this ICD-10-CM code.\n"
    "Code: {code}\nDescription: {description}\nHierarchy: {hierarchy}\n"
    'Answer with JSON only: {{"text": "...", "codes": ["{code}"]{reasoning_field}}}'
)


class LlmGenerator:
    """Synthetic notes from an LLM: OpenAI-compatible chat completions (`openai` client, configurable base
    URL so a local server works) or Anthropic's messages API (plain HTTP).

    Every response is parsed and validated (each code checked against the code set; a record whose codes
    are not exactly the requested one is discarded), tokens are priced as they arrive, failed calls are
    retried with exponential backoff, and generation stops when the budget (`max_cost_usd`) is spent.
    """

    def __init__(self, options: Mapping[str, Any], seed: int = 42) -> None:
        where = "synthetic source 'llm'"
        unknown = sorted(set(options) - LLM_OPTIONS)
        if unknown:
            raise UserError(
                f"{where}: unknown option(s) {', '.join(map(repr, unknown))}; known: {', '.join(sorted(LLM_OPTIONS))}"
            )
        self.provider = options.get("provider", "openai")
        if self.provider not in ("openai", "anthropic"):
            raise UserError(
                f"{where}: option 'provider' must be 'openai' or 'anthropic', got {self.provider!r}"
            )
        if "model" not in options:
            raise UserError(f"{where}: option 'model' is required (e.g. gpt-4o-mini, claude-sonnet-4-5)")
        self.model = str(options["model"])
        default_url = (
            "https://api.openai.com/v1" if self.provider == "openai" else "https://api.anthropic.com"
        )
        self.base_url = str(options.get("base_url", default_url)).rstrip("/")
        key_env = options.get(
            "api_key_env", "OPENAI_API_KEY" if self.provider == "openai" else "ANTHROPIC_API_KEY"
        )
        import os

        self.api_key = os.environ.get(key_env)
        if not self.api_key:
            raise UserError(
                f"{where}: no API key; set the environment variable {key_env} (or option 'api_key_env')"
            )
        self.price_in = float(options.get("price_per_1k_input", 0.0))
        self.price_out = float(options.get("price_per_1k_output", 0.0))
        self.max_cost = float(options.get("max_cost_usd", 10.0))
        self.max_retries = int(options.get("max_retries", 4))
        self.timeout = float(options.get("timeout_s", 60.0))
        self.temperature = float(options.get("temperature", 0.7))
        self.with_reasoning = bool(options.get("reasoning", False))
        scope_keys = {k: options[k] for k in ("scope", "chapters", "codes", "top_n") if k in options}
        self.codes = scope_codes(parse_options(scope_keys, where), where)
        self.seed = seed
        self.cost_usd = 0.0
        self.input_tokens = self.output_tokens = 0
        self.rejected_responses = 0

    def records(self, count: int) -> Iterator[dict[str, Any]]:
        """Yield up to `count` validated canonical records; fewer if the budget runs out."""
        rng = random.Random(f"llm:{self.seed}")
        order = list(self.codes)
        rng.shuffle(order)
        produced = 0
        for attempt in range(count * 3):
            if produced >= count:
                break
            if self.cost_usd >= self.max_cost:
                logger.warning(f"LLM budget of ${self.max_cost:.2f} spent after {produced} records; stopping")
                break
            code = order[attempt % len(order)]
            info = code_info(code)
            hierarchy = " > ".join([info.chapter[1], info.block[0], *(node[0] for node in info.path), code])
            prompt = LLM_PROMPT.format(
                code=code,
                description=info.description,
                hierarchy=hierarchy,
                reasoning_field=', "reasoning": "why this code, walking the hierarchy"'
                if self.with_reasoning
                else "",
            )
            parsed = self.validate_response(self.complete(prompt), code)
            if parsed is None:
                self.rejected_responses += 1
                continue
            yield {
                "id": f"llm-{self.seed}-{produced:07d}",
                "text": parsed["text"],
                "codes": [{"system": "ICD10", "code": code}],
                "reasoning": parsed.get("reasoning") if self.with_reasoning else None,
                "source": f"synthetic:llm:{self.model}",
                "meta": {
                    "generator": "llm",
                    "provider": self.provider,
                    "model": self.model,
                    "phi_free": False,
                },
            }
            produced += 1
        logger.info(
            f"LLM generation: {produced} records, {self.rejected_responses} responses rejected, "
            f"{self.input_tokens}+{self.output_tokens} tokens, ${self.cost_usd:.4f}"
        )

    def validate_response(self, content: str, code: str) -> dict[str, Any] | None:
        """Parse the model's JSON answer; None unless it has a text and exactly the requested, valid code."""
        import json

        from thce.utils.code_validator import normalise_code, validate_code

        match = re.search(r"\{.*\}", content, re.DOTALL)
        if not match:
            return None
        try:
            data = json.loads(match.group(0))
        except json.JSONDecodeError:
            return None
        text = data.get("text") if isinstance(data, dict) else None
        codes = data.get("codes") if isinstance(data, dict) else None
        if not isinstance(text, str) or len(text.strip()) < 10 or not isinstance(codes, list) or not codes:
            return None
        if not all(isinstance(c, str) and validate_code(c, "ICD10", require_billable=True) for c in codes):
            return None
        if [normalise_code(c, "ICD10") for c in codes] != [code]:
            return None
        if self.with_reasoning and not isinstance(data.get("reasoning"), str):
            return None
        return {"text": text.strip(), "reasoning": data.get("reasoning")}

    def complete(self, prompt: str) -> str:
        """One completion with retries and exponential backoff; adds its tokens to the cost."""
        import time

        last_error: Exception | None = None
        for attempt in range(self.max_retries + 1):
            try:
                content, tokens_in, tokens_out = self._call(prompt)
            except Exception as err:  # network and API errors alike: retry, then give up clearly
                last_error = err
                if attempt < self.max_retries:
                    time.sleep(min(0.2 * 2**attempt, 10.0))
                continue
            self.input_tokens += tokens_in
            self.output_tokens += tokens_out
            self.cost_usd += tokens_in / 1000 * self.price_in + tokens_out / 1000 * self.price_out
            return content
        raise UserError(
            f"LLM {self.provider} at {self.base_url}: {self.max_retries + 1} attempts failed: {last_error}"
        )

    def _call(self, prompt: str) -> tuple[str, int, int]:
        if self.provider == "openai":
            from openai import OpenAI

            client = OpenAI(base_url=self.base_url, api_key=self.api_key, max_retries=0, timeout=self.timeout)
            response = client.chat.completions.create(
                model=self.model,
                messages=[{"role": "user", "content": prompt}],
                temperature=self.temperature,
            )
            usage = response.usage
            return (
                response.choices[0].message.content or "",
                usage.prompt_tokens if usage else 0,
                usage.completion_tokens if usage else 0,
            )
        import httpx

        response = httpx.post(
            f"{self.base_url}/v1/messages",
            headers={
                "x-api-key": self.api_key,
                "anthropic-version": "2023-06-01",
                "content-type": "application/json",
            },
            json={
                "model": self.model,
                "max_tokens": 1024,
                "temperature": self.temperature,
                "messages": [{"role": "user", "content": prompt}],
            },
            timeout=self.timeout,
        )
        response.raise_for_status()
        body = response.json()
        text = "".join(
            block.get("text", "") for block in body.get("content", []) if block.get("type") == "text"
        )
        usage = body.get("usage", {})
        return text, int(usage.get("input_tokens", 0)), int(usage.get("output_tokens", 0))
