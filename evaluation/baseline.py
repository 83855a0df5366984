"""Baselines that a trained model must beat, scored by the same evaluator.

Every baseline maps texts to predictions of the predictor's shape (`codes` with `valid`, `confidence`,
and ranked `candidates` for top-k):
- `random`: a billable ICD-10-CM code drawn uniformly (seeded).
- `keyword`: the candidate retriever's top-1 (`thce.retrieval`: the note split into mentions, abbreviations
  and lay words expanded, each mention searched with the BM25 behind `thce codes search`, its hits re-scored
  by a sentence encoder where `retrieval.dense_model` is set, the lists fused); the next candidates rank the
  top-k. A candidate-aware model must beat the list it chooses from.
- `most_frequent`: the most frequent first code of the training data, for every input.
- `rule_based`: `RULES`, a small table of high-frequency conditions and their abbreviations, each a
  regular expression mapped to one billable code; every rule that matches contributes its code, in
  order of first mention in the text; no match, no code.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from thce.utils.config import RetrievalConfig
from thce.utils.errors import UserError
from thce.utils.io import check_input_file, iter_jsonl, read_parquet_table

Method = Literal["random", "keyword", "most_frequent", "rule_based"]
METHODS: tuple[str, ...] = ("random", "keyword", "most_frequent", "rule_based")

# (pattern, ICD-10-CM code). Specific conditions come before the general ones they contain
# ("type 1 diabetes" before "diabetes"); a text can match several rules.
RULES: tuple[tuple[str, str], ...] = (
    (r"\btype\s*(?:1|i|one)\s+diabet|\bt1dm?\b|\biddm\b", "E10.9"),
    (r"\btype\s*(?:2|ii|two)\s+diabet.{0,40}hyperglyc", "E11.65"),
    (r"\btype\s*(?:2|ii|two)\s+diabet.{0,40}(?:kidney|nephropath|ckd)", "E11.22"),
    (r"\bdiabet|\bt2dm?\b|\bdm2\b|\bniddm\b", "E11.9"),
    (r"\bprediabet", "R73.03"),
    (r"hypertensive heart disease.{0,30}heart failure", "I11.0"),
    (r"\bhypertension\b|\bhtn\b|high blood pressure", "I10"),
    (r"\bhyperlipid|\bhld\b|\bdyslipid", "E78.5"),
    (r"hypercholesterol", "E78.00"),
    (r"\bcopd\b|chronic obstructive", "J44.9"),
    (r"\basthma", "J45.909"),
    (r"\bchf\b|congestive heart failure|\bheart failure", "I50.9"),
    (r"\bafib\b|\ba-?fib\b|atrial fibrillation", "I48.91"),
    (r"\bcad\b|coronary artery disease", "I25.10"),
    (r"\bgerd\b|gastro-?esophageal reflux|\breflux\b", "K21.9"),
    (r"\bckd\b|chronic kidney disease", "N18.9"),
    (r"\baki\b|acute kidney injury|acute renal failure", "N17.9"),
    (r"\buti\b|urinary tract infection", "N39.0"),
    (r"\bpneumonia", "J18.9"),
    (r"\bcovid|sars-cov-2", "U07.1"),
    (r"\bupper respiratory infection|\buri\b", "J06.9"),
    (r"\bsinusitis", "J01.90"),
    (r"\bpharyngitis|sore throat", "J02.9"),
    (r"\bmdd\b|major depress|\bdepression\b", "F32.A"),
    (r"\banxiety|\bgad\b", "F41.9"),
    (r"\badhd\b|attention[- ]deficit", "F90.9"),
    (r"\bautism", "F84.0"),
    (r"\bdementia", "F03.90"),
    (r"\balzheimer", "G30.9"),
    (r"\bhypothyroid", "E03.9"),
    (r"\bobes", "E66.9"),
    (r"\bmigraine", "G43.909"),
    (r"\bheadache|\bcephalgia", "R51.9"),
    (r"\bosteoarthritis|degenerative joint disease|\bdjd\b", "M19.90"),
    (r"\bosteoporosis", "M81.0"),
    (r"low back pain|\blbp\b|lumbago", "M54.50"),
    (r"chest pain", "R07.9"),
    (r"abdominal pain", "R10.9"),
    (r"\banemi|\banaemi", "D64.9"),
    (r"\bsepsis|\bseptic", "A41.9"),
    (r"\bdehydrat", "E86.0"),
    (r"hyperkal", "E87.5"),
    (r"hypokal", "E87.6"),
    (r"hypoglyc", "E16.2"),
    (r"\bstroke\b|\bcva\b|cerebral infarct", "I63.9"),
    (r"\bdvt\b|deep vein thrombosis", "I82.409"),
    (r"pulmonary embol|\bpe\b", "I26.99"),
    (r"\bcellulitis", "L03.90"),
    (r"\binsomnia", "G47.00"),
    (r"vitamin d deficien", "E55.9"),
    (r"urinary incontinence", "R32"),
    (r"\bseizure disorder|\bepilep", "G40.909"),
    (r"\bseizure", "R56.9"),
    (r"\bfever\b|\bpyrexia", "R50.9"),
    (r"\bcough", "R05.9"),
    (r"nausea (?:and|with) vomiting|\bn/v\b", "R11.2"),
    (r"\bsyncope|\bfaint", "R55"),
    (r"\bdizz|\bvertigo", "R42"),
    (r"\bfatigue", "R53.83"),
    (r"\bconstipation", "K59.00"),
    (r"\bdiverticulosis", "K57.30"),
    (r"\bbph\b|benign prostatic hyperplasia|enlarged prostate", "N40.0"),
    (r"\bconjunctivitis|pink eye", "H10.9"),
    (r"\bdermatitis|\beczema", "L30.9"),
    (r"\bmyalgia", "M79.10"),
    (r"\bpcos\b|polycystic ovar", "E28.2"),
    (r"\bdysmenorrh", "N94.6"),
    (r"nicotine dependence|\bsmoker\b|cigarette", "F17.210"),
    (r"alcohol dependence|alcoholism|\baud\b", "F10.20"),
    (r"\bparkinson", "G20.A1"),
    (r"long[- ]term .{0,10}insulin", "Z79.4"),
    (r"\bvaccin|\bimmuniz", "Z23"),
    (r"annual physical|routine (?:general )?(?:medical )?exam|well (?:adult|visit)", "Z00.00"),
)
_COMPILED = tuple((re.compile(pattern, re.IGNORECASE), code) for pattern, code in RULES)


def _prediction(codes: Sequence[str], candidates: Sequence[str] | None = None, confidences=None) -> dict:
    from thce.utils.code_validator import check_code

    entries = []
    for i, code in enumerate(codes):
        check = check_code(code, "ICD10")
        entries.append(
            {"system": "ICD10", "code": check.code or code, "description": check.description,
             "valid": check.valid, "billable": check.billable,
             "confidence": confidences[i] if confidences else None}
        )  # fmt: skip
    ranked = candidates if candidates is not None else codes
    return {
        "code": entries[0]["code"] if entries else None,
        "confidence": entries[0]["confidence"] if entries else None,
        "codes": entries,
        "reasoning": None,
        "raw": "\n".join(f"ICD10: {code}" for code in codes),
        "candidates": [{"system": "ICD10", "code": code} for code in ranked],
    }


def random_baseline(texts: Sequence[str], seed: int = 42, top_k: int = 5) -> list[dict[str, Any]]:
    """A uniformly drawn billable ICD-10-CM code per text (plus `top_k - 1` more as candidates)."""
    from thce.utils.code_validator import billable_codes

    codes = billable_codes("ICD10")
    rng = random.Random(seed)
    results = []
    for _ in texts:
        drawn = rng.sample(codes, top_k)
        results.append(_prediction(drawn[:1], drawn, [1 / len(codes)]))
    return results


def keyword_baseline(
    texts: Sequence[str],
    top_k: int = 5,
    retrieval: RetrievalConfig | None = None,
    candidates: Sequence[Sequence[Any]] | None = None,
) -> list[dict[str, Any]]:
    """The retriever's best candidate per text; confidence = its share of the top-k fused scores.

    `candidates` (one best-first list of `Candidate` per text) reuses a retrieval already run (the
    evaluator's, which also reports recall@k); otherwise the retriever of `retrieval` (default settings
    when None) runs here."""
    if candidates is None:
        from thce.retrieval import get_retriever

        candidates = get_retriever(retrieval or RetrievalConfig()).retrieve_batch(
            list(texts), k=max(top_k, 1)
        )
    results = []
    for ranked in candidates:
        hits = list(ranked)[: max(top_k, 1)]
        if not hits:
            results.append(_prediction([]))
            continue
        total = sum(hit.score for hit in hits) or 1.0
        results.append(_prediction([hits[0].code], [hit.code for hit in hits], [hits[0].score / total]))
    return results


def most_frequent_baseline(
    texts: Sequence[str], training_codes: Sequence[str], top_k: int = 5
) -> list[dict[str, Any]]:
    """The training data's most frequent first code for every text; confidence = its frequency."""
    if not training_codes:
        raise UserError("the most_frequent baseline needs training codes: pass --train with a records file")
    ranked = Counter(training_codes).most_common(top_k)
    share = ranked[0][1] / len(training_codes)
    return [_prediction([ranked[0][0]], [code for code, _ in ranked], [share]) for _ in texts]


def rule_based_codes(text: str) -> list[str]:
    """Codes of every matching rule, ordered by where in the text each rule first matches. A general rule
    does not fire on text a more specific (earlier) rule already matched ("type 1 diabetes" is not also
    "diabetes")."""
    taken: list[tuple[int, int]] = []
    matches = []
    for pattern, code in _COMPILED:
        for found in pattern.finditer(text):
            if not any(found.start() < end and start < found.end() for start, end in taken):
                taken.append(found.span())
                matches.append((found.start(), code))
                break
    codes: list[str] = []
    for _, code in sorted(matches):
        if code not in codes:
            codes.append(code)
    return codes


def rule_based_baseline(texts: Sequence[str]) -> list[dict[str, Any]]:
    """`RULES` applied to every text."""
    return [_prediction(rule_based_codes(text)) for text in texts]


def run_baseline(
    method: str,
    texts: Sequence[str],
    *,
    training_codes: Sequence[str] | None = None,
    seed: int = 42,
    top_k: int = 5,
    retrieval: RetrievalConfig | None = None,
    candidates: Sequence[Sequence[Any]] | None = None,
) -> list[dict[str, Any]]:
    """Predictions of one baseline for `texts` (`retrieval`/`candidates`: see `keyword_baseline`)."""
    if method == "random":
        return random_baseline(texts, seed, top_k)
    if method == "keyword":
        return keyword_baseline(texts, top_k, retrieval, candidates)
    if method == "most_frequent":
        return most_frequent_baseline(texts, training_codes or [], top_k)
    if method == "rule_based":
        return rule_based_baseline(texts)
    raise UserError(f"unknown baseline method {method!r}; expected one of {', '.join(METHODS)}")


def load_training_codes(path: str | Path) -> list[str]:
    """First ICD-10-CM code of each training example, from a canonical records JSONL or a trainer-ready
    parquet (the assistant completion is parsed)."""
    from thce.inference.output_parser import parse_answer

    path = check_input_file(path, "training data (the most_frequent baseline counts its codes)")
    codes: list[str] = []
    if path.suffix == ".parquet":
        table = read_parquet_table(path, "training data")
        column = "completion" if "completion" in table.column_names else "chosen"
        if column not in table.column_names:
            raise UserError(f"{path} has neither a completion nor a chosen column to read codes from")
        for messages in table.column(column).to_pylist():
            parsed = parse_answer(messages[-1]["content"] if messages else "", validate=False)
            codes.extend(c["code"] for c in parsed["codes"][:1] if c["system"] == "ICD10")
    else:
        for number, record in iter_jsonl(path, "training data"):
            entries = record.get("codes") or []
            if not isinstance(entries, list):
                raise UserError(f"{path}:{number}: field 'codes' must be a list of {{system, code}} objects")
            first = next((c for c in entries if isinstance(c, dict) and c.get("system") == "ICD10"), None)
            if first and first.get("code"):
                codes.append(str(first["code"]))
    if not codes:
        raise UserError(f"{path} holds no ICD-10-CM codes to count")
    return codes
