"""The VoIPbin reference files as test data: JSON examples of the struct pages, OpenAPI schemas.

The reference folder is ``$DIALERD_VOIPBIN_REFERENCE``, else
``<repo>/../shared/reference/voipbin``. A clone without it still passes its tests: every
check that needs the reference is skipped, saying so (``require_reference``). CI
(``.ci/run``) requires it.

Schema patch: ``openapi.yaml`` declares ``tm_update``, ``tm_delete`` and a target's
``destination_N`` as plain objects/strings, while the struct pages (which win, see
behaviour.md §1) say they are ``null`` until set. ``component_schemas`` therefore
rewrites those properties (``NULLABLE_PROPERTIES``) to ``anyOf: [<original>, {type: null}]``;
nothing else is loosened, and ``format`` is not asserted (the timestamps differ in shape
on purpose).
"""

from __future__ import annotations

import copy
import functools
import json
import os
import re
import textwrap
from pathlib import Path
from typing import Any, Final

import pytest
import yaml
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

ENV_VAR: Final = "DIALERD_VOIPBIN_REFERENCE"
REFERENCE_DIR: Final = Path(
    os.environ.get(ENV_VAR)
    or Path(__file__).resolve().parents[2].parent / "shared" / "reference" / "voipbin"
)
DOCS_DIR: Final = REFERENCE_DIR / "docs"
OPENAPI_PATH: Final = REFERENCE_DIR / "openapi.yaml"
OPENAPI_URI: Final = "urn:voipbin:openapi"

_SLOT_FIELDS: Final = tuple(f"destination_{slot}" for slot in range(5))
# Properties the struct pages (and behaviour.md §1) allow to be null, per component.
NULLABLE_PROPERTIES: Final[dict[str, tuple[str, ...]]] = {
    "CampaignManagerCampaign": ("tm_update", "tm_delete"),
    "CampaignManagerCampaigncall": ("tm_update", "tm_delete"),
    "CampaignManagerOutplan": ("tm_update", "tm_delete"),
    "OutdialManagerOutdial": ("tm_update", "tm_delete"),
    "OutdialManagerOutdialtarget": ("tm_update", "tm_delete", *_SLOT_FIELDS),
}

_CODE_DIRECTIVE = re.compile(r"^\.\. code(?:-block)?::.*$")
# The field templates at the top of each page use placeholders such as "<string or null>".
_PLACEHOLDER = re.compile(r'"<[a-z ]+>"')


def _code_blocks(text: str) -> list[str]:
    """The bodies of every ``.. code::`` directive of an rst page, dedented."""
    lines = text.splitlines()
    blocks: list[str] = []
    index = 0
    while index < len(lines):
        if not _CODE_DIRECTIVE.match(lines[index].strip()):
            index += 1
            continue
        index += 1
        body: list[str] = []
        while index < len(lines) and (not lines[index].strip() or lines[index][:1].isspace()):
            body.append(lines[index])
            index += 1
        blocks.append(textwrap.dedent("\n".join(body)).strip())
    return blocks


def reference_available() -> bool:
    """Whether the reference folder (with openapi.yaml) is there."""
    return OPENAPI_PATH.is_file()


def require_reference() -> None:
    """Skip the calling test, with the reason, when the reference folder is absent."""
    if not reference_available():
        pytest.skip(
            f"VoIPbin reference not found at {REFERENCE_DIR}: set {ENV_VAR} to the folder "
            "holding openapi.yaml and docs/ to run the checks against it"
        )


def json_examples(page: str) -> list[dict[str, Any]]:
    """Every code block of ``docs/<page>`` that is a JSON object, field templates excluded."""
    require_reference()
    examples: list[dict[str, Any]] = []
    for block in _code_blocks((DOCS_DIR / page).read_text(encoding="utf-8")):
        if _PLACEHOLDER.search(block):
            continue
        try:
            value = json.loads(block)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            examples.append(value)
    return examples


@functools.cache
def component_schemas() -> dict[str, Any]:
    """``components.schemas`` of openapi.yaml, with the nullable patch applied."""
    require_reference()
    # A safe loader either way: libyaml's when PyYAML has it (the same document, read in a
    # sixth of the time), else the pure Python one yaml.safe_load uses.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    document = yaml.load(OPENAPI_PATH.read_text(encoding="utf-8"), Loader=loader)  # noqa: S506
    schemas: dict[str, Any] = copy.deepcopy(document["components"]["schemas"])
    for name, properties in NULLABLE_PROPERTIES.items():
        declared = schemas[name]["properties"]
        for prop in properties:
            declared[prop] = {"anyOf": [declared[prop], {"type": "null"}]}
    return schemas


@functools.cache
def _registry() -> Registry[Any]:
    contents = {"components": {"schemas": component_schemas()}}
    resource: Resource[Any] = Resource.from_contents(contents, default_specification=DRAFT202012)
    registry: Registry[Any] = Registry().with_resource(OPENAPI_URI, resource)
    return registry


@functools.cache
def component_validator(name: str) -> Any:
    """A validator for ``#/components/schemas/<name>``; ``$ref``s resolve within the file."""
    if name not in component_schemas():
        raise KeyError(f"openapi.yaml has no component schema {name!r}")
    schema = {"$ref": f"{OPENAPI_URI}#/components/schemas/{name}"}
    return Draft202012Validator(schema, registry=_registry())


def schema_errors(name: str, instance: Any) -> list[str]:
    """What is wrong with ``instance`` under component ``name``; empty when it is valid."""
    validator = component_validator(name)
    return [
        f"{'/'.join(map(str, error.absolute_path)) or '<root>'}: {error.message}"
        for error in validator.iter_errors(instance)
    ]
