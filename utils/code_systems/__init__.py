"""One module per code system (ICD-10-CM, CPT, HCPCS Level II) behind one small interface and a registry.

Most callers want `thce.utils.code_validator`, which wraps this package.
"""

from thce.utils.code_systems.base import (
    CodeCheck,
    CodeDetails,
    CodeNote,
    CodeSystem,
    HierarchyNode,
    SearchHit,
)
from thce.utils.code_systems.registry import (
    CODE_SYSTEMS,
    available_systems,
    clear_code_system_cache,
    get_code_system,
    normalise_code_format,
    normalise_system,
    register_code_system,
    resolve_system_name,
)

__all__ = [
    "CODE_SYSTEMS",
    "CodeCheck",
    "CodeDetails",
    "CodeNote",
    "CodeSystem",
    "HierarchyNode",
    "SearchHit",
    "available_systems",
    "clear_code_system_cache",
    "get_code_system",
    "normalise_code_format",
    "normalise_system",
    "register_code_system",
    "resolve_system_name",
]
