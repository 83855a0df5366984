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
    available_systems,
    clear_code_system_cache,
    get_code_system,
    register_code_system,
    resolve_system_name,
)

__all__ = [
    "CodeCheck",
    "CodeDetails",
    "CodeNote",
    "CodeSystem",
    "HierarchyNode",
    "SearchHit",
    "available_systems",
    "clear_code_system_cache",
    "get_code_system",
    "register_code_system",
    "resolve_system_name",
]
