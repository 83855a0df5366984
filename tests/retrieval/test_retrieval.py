"""The retriever: mention splitting, abbreviation expansion, fusion, trimming, config, and recall on a
small fixed set (the real FY2026 index)."""

import pytest
import yaml

from thce.retrieval import (
    ABBREVIATIONS,
    LAY_TERMS,
    Candidate,
    DenseScorer,
    RetrievalConfig,
    add_lay_terms,
    expand_abbreviations,
    get_retriever,
    prefer_accidental,
    prefer_stated_encounter,
    prefer_unspecified,
    reciprocal_rank_fusion,
    rescore,
    resolve_dense_model,
    split_mentions,
    state_absence,
    state_encounter,
    stated_encounter,
    trim_description,
)
from thce.utils.config import load_config
from thce.utils.errors import UserError


@pytest.mark.parametrize(
    ("text", "mentions"),
    [
        ("Essential hypertension", ["Essential hypertension"]),
        ("heart attack, front wall, 2 days ago", ["heart attack, front wall, 2 days ago"]),
        ("HTN; DM2; GERD", ["HTN", "DM2", "GERD"]),
        ("Assessment: 1. HTN 2. DM2 w/ CKD stage 3. 3. GERD", ["HTN", "DM2 w/ CKD stage 3", "GERD"]),
        ("CKD stage 3. Stable.", ["CKD stage 3", "Stable"]),
        ("A/P:\n- Hypertension: stable\n- T2DM; HLD\n", ["Hypertension: stable", "T2DM", "HLD"]),
        ("1) CHF exacerbation\n2) COPD", ["CHF exacerbation", "COPD"]),
        ("Seen by Dr. Lee for asthma. Also eczema.", ["Seen by Dr. Lee for asthma", "Also eczema"]),
        ("Dx: A-fib", ["A-fib"]),
        ("HTN. Htn.", ["HTN"]),
        ("Dx: MI; OA", ["MI", "OA"]),
        (
            "54 y/o M w/ hx of A-fib here for knee pain. Labs reviewed.",
            ["w/ hx of A-fib", "here for knee pain", "Labs reviewed"],
        ),
        (
            "67-year-old woman with a history of gout is seen today for cellulitis",
            ["67-year-old woman", "with a history of gout", "is seen today for cellulitis"],
        ),
        ("Hx of MI", ["Hx of MI"]),
        ("", []),
        ("  \n ; 12.", []),
    ],
)
def test_split_mentions(text, mentions):
    assert split_mentions(text) == mentions


@pytest.mark.parametrize(
    ("text", "expanded"),
    [
        ("HTN", "essential hypertension"),
        ("htn, DM2", "essential hypertension, type 2 diabetes mellitus"),
        ("Hx of MI s/p CABG", "history of myocardial infarction status post aortocoronary bypass graft"),
        ("T2DM w/o complications", "type 2 diabetes mellitus without complications"),
        ("n/v/d", "nausea vomiting diarrhea"),
        ("cough w/fever", "cough with fever"),
        ("L knee pain, r/o fx", "left knee pain, rule out fracture"),
        ("ALL in remission; PE", "acute lymphoblastic leukemia in remission; pulmonary embolism"),
        # Ordinary words are not abbreviations in lower case, nor inside longer words.
        ("all pe ms", "all pe ms"),
        ("MIs and HTNs", "MIs and HTNs"),
        ("L5 radiculopathy", "L5 radiculopathy"),
    ],
)
def test_expand_abbreviations(text, expanded):
    assert expand_abbreviations(text) == expanded


@pytest.mark.parametrize(
    ("text", "expanded"),
    [
        ("heart attack, first visit", "heart attack myocardial infarction, first visit"),  # encounter.py's
        ("Mini-stroke", "Mini-stroke transient ischemic attack"),  # the longer phrase wins over "stroke"
        ("prostate cancer", "prostate cancer malignant neoplasm"),
        ("heartburn", "heartburn gastro-esophageal reflux"),
        ("strokes of luck and cutlery", "strokes of luck and cutlery"),  # whole words only
    ],
)
def test_add_lay_terms(text, expanded):
    assert add_lay_terms(text) == expanded


def test_lay_and_abbreviation_tables_are_well_formed():
    assert all(key == key.lower() and value.strip() for key, value in LAY_TERMS.items())
    assert all(value.strip() for value in ABBREVIATIONS.values())


def test_reciprocal_rank_fusion_rewards_agreement_and_breaks_ties_by_score():
    fused = reciprocal_rank_fusion([[("a", 5.0), ("b", 4.0), ("c", 1.0)], [("d", 9.0), ("b", 2.0)]], c=60)
    # b is in both lists; a and d are each a list's best, and d's own score is higher.
    assert [item for item, _ in fused] == ["b", "d", "a", "c"]
    assert fused[0][1] == pytest.approx(1 / 62 + 1 / 62)


def test_trim_description_keeps_both_ends():
    text = "Displaced fracture of lateral condyle of right femur, initial encounter for closed fracture"
    assert trim_description(text, 0) == text
    assert trim_description(text, 200) == text
    trimmed = trim_description(text, 50)
    assert len(trimmed) <= 50
    assert trimmed.startswith("Displaced") and trimmed.endswith("fracture") and "..." in trimmed


def _stage_yaml(tmp_path, retrieval):
    path = tmp_path / "stage.yaml"
    path.write_text(yaml.safe_dump({"stage": 1, "retrieval": retrieval}))
    return path


def test_retrieval_section_parses_with_types_and_defaults(tmp_path):
    config = load_config(_stage_yaml(tmp_path, {"enabled": "true", "k": "20"}))
    assert config.retrieval == RetrievalConfig(enabled=True, k=20)
    assert load_config(_stage_yaml(tmp_path, {})).retrieval.enabled is False
    assert config.to_dict()["retrieval"]["k"] == 20  # what a checkpoint's thce_config.yaml stores
    overridden = load_config(_stage_yaml(tmp_path, {}), overrides=["retrieval.k=5"])
    assert overridden.retrieval.k == 5


@pytest.mark.parametrize(
    ("retrieval", "message"),
    [
        ({"top_k": 10}, "unknown key 'top_k' in section 'retrieval'"),
        ({"k": 0}, "retrieval.k must be at least 1"),
        ({"system": "CPT"}, "'retrieval.system' must be one of 'ICD10'"),
        ({"description_max_chars": -1}, "description_max_chars must be 0"),
        ({"rerank": "vote"}, "'retrieval.rerank' must be one of"),
        ({"fusion_weight": -1}, "retrieval.fusion_weight must be 0 or more"),
    ],
)
def test_retrieval_section_rejects_bad_values(tmp_path, retrieval, message):
    with pytest.raises(UserError, match=message):
        load_config(_stage_yaml(tmp_path, retrieval))


def test_eval_config_has_the_retrieval_section():
    from thce.evaluation.eval_config import load_eval_config

    assert load_eval_config(overrides=["retrieval.k=20"]).retrieval.k == 20


# A small fixed set: official wording, abbreviations, and multi-diagnosis notes (every code billable FY2026).
FIXED_SET = [
    ("Type 2 diabetes mellitus without complications", ["E11.9"]),
    ("Essential hypertension", ["I10"]),
    ("Gastro-esophageal reflux disease without esophagitis", ["K21.9"]),
    ("Acute cystitis without hematuria", ["N30.00"]),
    ("Chronic obstructive pulmonary disease with (acute) exacerbation", ["J44.1"]),
    ("Iron deficiency anemia, unspecified", ["D50.9"]),
    ("Major depressive disorder, single episode, unspecified", ["F32.9"]),
    ("Displaced fracture of shaft of right clavicle, initial encounter for closed fracture", ["S42.021A"]),
    ("HTN", ["I10"]),
    ("COPD w/ acute exacerbation", ["J44.1"]),
    ("GERD", ["K21.9"]),
    ("Hx of MI", ["I25.2"]),
    ("Assessment: 1. HTN 2. GERD 3. Hypothyroidism", ["I10", "K21.9", "E03.9"]),
    ("Pt seen for UTI. Also has iron deficiency anemia.", ["N39.0", "D50.9"]),
    ("DM2 w/ diabetic CKD; HLD", ["E11.22", "E78.5"]),
    ("Acute sinusitis, unspecified; allergic rhinitis", ["J01.90", "J30.9"]),
    ("heart attack", ["I21.9"]),
    ("high blood pressure", ["I10"]),
    ("sprained left wrist, first visit", ["S63.502A"]),
    ("62 y/o F w/ hx of gallstones here for kidney stone", ["K80.20", "N20.0"]),
]


def _gold_and_ranked(results):
    """(gold code, the retrieved codes of its note) for every gold code of FIXED_SET."""
    return [
        (code, [c.code for c in cands])
        for (_, codes), cands in zip(FIXED_SET, results, strict=True)
        for code in codes
    ]


def test_recall_on_a_fixed_set():
    retriever = get_retriever(RetrievalConfig(enabled=True, k=10))
    results = retriever.retrieve_batch([text for text, _ in FIXED_SET])
    assert all(isinstance(c, Candidate) and c.system == "ICD10" for cands in results for c in cands)
    assert all(len(cands) == 10 for cands in results)
    assert all(
        [c.score for c in cands] == sorted((c.score for c in cands), reverse=True) for cands in results
    )
    gold = _gold_and_ranked(results)
    recall_10 = sum(code in ranked for code, ranked in gold) / len(gold)
    recall_1 = sum(ranked[0] == code for code, ranked in gold if len(ranked)) / len(gold)
    # Floors under the measured figures (2026-11-29: recall@10 0.923, recall@1 0.538).
    assert recall_10 >= 0.85, (recall_10, [g for g in gold if g[0] not in g[1]])
    assert recall_1 >= 0.45
    # Expansion and splitting are what make the abbreviated, multi-diagnosis notes work.
    plain = get_retriever(
        RetrievalConfig(
            enabled=True, k=10, expand_abbreviations=False, expand_lay_terms=False, split_mentions=False
        )
    )
    plain_results = plain.retrieve_batch([text for text, _ in FIXED_SET])
    plain_gold = _gold_and_ranked(plain_results)
    assert sum(code in ranked for code, ranked in plain_gold) < sum(code in ranked for code, ranked in gold)


def test_get_retriever_is_cached_per_config_and_k_is_respected():
    a = get_retriever(RetrievalConfig(enabled=True))
    assert get_retriever(RetrievalConfig(enabled=True)) is a
    assert get_retriever(RetrievalConfig(enabled=True, k=3)) is not a
    assert len(a.retrieve("Essential hypertension", k=3)) == 3
    assert a.retrieve("", k=3) == []
    with pytest.raises(ValueError):
        a.retrieve("asthma", k=0)


@pytest.mark.parametrize(
    ("text", "encounter"),
    [
        ("Hit by object from burning building, subsequent encounter", "subsequent"),
        ("heat exhaustion, subsequent encounter for fracture with routine healing", "subsequent"),
        ("Fracture of left radius, initial encounter for closed fracture", "initial"),
        ("Burn of right hand, sequela", "sequela"),
        ("Essential hypertension", None),
        ("initial encounter; sequela", None),  # two stated: no preference
    ],
)
def test_stated_encounter(text, encounter):
    assert stated_encounter(text) == encounter


@pytest.mark.parametrize(
    ("text", "stated"),
    [
        ("Abrasion of left shoulder, follow-up visit.", "Abrasion of left shoulder, subsequent encounter."),
        (
            "burn of hand, Late effect; First visit for asthma",
            "burn of hand, sequela; initial encounter for asthma",
        ),
        ("visit for follow-up of anemia", "visit for follow-up of anemia"),  # not an encounter phrase
    ],
)
def test_state_encounter(text, stated):
    assert state_encounter(text) == stated


def test_prefer_stated_encounter_reorders_siblings_only_within_their_positions():
    descriptions = {
        "T67.4XXS": "Heat exhaustion due to salt depletion, sequela",
        "T67.4XXD": "Heat exhaustion due to salt depletion, subsequent encounter",
        "T67.4XXA": "Heat exhaustion due to salt depletion, initial encounter",
        "E87.1": "Hypo-osmolality and hyponatremia",
        "T67.3XXD": "Heat exhaustion, anhydrotic, subsequent encounter",
    }
    hits = [("T67.4XXS", 9.0), ("E87.1", 8.0), ("T67.4XXD", 7.0), ("T67.4XXA", 6.0), ("T67.3XXD", 5.0)]
    query = "heat exhaustion due to salt depletion, subsequent encounter"
    reordered = prefer_stated_encounter(query, hits, descriptions.__getitem__)
    # the group T67.4XX_ held positions 0, 2, 3: D takes the first of them; scores stay with positions
    assert reordered == [
        ("T67.4XXD", 9.0),
        ("E87.1", 8.0),
        ("T67.4XXS", 7.0),
        ("T67.4XXA", 6.0),
        ("T67.3XXD", 5.0),
    ]
    assert prefer_stated_encounter("heat exhaustion", hits, descriptions.__getitem__) == hits


def test_retriever_puts_the_stated_encounter_first():
    """BM25 alone ranks ', sequela' (the shortest sibling) above ', subsequent encounter' here."""
    text = "Heat exhaustion due to salt depletion, subsequent encounter."
    plain = get_retriever(RetrievalConfig(enabled=True, k=5, encounter_aware=False)).retrieve(text)
    assert plain[0].code == "T67.4XXS"
    aware = get_retriever(RetrievalConfig(enabled=True, k=5))
    assert aware.retrieve(text)[0].code == "T67.4XXD"
    assert {c.code for c in aware.retrieve(text)} == {c.code for c in plain}
    # a note's own words for it: "follow-up" no longer finds "Encounter for routine postpartum follow-up"
    assert aware.retrieve("Abrasion of unspecified shoulder, follow-up visit.")[0].code == "S40.219D"


@pytest.mark.parametrize(
    ("text", "stated"),
    [
        ("acute tracheitis, no obstruction", "acute tracheitis, without obstruction"),
        (
            "Hernia, negative for gangrene; No evidence of obstruction",
            "Hernia, without gangrene; without obstruction",
        ),
        ("free of abscess, denies fever", "without abscess, without fever"),
        ("nail not involved; not intractable", "nail not involved; not intractable"),  # "not" stays
        ("No. 2 lesion, no 3rd", "No. 2 lesion, no 3rd"),  # a cue must open a phrase of words
        ("nothing notable", "nothing notable"),  # whole words only
    ],
)
def test_state_absence(text, stated):
    assert state_absence(text) == stated


def test_retriever_reads_a_negation_as_the_list_writes_it():
    """BM25 drops "no" as a stopword and ranks the "with obstruction" sibling first."""
    aware = get_retriever(RetrievalConfig(enabled=True, k=5))
    plain = get_retriever(RetrievalConfig(enabled=True, k=5, negation_aware=False))
    assert plain.retrieve("acute tracheitis, no obstruction")[0].code == "J04.11"
    assert aware.retrieve("acute tracheitis, no obstruction")[0].code == "J04.10"
    assert plain.retrieve("Angiodysplasia of colon, free of hemorrhage")[0].code == "K55.21"
    assert aware.retrieve("Angiodysplasia of colon, free of hemorrhage")[0].code == "K55.20"


UNSPECIFIED_DESCRIPTIONS = {
    "F40.01": "Agoraphobia with panic disorder",
    "F40.00": "Agoraphobia, unspecified",
    "F40.02": "Agoraphobia without panic disorder",
    "F41.0": "Panic disorder [episodic paroxysmal anxiety]",
}


@pytest.mark.parametrize(
    ("query", "first"),
    [
        ("agoraphobia", "F40.00"),  # the top hit claims "panic disorder", which the note does not say
        ("agoraphobia with panic disorder", "F40.01"),  # stated: BM25's order stays
        ("Agoraphobia with panic disorder", "F40.01"),
    ],
)
def test_prefer_unspecified(query, first):
    hits = [("F40.01", 6.4), ("F41.0", 6.2), ("F40.00", 6.1), ("F40.02", 5.3)]
    reordered = prefer_unspecified(query, hits, UNSPECIFIED_DESCRIPTIONS.__getitem__)
    assert reordered[0][0] == first
    assert [score for _, score in reordered] == [score for _, score in hits]  # positions keep their scores
    assert sorted(code for code, _ in reordered) == sorted(code for code, _ in hits)  # only moved


def test_prefer_unspecified_needs_a_sibling_the_mention_fully_states():
    hits = [("F40.01", 6.4), ("F40.00", 6.1)]
    # the sibling's own words ("agoraphobia") are not the mention's: no move
    assert prefer_unspecified("panic attacks", hits, UNSPECIFIED_DESCRIPTIONS.__getitem__) == hits
    assert prefer_unspecified("anything", hits[:1], UNSPECIFIED_DESCRIPTIONS.__getitem__) == hits[:1]


SPRAIN_DESCRIPTIONS = {
    "S93.411A": "Sprain of calcaneofibular ligament of right ankle, initial encounter",
    "S93.431A": "Sprain of tibiofibular ligament of right ankle, initial encounter",
    "S93.401A": "Sprain of unspecified ligament of right ankle, initial encounter",
    "S93.601A": "Unspecified sprain of right foot, initial encounter",
}


def test_prefer_unspecified_lets_the_sibling_claim_less_than_the_top_hit():
    """ "ligament" is claimed by the unspecified sibling too, but the top hit claims more ("calcaneofibular")."""
    hits = [("S93.411A", 5.6), ("S93.431A", 5.6), ("S93.601A", 5.4), ("S93.401A", 5.3)]
    query = "sprained sprain right ankle, initial encounter"
    reordered = prefer_unspecified(query, hits, SPRAIN_DESCRIPTIONS.__getitem__)
    assert [code for code, _ in reordered] == ["S93.401A", "S93.411A", "S93.431A", "S93.601A"]
    # a sibling without the mention's words ("ankle") never moves up; a stated ligament keeps the order
    assert prefer_unspecified(query, hits[:3], SPRAIN_DESCRIPTIONS.__getitem__) == hits[:3]
    stated = "sprain of calcaneofibular ligament of right ankle, initial encounter"
    assert prefer_unspecified(stated, hits, SPRAIN_DESCRIPTIONS.__getitem__) == hits


INTENT_DESCRIPTIONS = {
    "T63.444A": "Toxic effect of venom of bees, undetermined, initial encounter",
    "T63.443A": "Toxic effect of venom of bees, assault, initial encounter",
    "T63.441A": "Toxic effect of venom of bees, accidental (unintentional), initial encounter",
    "T63.442A": "Toxic effect of venom of bees, intentional self-harm, initial encounter",
}


@pytest.mark.parametrize(
    ("query", "first"),
    [
        ("bee sting reaction, initial encounter", "T63.441A"),  # no intent stated: accidental (I.C.19.e.5.b)
        ("stung by bees, intent undetermined", "T63.444A"),  # stated: BM25's order stays
        ("bee venom, assaulted", "T63.444A"),
        ("bees, deliberate self-harm", "T63.444A"),
    ],
)
def test_prefer_accidental(query, first):
    hits = [("T63.444A", 11.1), ("T63.443A", 11.1), ("T63.442A", 10.6), ("T63.441A", 10.5)]
    reordered = prefer_accidental(query, hits, INTENT_DESCRIPTIONS.__getitem__)
    assert reordered[0][0] == first
    assert [score for _, score in reordered] == [score for _, score in hits]
    assert sorted(c for c, _ in reordered) == sorted(c for c, _ in hits)
    # the accidental sibling must be among the hits; an accidental top hit stays
    assert prefer_accidental(query, hits[:3], INTENT_DESCRIPTIONS.__getitem__) == hits[:3]
    accidental_first = [hits[3], *hits[:3]]
    assert prefer_accidental(query, accidental_first, INTENT_DESCRIPTIONS.__getitem__) == accidental_first


def test_retriever_codes_what_a_silence_implies():
    """The unspecified type of an anemia, the accidental intent of a sting: the official code set's own. (The
    unspecified ligament of a sprain ties with the named ones in BM25 and comes first by code order alone.)"""
    aware = get_retriever(RetrievalConfig(enabled=True, k=8))
    plain = get_retriever(RetrievalConfig(enabled=True, k=8, prefer_unspecified=False))
    for text, code in [
        ("anemia from low iron", "D50.9"),
        ("bee sting reaction, first visit", "T63.441A"),
    ]:
        assert plain.retrieve(text)[0].code != code
        assert aware.retrieve(text)[0].code == code
    assert aware.retrieve("sprained right ankle, first visit")[0].code == "S93.401A"
    assert aware.retrieve("Toxic effect of venom of bees, assault, initial encounter")[0].code == "T63.443A"


def test_retriever_prefers_the_unspecified_code_when_nothing_more_is_documented():
    aware = get_retriever(RetrievalConfig(enabled=True, k=5))
    plain = get_retriever(RetrievalConfig(enabled=True, k=5, prefer_unspecified=False))
    assert plain.retrieve("Dx: agoraphobia")[0].code == "F40.01"
    assert aware.retrieve("Dx: agoraphobia")[0].code == "F40.00"
    assert aware.retrieve("Shigellosis, unspecified")[0].code == "A03.9"
    assert aware.retrieve("Agoraphobia with panic disorder")[0].code == "F40.01"


# --- dense re-scoring (retrieval/dense.py) ---


def test_rescore_keeps_the_first_hit_unless_another_is_clearly_closer():
    ranked = [("A", 9.0), ("B", 8.0), ("C", 7.0)]
    # prior 0.4: A gets +0.4, B +0.2, C +0.133; B must be closer by more than 0.2 to pass A.
    assert [c for c, _ in rescore(ranked, [0.50, 0.65, 0.10], 0.4)] == ["A", "B", "C"]
    assert [c for c, _ in rescore(ranked, [0.50, 0.75, 0.10], 0.4)] == ["B", "A", "C"]
    assert rescore(ranked, [0.1, 0.2, 0.9], 0.0)[0] == ("C", 7.0)  # prior 0: similarity alone; scores kept
    assert rescore(ranked, [0.3, 0.3, 0.3], 0.0) == ranked  # equal similarities: BM25 order


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory):
    """A random 1-layer sentence-transformers model (mean pooling, normalised) with a word-level vocabulary."""
    from sentence_transformers import SentenceTransformer, models
    from transformers import BertConfig, BertModel, BertTokenizerFast

    directory = tmp_path_factory.mktemp("encoder")
    words = [
        "hypertension",
        "essential",
        "diabetes",
        "type",
        "mellitus",
        "anemia",
        "iron",
        "deficiency",
        "worried",
        "nervous",
        "pain",
    ]
    vocab = directory / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
    BertTokenizerFast(vocab_file=str(vocab)).save_pretrained(directory / "bert")
    config = BertConfig(
        vocab_size=5 + len(words), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=64,
    )  # fmt: skip
    BertModel(config).save_pretrained(directory / "bert")
    word = models.Transformer(str(directory / "bert"), max_seq_length=32)
    encoder = SentenceTransformer(
        modules=[word, models.Pooling(16, pooling_mode="mean"), models.Normalize()], device="cpu"
    )
    encoder.save(str(directory / "encoder"))
    return directory / "encoder"


def test_dense_scorer_embeds_each_code_once(tiny_encoder):
    described = []

    def description(code):
        described.append(code)
        return {"I10": "Essential hypertension", "E11.9": "Type 2 diabetes mellitus"}[code]

    scorer = DenseScorer(str(tiny_encoder), description)
    first = scorer.similarities(["hypertension", "diabetes"], [["I10", "E11.9"], ["E11.9"]])
    assert [len(row) for row in first] == [2, 1]
    assert all(-1.0001 <= value <= 1.0001 for row in first for value in row)
    again = scorer.similarities(["diabetes"], [["E11.9", "I10"]])
    assert described == ["I10", "E11.9"]  # cached: the second call embeds no description
    assert again[0][0] == pytest.approx(first[1][0], abs=1e-5)  # same query, same code, same similarity
    assert scorer.similarities([], []) == []


def test_dense_model_must_be_packaged_or_a_model_directory(tmp_path):
    with pytest.raises(UserError, match="neither all-MiniLM-L6-v2"):
        resolve_dense_model(str(tmp_path))
    assert (resolve_dense_model("all-MiniLM-L6-v2") / "modules.json").is_file()


def test_dense_rescoring_only_reorders_the_bm25_hits(tiny_encoder):
    """One mention: the dense retriever offers the same codes as BM25 (its per_mention hits), in its own order."""
    text = "Iron deficiency anemia, unspecified"
    plain = get_retriever(RetrievalConfig(enabled=True, k=20, per_mention=20))
    dense = get_retriever(RetrievalConfig(enabled=True, k=20, per_mention=20, dense_model=str(tiny_encoder)))
    assert dense.dense is not None and plain.dense is None
    assert {c.code for c in dense.retrieve(text)} == {c.code for c in plain.retrieve(text)}
    assert len(dense.retrieve_batch([text, "HTN; worried", ""])) == 3


@pytest.mark.slow
def test_dense_rescoring_finds_the_meaning_bm25_misses():
    """all-MiniLM-L6-v2 (the shipped weights): lay wording whose literal BM25 match is another condition."""
    text = "nervous about every little thing, can't stop worrying"
    plain = get_retriever(RetrievalConfig(enabled=True, k=8))
    dense = get_retriever(RetrievalConfig(enabled=True, k=8, dense_model="all-MiniLM-L6-v2"))
    assert plain.retrieve(text)[0].code != "R45.0"
    assert dense.retrieve(text)[0].code == "R45.0"  # Nervousness
    # Official wording keeps its exact match first.
    assert dense.retrieve("Iron deficiency anemia, unspecified")[0].code == "D50.9"
