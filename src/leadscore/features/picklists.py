"""CRM picklist values mapped onto the model's categories: `11-50` is a Small company, `c_level` an Executive.

A category map lists, per categorical field, the forms CRMs export (`201-500`, `north_america`, `LOGISTICS`) and
the vocabulary value each means. Every value is compared by its key (`picklist_key`: case-folded, `_`, `-` and
spaces alike; a company size also without a trailing `employees`), so a map lists each form once. The map
travels with the model bundle (the encoding a model was trained with is the encoding it must be served with) and
can be extended by configuration. Values still unknown are scored as missing, with a warning, as before.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import yaml

from leadscore.errors import ConfigError
from leadscore.features.spec import CATEGORY_FIELDS

_SEPARATORS: Final = re.compile(r"[\s_\-\u2010-\u2015]+")  # whitespace, underscores, hyphens and dashes
# Distinct raw values remembered per field. Known forms are few; unknown ones are as many as callers send,
# so past this many the lookups are still made but no longer remembered.
MAX_CACHED_VALUES: Final = 16_384
_VOCABULARIES: Final = {f.name: f.vocabulary for f in CATEGORY_FIELDS}
# A unit some exports write after a company's size band ("51-200 employees": LinkedIn's and Salesforce's wording):
# a key the map does not know is looked up again without it, so each band is listed once.
_UNITS: Final = {"company_size": re.compile(r" employees?$")}


def picklist_key(value: str) -> str:
    """The form values are compared in: case-folded, runs of spaces, `_` and `-` as one space, trimmed."""
    return _SEPARATORS.sub(" ", value).strip().casefold()


class CategoryMap:
    """Per categorical field: the vocabulary code of each value form (the vocabulary's own and the synonyms)."""

    def __init__(self, synonyms: Mapping[str, Mapping[str, str]] | None = None) -> None:
        given = {field: dict(forms) for field, forms in (synonyms or {}).items()}
        unknown_fields = sorted(set(given) - set(_VOCABULARIES))
        if unknown_fields:
            raise ConfigError(
                f"category map: {', '.join(unknown_fields)} are not categorical fields ({', '.join(_VOCABULARIES)})"
            )
        self.synonyms: dict[str, dict[str, str]] = given
        self._codes: dict[str, dict[str, int]] = {}
        for field, vocabulary in _VOCABULARIES.items():
            codes = {picklist_key(value): i for i, value in enumerate(vocabulary)}
            for form, meaning in given.get(field, {}).items():
                if meaning not in vocabulary:
                    raise ConfigError(
                        f"category map: {field} {form!r} maps to {meaning!r}, "
                        f"which is not one of {', '.join(vocabulary)}"
                    )
                codes.setdefault(picklist_key(form), vocabulary.index(meaning))
            self._codes[field] = codes
        self._cache: dict[str, dict[str, int | None]] = {field: {} for field in _VOCABULARIES}

    def code(self, field: str, value: str) -> int | None:
        """The vocabulary index `value` means for `field`, or None when it is unknown."""
        cache = self._cache[field]
        try:
            return cache[value]
        except KeyError:
            codes, key = self._codes[field], picklist_key(value)
            code = codes.get(key)
            unit = _UNITS.get(field)
            if code is None and unit is not None:
                code = codes.get(unit.sub("", key))
            if len(cache) < MAX_CACHED_VALUES:
                cache[value] = code
            return code

    def merged(self, extra: CategoryMap) -> CategoryMap:
        """This map with `extra`'s forms added; where both list a form, `extra` wins."""
        fields = set(self.synonyms) | set(extra.synonyms)
        combined: dict[str, dict[str, str]] = {}
        for field in fields:
            forms = {picklist_key(k): (k, v) for k, v in self.synonyms.get(field, {}).items()}
            forms.update({picklist_key(k): (k, v) for k, v in extra.synonyms.get(field, {}).items()})
            combined[field] = dict(forms.values())
        return CategoryMap(combined)

    def to_json(self) -> str:
        """The map as the JSON file a bundle keeps (fields and forms sorted, for a readable diff)."""
        data = {field: dict(sorted(forms.items())) for field, forms in sorted(self.synonyms.items())}
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def parse_category_map(data: Any, where: str) -> CategoryMap:  # noqa: ANN401 - parsed JSON or YAML
    """A map from parsed JSON/YAML: `{field: {form: vocabulary value}}`; ConfigError saying what is wrong."""
    if not isinstance(data, dict) or not all(
        isinstance(forms, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in forms.items())
        for forms in data.values()
    ):
        raise ConfigError(f"{where}: a category map is {{field: {{form: vocabulary value}}}}, all strings")
    try:
        return CategoryMap(data)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc.message}") from exc


def load_category_map(path: Path) -> CategoryMap:
    """Read a category map from a JSON file, or YAML when the name ends in .yaml or .yml."""
    try:
        text = path.read_text(encoding="utf-8")
        data = yaml.safe_load(text) if path.suffix.lower() in (".yaml", ".yml") else json.loads(text)
    except OSError as exc:
        raise ConfigError(f"cannot read category map {path}: {exc.strerror or exc}") from exc
    except (ValueError, yaml.YAMLError) as exc:
        raise ConfigError(
            f"category map {path} is not valid {path.suffix.lstrip('.').upper() or 'JSON'}: {exc}"
        ) from exc
    return parse_category_map(data, str(path.name))
