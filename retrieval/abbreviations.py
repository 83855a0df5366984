"""Clinical abbreviations expanded before search: "HTN" is in no ICD-10-CM description, "hypertension" is.

`ABBREVIATIONS` maps an abbreviation to the words the tabular list uses. Matching is on whole words and
ignores case, except for the entries in `UPPER_CASE_ONLY`, which are also ordinary English words or
ambiguous in lower case ("as", "ms", "pe", "all"): those expand only when written in capitals. Only the
search query is rewritten; the note a model reads is left as written.
"""

from __future__ import annotations

import re
from functools import cache

# Abbreviation -> expansion in the tabular list's words. A data table (alphabetical within each group).
ABBREVIATIONS: dict[str, str] = {
    # -- history, status, modifiers ------------------------------------------------------------------
    "hx": "history",
    "h/o": "history of",
    "fhx": "family history",
    "fh": "family history",
    "pmh": "past medical history",
    "s/p": "status post",
    "r/o": "rule out",
    "w/": "with",
    "w/o": "without",
    "b/l": "bilateral",
    "bilat": "bilateral",
    "rt": "right",
    "lt": "left",
    "R": "right",
    "L": "left",
    "LLE": "left lower limb",
    "RLE": "right lower limb",
    "LUE": "left upper limb",
    "RUE": "right upper limb",
    "LLQ": "left lower quadrant",
    "RLQ": "right lower quadrant",
    "LUQ": "left upper quadrant",
    "RUQ": "right upper quadrant",
    "exac": "exacerbation",
    "exacerb": "exacerbation",
    "sx": "symptoms",
    "fx": "fracture",
    "fxs": "fractures",
    "inj": "injury",
    "lac": "laceration",
    "abd": "abdominal",
    "init": "initial encounter",
    "subsq": "subsequent encounter",
    # -- cardiovascular ----------------------------------------------------------------------------------
    "htn": "essential hypertension",  # hypertension NOS is coded as essential (I10)
    "hld": "hyperlipidemia",
    "chf": "congestive heart failure",
    "hfref": "systolic heart failure",
    "hfpef": "diastolic heart failure",
    "cad": "coronary artery disease atherosclerotic heart disease",
    "mi": "myocardial infarction",
    "stemi": "ST elevation myocardial infarction",
    "nstemi": "non-ST elevation myocardial infarction",
    "afib": "atrial fibrillation",
    "a-fib": "atrial fibrillation",
    "a fib": "atrial fibrillation",
    "aflutter": "atrial flutter",
    "svt": "supraventricular tachycardia",
    "vtach": "ventricular tachycardia",
    "dvt": "deep vein thrombosis",
    "PE": "pulmonary embolism",
    "pvd": "peripheral vascular disease",
    "pad": "peripheral arterial disease",
    "aaa": "abdominal aortic aneurysm",
    "cabg": "aortocoronary bypass graft",
    "cva": "cerebral infarction stroke",
    "tia": "transient ischemic attack",
    "ich": "intracerebral hemorrhage",
    "sah": "subarachnoid hemorrhage",
    "lvh": "left ventricular hypertrophy",
    "ihd": "ischemic heart disease",
    "acs": "acute coronary syndrome",
    # -- endocrine, metabolic ------------------------------------------------------------------------
    "dm": "diabetes mellitus",
    "dm1": "type 1 diabetes mellitus",
    "dm2": "type 2 diabetes mellitus",
    "t1dm": "type 1 diabetes mellitus",
    "t2dm": "type 2 diabetes mellitus",
    "iddm": "type 1 diabetes mellitus",
    "niddm": "type 2 diabetes mellitus",
    "dka": "diabetic ketoacidosis",
    "hhs": "hyperosmolarity",
    "pcos": "polycystic ovarian syndrome",
    "hypothyroid": "hypothyroidism",
    "hyperthyroid": "hyperthyroidism",
    "vit": "vitamin",
    "bmi": "body mass index",
    # -- respiratory --------------------------------------------------------------------------------------
    "copd": "chronic obstructive pulmonary disease",
    "osa": "obstructive sleep apnea",
    "uri": "upper respiratory infection",
    "cap": "pneumonia",
    "ards": "acute respiratory distress syndrome",
    "sob": "shortness of breath",
    "doe": "dyspnea on exertion",
    "tb": "tuberculosis",
    "rsv": "respiratory syncytial virus",
    "covid": "COVID-19",
    "covid19": "COVID-19",
    # -- renal, urinary --------------------------------------------------------------------------------
    "ckd": "chronic kidney disease",
    "esrd": "end stage renal disease",
    "aki": "acute kidney injury",
    "arf": "acute kidney failure",
    "uti": "urinary tract infection",
    "bph": "benign prostatic hyperplasia",
    # -- digestive ---------------------------------------------------------------------------------------
    "gerd": "gastro-esophageal reflux disease",
    "gi": "gastrointestinal",
    "gib": "gastrointestinal hemorrhage",
    "ugib": "upper gastrointestinal hemorrhage",
    "lgib": "lower gastrointestinal hemorrhage",
    "ibs": "irritable bowel syndrome",
    "ibd": "inflammatory bowel disease",
    "uc": "ulcerative colitis",
    "pud": "peptic ulcer",
    "nafld": "nonalcoholic fatty liver disease",
    "masld": "nonalcoholic fatty liver disease",
    "n/v": "nausea with vomiting",
    "n/v/d": "nausea vomiting diarrhea",
    "sbo": "small intestine obstruction",
    # -- neurological, mental -------------------------------------------------------------------------
    "ms": "multiple sclerosis",
    "als": "amyotrophic lateral sclerosis",
    "mdd": "major depressive disorder",
    "gad": "generalized anxiety disorder",
    "ptsd": "post-traumatic stress disorder",
    "ocd": "obsessive-compulsive disorder",
    "adhd": "attention-deficit hyperactivity disorder",
    "add": "attention-deficit disorder",
    "aud": "alcohol dependence",
    "etoh": "alcohol",
    "oud": "opioid dependence",
    "sz": "seizure",
    "ha": "headache",
    "tbi": "traumatic brain injury",
    "loc": "loss of consciousness",
    "ams": "altered mental status",
    # -- musculoskeletal, skin -----------------------------------------------------------------------
    "oa": "osteoarthritis",
    "RA": "rheumatoid arthritis",
    "djd": "osteoarthritis degenerative joint disease",
    "lbp": "low back pain",
    "ddd": "degenerative disc disease",
    "sle": "systemic lupus erythematosus",
    "acl": "anterior cruciate ligament",
    "mcl": "medial collateral ligament",
    "tkr": "knee joint replacement",
    "thr": "hip joint replacement",
    "orif": "open reduction internal fixation",
    # -- infections, blood, neoplasms, other ----------------------------------------------------------
    "hiv": "human immunodeficiency virus HIV disease",
    "hcv": "hepatitis C",
    "hbv": "hepatitis B",
    "mrsa": "methicillin resistant Staphylococcus aureus",
    "mssa": "methicillin susceptible Staphylococcus aureus",
    "std": "sexually transmitted disease",
    "sti": "sexually transmitted infection",
    "ida": "iron deficiency anemia",
    "ca": "cancer malignant neoplasm",
    "CLL": "chronic lymphocytic leukemia",
    "ALL": "acute lymphoblastic leukemia",
    "AML": "acute myeloblastic leukemia",
    "CML": "chronic myeloid leukemia",
    "nhl": "non-Hodgkin lymphoma",
    "bcc": "basal cell carcinoma",
    "scc": "squamous cell carcinoma",
    "mets": "metastatic secondary malignant neoplasm",
    "om": "otitis media",
    "aom": "acute otitis media",
    "ivdu": "intravenous drug use",
    "mvc": "motor vehicle collision",
    "mva": "motor vehicle accident",
    "gsw": "gunshot wound",
    "iup": "intrauterine pregnancy",
}

# Expanded only when written in capitals: in lower case they are common words or mean something else.
UPPER_CASE_ONLY: frozenset[str] = frozenset(
    {
        "R",
        "L",
        "PE",
        "RA",
        "ALL",
        "AML",
        "CML",
        "CLL",
        "MS",
        "ED",
        "ADD",
        "CAP",
        "PAD",
        "HA",
        "CA",
        "OM",
        "LOC",
    }
)


@cache
def _pattern() -> tuple[re.Pattern[str], dict[str, str]]:
    """One alternation over every entry, longest first, so "n/v/d" wins over "n/v" and "w/o" over "w/"."""
    lookup: dict[str, str] = {}
    alternatives: list[tuple[str, str]] = []
    for abbreviation, expansion in ABBREVIATIONS.items():
        upper_only = abbreviation.upper() in UPPER_CASE_ONLY
        key = abbreviation.upper() if upper_only else abbreviation.lower()
        lookup[key] = expansion
        regex = re.escape(key)
        if not key.endswith("/"):  # "w/fever" is "with fever"; elsewhere the match must end a word
            regex += r"(?![\w/-])"
        alternatives.append((key, f"(?-i:{regex})" if upper_only else regex))
    alternatives.sort(key=lambda pair: -len(pair[0]))
    body = "|".join(regex for _, regex in alternatives)
    # Whole words: not inside a longer word or a slash/hyphen compound ("MI" in "MIs", "R" in "T/R").
    return re.compile(rf"(?<![\w/-])(?:{body})", re.IGNORECASE), lookup


def expand_abbreviations(text: str) -> str:
    """`text` with every abbreviation in `ABBREVIATIONS` replaced by its expansion ("HTN" -> "hypertension")."""
    pattern, lookup = _pattern()

    def replace(match: re.Match[str]) -> str:
        found = match.group(0)
        expansion = lookup.get(found.lower()) or lookup.get(found.upper()) or found
        return expansion + " " if found.endswith("/") else expansion

    return pattern.sub(replace, text)
