"""One way to read a configuration file: typed structures in, every error with its path out.

A file's schema is a tree of frozen dataclasses (msgspec reads them as it reads Structs, and the
public PollConfig, Filters and TLSSettings serve as sections directly): field names are the keys,
defaults the defaults, annotations the types, with msgspec constraints (``Meta(ge=1, le=1000)``)
or :class:`Parse` for a value the project reads itself (a duration, a URL; its message is used as
is). :func:`decode` converts each value on its own with :func:`msgspec.convert`, so one bad value
does not hide the next: every problem is reported with its path in the project's words
(``poll.page_size: must be an integer from 1 to 1000, got 5000``), an unknown key names the
nearest valid one, a value marked :data:`SECRET` is never echoed. A bad value leaves its default
in place, so config.py and webconfig.py go on to the rules that relate keys (``give api_token or
api_token_file, not both``) and raise every error at once.

The state file is typed the same way, by msgspec Structs with ``forbid_unknown_fields`` and
``Meta`` constraints (statefile.py), but decoded in one pass: the exporter writes it, so nobody
fixes it by hand and its first problem is enough to set it aside.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

S = TypeVar("S", bound="DataclassInstance")


@dataclasses.dataclass(frozen=True)
class Parse:
    """Annotation: ``read`` checks and converts the raw value, raising ValueError with the reason."""

    read: Callable[[Any], Any]


SECRET = "secret"  # annotation: the value never appears in an error message


class _Reported:
    """Stands for a value whose problem is already reported (an unset ``${VAR}``); it is skipped."""


REPORTED = _Reported()


def given(raw: object) -> set[str]:
    """The keys of ``raw`` that have a value (not null)."""
    return {str(k) for k, v in raw.items() if v is not None} if isinstance(raw, Mapping) else set()


def decode(raw: object, schema: type[S], path: str, errors: list[str]) -> S:
    """``raw`` (a mapping or None) as ``schema``; every problem is appended to ``errors``."""
    if raw is not None and not isinstance(raw, Mapping):
        errors.append(f"{path or 'config'}: must be a mapping")
    data: Mapping[Any, Any] = raw if isinstance(raw, Mapping) else {}
    names = [f.name for f in dataclasses.fields(schema)]
    for key in data:
        if key not in names:
            near = difflib.get_close_matches(str(key), names, n=1, cutoff=0.75)
            errors.append(f"{_at(path, key)}: unknown key" + (f" (did you mean {near[0]}?)" if near else ""))
    types = typing.get_type_hints(schema, include_extras=True)
    values = {}
    for name in names:
        value = data.get(name)
        if value is not None and value is not REPORTED:
            try:
                values[name] = _convert(value, types[name], _at(path, name), errors)
            except ValueError as exc:
                errors.append(f"{_at(path, name)}: {exc}")
    return schema(**values)


def _at(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


def _convert(value: object, kind: Any, path: str, errors: list[str]) -> Any:
    if isinstance(kind, type) and dataclasses.is_dataclass(kind):
        return decode(value, kind, path, errors)
    marks = getattr(kind, "__metadata__", ())
    for mark in marks:
        if isinstance(mark, Parse):
            return mark.read(value)
    try:
        return msgspec.convert(value, kind)
    except msgspec.ValidationError:
        shown = SECRET not in marks and not isinstance(value, list | dict)
        expected = _expected(msgspec.inspect.type_info(kind))
        raise ValueError(f"must be {expected}" + (f", got {value!r}" if shown else "")) from None


def _expected(kind: msgspec.inspect.Type) -> str:
    """What a value of ``kind`` looks like, in words."""
    if isinstance(kind, msgspec.inspect.UnionType):
        [kind] = [k for k in kind.types if not isinstance(k, msgspec.inspect.NoneType)]
    if isinstance(kind, msgspec.inspect.Metadata):
        return str((kind.extra_json_schema or {}).get("description") or _expected(kind.type))
    if isinstance(kind, msgspec.inspect.IntType) and kind.ge is not None and kind.le is not None:
        return f"an integer from {kind.ge} to {kind.le}"
    if isinstance(kind, msgspec.inspect.ListType | msgspec.inspect.VarTupleType):
        return "a list of strings" if isinstance(kind.item_type, msgspec.inspect.StrType) else "a list"
    return _WORDS[type(kind)]


_WORDS = {
    msgspec.inspect.BoolType: "true or false",
    msgspec.inspect.IntType: "an integer",
    msgspec.inspect.FloatType: "a number",
    msgspec.inspect.StrType: "a string",
    msgspec.inspect.DictType: "a mapping",
}
