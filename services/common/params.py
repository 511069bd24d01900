"""What every job's params share, so the API, the CLI and the workers accept exactly the same values."""

from __future__ import annotations

import re
import types
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

# Below 2**53, a seed is exact as a JSON number in every client (JavaScript's included) and in the OpenAPI
# schema's bound; torch's generators take it as it is.
Seed = Annotated[int, Field(ge=0, lt=2**53, description="A random seed in [0, 2**53).")]
Channel = Annotated[int, Field(ge=0, le=255)]
ID_PATTERN = r"^[A-Za-z0-9_-]+$"
DatasetId = Annotated[str, Field(min_length=1, max_length=100, pattern=ID_PATTERN, description="A dataset's id.")]


class _Yaml12Loader(yaml.SafeLoader):
    """PyYAML's safe loader, but `1e-4` is a float (YAML 1.2) rather than the string YAML 1.1 makes of it."""


_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def load_yaml(text: str) -> Any:
    """A params or config file's values; numbers as people write them (`learning_rate: 1e-4`) are numbers."""
    return yaml.load(text, Loader=_Yaml12Loader)


def accepted_kinds(annotation: Any) -> set[str]:
    """What JSON-ish values a field's type takes: "number", "bool", "str" and "other" (lists, models, ...)."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return accepted_kinds(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        return set().union(*(accepted_kinds(arg) for arg in get_args(annotation)))
    if origin is Literal:
        return {"bool" if isinstance(value, bool) else "str" if isinstance(value, str) else "number"
                for value in get_args(annotation)}  # fmt: skip
    if annotation is bool:
        return {"bool"}
    if annotation in (int, float):
        return {"number"}
    if annotation is str:
        return {"str"}
    return {"other"}


def refuse_coerced_number(annotation: Any, value: Any) -> None:
    """Raise ValueError for a boolean or a string where only a number is due, in the value or its items.

    Pydantic's lax mode turns `true` into 1 and `"2"` into 2; the OpenAPI schema says number, so a client
    sending either has a bug that should be named, not a job run with a value it did not mean.
    """
    if isinstance(value, (bool, str)):
        kinds = accepted_kinds(annotation)
        given = "bool" if isinstance(value, bool) else "str"
        if "number" in kinds and given not in kinds and "other" not in kinds:
            raise ValueError(f"expected a number, not {'a boolean' if given == 'bool' else 'a string'}")
    elif isinstance(value, (list, tuple)):
        for item, item_annotation in zip(value, item_annotations(annotation, len(value)), strict=True):
            refuse_coerced_number(item_annotation, item)


def item_annotations(annotation: Any, length: int) -> list[Any]:
    """The annotation of each item of a list or tuple value of `length` (Any where the type says nothing)."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return item_annotations(get_args(annotation)[0], length)
    if origin in (Union, types.UnionType):
        sequences = [arg for arg in get_args(annotation) if get_origin(arg) in (list, tuple, set, frozenset)]
        return item_annotations(sequences[0], length) if len(sequences) == 1 else [Any] * length
    arguments = get_args(annotation)
    if origin in (list, set, frozenset) and arguments:
        return [arguments[0]] * length
    if origin is tuple and arguments:
        if len(arguments) == 2 and arguments[1] is Ellipsis:
            return [arguments[0]] * length
        if len(arguments) == length:
            return list(arguments)
    return [Any] * length


class JobParams(BaseModel):
    """Base of every job type's params (and the inference service's request bodies).

    NaN and infinities are refused wherever the params come from (a YAML `.nan`, a Python caller), not only
    in JSON bodies, and so are booleans and strings where a number is due.
    """

    model_config = ConfigDict(allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _numbers_are_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        if info.field_name is not None:
            refuse_coerced_number(cls.model_fields[info.field_name].annotation, value)
        return value
