"""Options declared once: a configuration field carries its command-line help, choices, parsing and
checks, and the argparse arguments and the validation are generated from it.

An option group is a dataclass made with `option_group(title)`, each field declared with `option`;
a configuration composes groups by inheritance, each group living with the code it configures.
`add_options` gives every field a `--snake-case` flag under its group's heading with argparse
default None, so that `given_options` returns only what was given (recipes and `--resume` depend
on telling "not given" from "given the default"). `check_options` refuses a bad value in one line
`--name value: what is wrong`, then runs each group's `check_combination` for values that cannot
work together.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any

from .errors import UsageError

Check = Callable[[Any], "str | None"]
_SCALARS = {"int": int, "float": float, "str": str}


@dataclasses.dataclass(frozen=True)
class Option:
    """How one field is given on the command line and checked (see `option`)."""
    help: str
    choices: tuple | None = None
    parse: Callable[[str], Any] | None = None
    metavar: str | None = None
    check: Check | None = None
    flag: str | None = None


@dataclasses.dataclass(frozen=True)
class OptionGroup:
    """The --help heading of a group of options."""
    title: str
    description: str | None = None


def option(default, help: str, *, choices=None, parse: Callable[[str], Any] | None = None,
           metavar: str | None = None, check: Check | None = None, flag: str | None = None):
    """A dataclass field that is also a command-line option.

    `help` may name the default as ``{default}``. `choices` are the allowed values (None always
    allowed). `parse` turns the command-line text into the value when int/float/str from the
    annotation will not do; it raises UsageError naming the option. A dict field is given entry by
    entry (a repeatable flag, `parse` giving (key, value)); a bool field defaulting to False is a
    switch, one defaulting to None (automatic) also has its `--no-` form. `check(value)` returns
    what is wrong with a value other than None, or None; it may also raise UsageError itself.
    `flag` replaces the `--snake-case` flag of the field's name.
    """
    metadata = {"option": Option(help, tuple(choices) if choices is not None else None, parse, metavar, check, flag)}
    if isinstance(default, (list, dict)):  # a fresh copy for every configuration
        return dataclasses.field(default_factory=functools.partial(copy.deepcopy, default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def option_group(title: str, description: str | None = None):
    """Class decorator: the class becomes a dataclass of options shown under `title` in --help.

    The group's own method ``check_combination(self)``, if any, raises UsageError for values that
    cannot work together; a composition of groups may have one too, for values of several groups.
    """
    def declare(cls):
        cls = dataclasses.dataclass(cls)
        cls.__option_group__ = OptionGroup(title, description)
        return cls
    return declare


def option_groups(config_class) -> dict[type, list[dataclasses.Field]]:
    """The option groups of `config_class` (one group, or a composition) and their fields, in field order."""
    groups = [cls for cls in config_class.__mro__ if "__option_group__" in vars(cls)]
    ordered: dict[type, list[dataclasses.Field]] = {}
    for field in dataclasses.fields(config_class):
        owners = [cls for cls in groups if field.name in cls.__dataclass_fields__]
        if len(owners) != 1 or "option" not in field.metadata:
            raise TypeError(f"{config_class.__name__}.{field.name}: declare it with option() in one option group")
        ordered.setdefault(owners[0], []).append(field)
    return ordered


def heading(group: type) -> OptionGroup:
    return vars(group)["__option_group__"]


def declared(field: dataclasses.Field) -> Option:
    return field.metadata["option"]


def flag_of(field: dataclasses.Field) -> str:
    return declared(field).flag or "--" + field.name.replace("_", "-")


def default_of(field: dataclasses.Field):
    return field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default


def set_away_from_default(instance, names) -> list[str]:
    """The fields among `names` of a dataclass instance whose value differs from their declared default, in order."""
    defaults = {field.name: default_of(field) for field in dataclasses.fields(instance)}
    return [name for name in names if getattr(instance, name) != defaults[name]]


def _scalar_type(field: dataclasses.Field):
    """int, float or str from the annotation ('int | None' → int)."""
    annotation = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", str(field.type))
    names = {part.strip() for part in annotation.split("|")} - {"None"}
    if len(names) != 1 or next(iter(names)) not in {*_SCALARS, "bool"}:
        raise TypeError(f"option {field.name}: give parse= for a field of type {annotation}")
    return _SCALARS.get(names.pop(), bool)


def add_options(parser: argparse.ArgumentParser, config_class) -> dict[type, argparse._ArgumentGroup]:
    """An argument for every field of `config_class` under its group's heading; returns each group's section."""
    sections = {}
    for group, fields in option_groups(config_class).items():
        section = sections[group] = parser.add_argument_group(heading(group).title, heading(group).description)
        for field in fields:
            spec = declared(field)
            default = default_of(field)
            shown = spec.help.replace("{default}", str(default)).replace("%", "%%")  # argparse formats with %
            kwargs = dict(dest=field.name, default=None, help=shown)
            if isinstance(default, dict):
                kwargs.update(action="append", metavar=spec.metavar)
            elif spec.parse is None and _scalar_type(field) is bool:
                kwargs["action"] = "store_true" if default is False else argparse.BooleanOptionalAction
            else:  # a field's own parse runs in given_options, where its UsageError reaches the user unchanged
                kwargs.update(type=None if spec.parse else _scalar_type(field), choices=spec.choices,
                              metavar=spec.metavar)
            section.add_argument(flag_of(field), **kwargs)
    return sections


def given_options(config_class, args: argparse.Namespace) -> dict:
    """The fields given on the command line (those left out are absent), parsed."""
    given = {}
    for field in dataclasses.fields(config_class):
        text = getattr(args, field.name, None)
        if text is None:
            continue
        parse = declared(field).parse
        if parse is None:
            given[field.name] = text
        elif isinstance(default_of(field), dict):
            given[field.name] = dict(parse(entry) for entry in text)
        else:
            given[field.name] = parse(text)
    return given


def type_problems(config_class, values: dict) -> list[str]:
    """`--name value: …` for each entry of `values` (a saved configuration) that is not of its field's type:
    an int for an int, a number for a float, a string for a str, true/false for a switch; a list or an object
    where the field holds one. None passes where it is the field's default."""
    problems = []
    for field in dataclasses.fields(config_class):
        if field.name not in values or "option" not in field.metadata:
            continue
        value, default = values[field.name], default_of(field)
        if value is None:
            continue
        if isinstance(default, (list, dict)) or declared(field).parse is not None:
            kind = dict if isinstance(default, dict) else list
            wanted, ok = kind.__name__, isinstance(value, (list, tuple) if kind is list else dict)
        else:
            kind = _scalar_type(field)
            wanted = kind.__name__
            ok = isinstance(value, bool) if kind is bool else not isinstance(value, bool) and (
                isinstance(value, (int, float)) if kind is float else isinstance(value, kind))
        if not ok:
            problems.append(f"{flag_of(field)} {value!r}: not a {wanted}")
    return problems


def check_options(config) -> None:
    """Raise UsageError, one line naming the option, for the first value or combination that cannot work."""
    for fields in option_groups(type(config)).values():
        for field in fields:
            value, spec = getattr(config, field.name), declared(field)
            if value is None:
                continue
            if _non_finite(value):  # NaN or ±inf is no setting of any option (--lr inf trains to all-NaN weights)
                raise UsageError(f"{flag_of(field)} {value!r}: must be a finite number")
            if spec.choices is not None and value not in spec.choices:
                raise UsageError(f"{flag_of(field)} {value!r}: choose one of {', '.join(map(str, spec.choices))}")
            problem = spec.check(value) if spec.check else None
            if problem:
                raise UsageError(f"{flag_of(field)} {value!r}: {problem}")
    for cls in reversed(type(config).__mro__):
        if "check_combination" in vars(cls):
            vars(cls)["check_combination"](config)


def _non_finite(value) -> bool:
    """A float, or a list / dict holding one, that is NaN or infinite."""
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, (list, tuple)):
        return any(_non_finite(item) for item in value)
    if isinstance(value, dict):
        return any(_non_finite(item) for item in value.values())
    return False


def argument(kind: type, check: Check) -> Callable[[str], Any]:
    """An argparse `type=` for options outside the option groups: `kind(text)`, finite, passing `check`."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
        problem = "must be a finite number" if _non_finite(value) else check(value)
        if problem:
            raise argparse.ArgumentTypeError(f"{text}: {problem}")
        return value
    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


# Checks for `option(check=...)`.

def positive(value) -> str | None:
    return None if value > 0 else "must be positive"


def at_least(bound) -> Check:
    return lambda value: None if value >= bound else f"must be ≥ {bound}"


def within(interval: str, meaning: str = "") -> Check:
    """`within("[0, 1)")`: a value of that interval, '(' and ')' leaving out their end; `meaning` says what it is."""
    low, high = (float(end) for end in interval[1:-1].split(","))

    def check(value):
        above = low < value if interval[0] == "(" else low <= value
        below = value < high if interval[-1] == ")" else value <= high
        return None if above and below else f"must lie in {interval}" + (f"; {meaning}" if meaning else "")
    return check


def seed_range(value) -> str | None:
    """A seed numpy's and torch's generators both take."""
    return None if 0 <= value < 2 ** 32 else "a seed lies in 0 .. 2³² − 1"


def count_or_fraction(value) -> str | None:
    """A number of examples (a whole number ≥ 1) or a fraction of a set (in (0, 1))."""
    return None if 0 < value < 1 or (value >= 1 and value == int(value)) else \
        "give a count of examples (a whole number) or a fraction in (0, 1)"
