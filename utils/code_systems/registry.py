"""Code systems by name. Each built-in system is imported only when first asked for.

To add a system (NDC, DRG): write one module with a `CodeSystem` subclass and add one line to `BUILTIN`
(or call `register_code_system` from outside).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from pathlib import Path

from thce.utils.code_systems.base import CodeSystem, echo
from thce.utils.errors import UserError

# canonical name -> (module:class, aliases). Aliases match ignoring case, spaces, dots, dashes, underscores.
BUILTIN: dict[str, tuple[str, tuple[str, ...]]] = {
    "ICD10": ("thce.utils.code_systems.icd10cm:ICD10CM", ("ICD10", "ICD-10-CM", "ICD10CM", "ICD", "ICD-10")),
    "CPT": (
        "thce.utils.code_systems.cpt:CPT",
        ("CPT", "CPT4", "CPT-4", "HCPCS Level I", "HCPCS1", "HCPCS-I"),
    ),
    "HCPCS": ("thce.utils.code_systems.hcpcs:HCPCS", ("HCPCS", "HCPCS2", "HCPCS-II", "HCPCS Level II")),
}
# The built-in systems' canonical names: the `system` of every code reference in THCE's records.
CODE_SYSTEMS: tuple[str, ...] = tuple(BUILTIN)
_ICD10_SHAPE = re.compile(r"^[A-Z]\d[0-9A-Z](?:[0-9A-Z]{1,4})?$")

_factories: dict[str, Callable[..., CodeSystem]] = {}
_aliases: dict[str, str] = {}
_instances: dict[tuple[str, str | None], CodeSystem] = {}
# The system name exactly as a caller spelled it -> its default instance: the hot path of validate_code.
_by_spelling: dict[str, CodeSystem] = {}


def _alias_key(name: str) -> str:
    return re.sub(r"[\s._-]", "", name).upper()


def register_code_system(
    name: str, factory: Callable[..., CodeSystem], aliases: tuple[str, ...] = ()
) -> None:
    """Make `factory(code_file=None)` available as `name` (and its aliases)."""
    _factories[name] = factory
    for alias in (name, *aliases):
        _aliases[_alias_key(alias)] = name


def _lazy_factory(target: str) -> Callable[..., CodeSystem]:
    def create(**options: object) -> CodeSystem:
        module_name, _, class_name = target.partition(":")
        return getattr(importlib.import_module(module_name), class_name)(**options)

    return create


for _name, (_target, _names) in BUILTIN.items():
    register_code_system(_name, _lazy_factory(_target), _names)


def available_systems() -> list[str]:
    """Canonical names of the registered systems."""
    return list(_factories)


def resolve_system_name(name: object) -> str:
    """Canonical name for any accepted spelling ("icd-10-cm" -> "ICD10"); `UserError` if unknown."""
    canonical = normalise_system(name)
    if canonical is None:
        raise UserError(
            f"unknown code system {echo(name)!r}: use one of {', '.join(available_systems())} "
            "(spellings such as ICD-10-CM, icd10cm, CPT4 and HCPCS2 are accepted too)"
        )
    return canonical


def normalise_system(name: object) -> str | None:
    """Canonical name for any accepted spelling ("ICD-10-CM", "HCPCS Level II"), or None when unknown."""
    return _aliases.get(_alias_key(name)) if isinstance(name, str) else None


def normalise_code_format(code: str, system: str) -> str:
    """Upper-case, strip punctuation around the code, and put the ICD-10-CM dot after the third character.

    A format normalisation only (what the output parser and the metrics compare); whether the code exists
    is the code system's question (`CodeSystem.normalise`, `validate`).
    """
    code = code.strip().strip(".,;:()[]{}'\"`").upper()
    if system == "ICD10":
        bare = code.replace(".", "")
        if _ICD10_SHAPE.match(bare):
            return bare if len(bare) == 3 else f"{bare[:3]}.{bare[3:]}"
    return code


def get_code_system(name: str, code_file: str | Path | None = None) -> CodeSystem:
    """The (process-wide, cached) code system called `name`.

    `code_file` points CPT/HCPCS at a code file; without it, THCE_CPT_FILE / THCE_HCPCS_FILE are read
    the first time the system is asked for. Call `clear_code_system_cache()` after changing them.
    """
    if code_file is None:
        try:
            return _by_spelling[name]
        except (KeyError, TypeError):
            pass
    canonical = resolve_system_name(name)
    if code_file is not None and canonical == "ICD10":
        raise UserError(
            "ICD-10-CM takes no code file: THCE validates it against the bundled FY2026 tabular list"
        )
    key = (canonical, str(Path(code_file).expanduser().resolve()) if code_file is not None else None)
    system = _instances.get(key)
    if system is None:
        system = (
            _factories[canonical](code_file=code_file) if code_file is not None else _factories[canonical]()
        )
        _instances[key] = system
    if code_file is None:
        _by_spelling[name] = system
    return system


def clear_code_system_cache() -> None:
    """Forget the created systems (tests; after changing THCE_CPT_FILE / THCE_HCPCS_FILE)."""
    _instances.clear()
    _by_spelling.clear()
