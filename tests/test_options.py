"""Options declared once: every `TrainConfig` field is one `visionzoo train` flag with its help, group and
choices, generated from the declaration; values are parsed and checked as declared."""
import argparse
import dataclasses

import pytest

from visionzoo.core.errors import UsageError
from visionzoo.core.options import (
    add_options,
    check_options,
    declared,
    default_of,
    given_options,
    heading,
    option_groups,
)
from visionzoo.engine.trainer import TASK_OPTIONS, TrainConfig, Trainer

FIELDS = {field.name: field for field in dataclasses.fields(TrainConfig)}


def train_parser():
    parser = argparse.ArgumentParser()
    add_options(parser, TrainConfig)
    return parser


def test_every_field_has_help_text_and_exactly_one_group():
    groups = option_groups(TrainConfig)
    grouped = [field.name for fields in groups.values() for field in fields]
    assert sorted(grouped) == sorted(FIELDS)
    assert all(heading(group).title for group in groups)
    assert all(declared(field).help.strip() for field in FIELDS.values())


def test_the_parser_has_exactly_one_flag_per_field_with_the_declared_choices():
    actions = [action for action in train_parser()._actions if action.dest != "help"]
    assert sorted(action.dest for action in actions) == sorted(FIELDS)
    for action in actions:
        field = FIELDS[action.dest]
        assert action.option_strings[0] == (declared(field).flag or "--" + field.name.replace("_", "-"))
        assert action.default is None   # "not given" stays apart from "given the default"
        assert tuple(action.choices or ()) == (declared(field).choices or ())


def test_given_options_holds_only_what_was_given_parsed_as_declared():
    args = train_parser().parse_args(["--lr", "0.05", "--milestones", "3,6", "--model-arg", "widths=[4,8]",
                                      "--model-arg", "shortcut=A", "--drop-block", "3,0.1", "--no-flip", "--quiet"])
    assert given_options(TrainConfig, args) == {
        "lr": 0.05, "milestones": [3, 6], "model_args": {"widths": [4, 8], "shortcut": "A"},
        "drop_block": [3, 0.1], "flip": False, "quiet": True}
    assert given_options(TrainConfig, train_parser().parse_args([])) == {}


def test_model_args_read_json_and_python_literals_and_keep_other_text():
    args = train_parser().parse_args(["--model-arg", "strided=False", "--model-arg", "batchnorm=false",
                                      "--model-arg", "sizes=(4, 8)", "--model-arg", "norm=None",
                                      "--model-arg", "shortcut=A", "--model-arg", "act=leaky_relu"])
    assert given_options(TrainConfig, args)["model_args"] == {
        "strided": False, "batchnorm": False, "sizes": (4, 8), "norm": None, "shortcut": "A", "act": "leaky_relu"}


def test_help_names_the_declared_default():
    help_text = train_parser().format_help()
    assert f"global batch (default {TrainConfig().batch_size})" in help_text


@pytest.mark.parametrize("values, message", [
    (dict(optimizer="foo"), "--optimizer 'foo': choose one of sgd, nesterov"),
    (dict(mixup=-1.0), "--mixup -1.0: must be ≥ 0"),
    (dict(ema=1.0), "--ema 1.0: must lie in [0, 1)"),
    (dict(dropout=1.0), "--dropout 1.0: must lie in [0, 1)"),
    (dict(adv="pgd", adv_steps=0), "--adv-steps 0: must be ≥ 1"),
    (dict(schedule="multistep"), "--schedule multistep needs --milestones"),                  # within a group
    (dict(schedule="step", lr_floor=0.1), "--lr-floor is where cosine and onecycle anneal to"),
    (dict(schedule="cosine", milestones=[1, 2]), "--milestones are where --schedule multistep decays"),
    (dict(epochs=3, warmup_epochs=3.5), "--warmup-epochs 3.5 is longer than the run (--epochs 3)"),
    (dict(kd_temperature=3.0), "--kd-temperature sets the distillation from a --teacher"),
    (dict(kd_alpha=0.5), "--kd-alpha sets the distillation from a --teacher"),
    (dict(adv="fgsm", teacher="run"), "--adv cannot be combined with --mixup/--cutmix/--teacher"),  # across groups
    (dict(compile="off", compile_players="generators"), "--compile-players generators chooses what --compile"),
])
def test_check_options_refuses_a_bad_value_in_one_line_naming_the_option(values, message):
    with pytest.raises(UsageError) as caught:
        check_options(TrainConfig(**values))
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)


def test_the_defaults_and_none_pass():
    check_options(TrainConfig())
    check_options(TrainConfig(ema=None, wd_mode=None, norm=None, adv=None))


def _another_value(field):
    """A value of the field's type other than its default (the first other choice where it has choices)."""
    spec, default = declared(field), default_of(field)
    if spec.choices:
        return next(choice for choice in spec.choices if choice != default)
    if isinstance(default, bool):
        return not default
    if isinstance(default, (int, float)):
        return default * 2 if default else 1
    return {"fid_reference": "none", "proposals": "none"}.get(field.name, 3)


@pytest.mark.parametrize("owner, name", [(owner, field.name) for owner, group in TASK_OPTIONS.items()
                                         for field in dataclasses.fields(group)])
def test_an_option_of_another_tasks_group_is_refused_not_ignored(owner, name, tmp_path):
    """Every option of a task's own group, set on a run of another task (an image classifier here), is refused in
    one line naming it and its task."""
    value = _another_value(FIELDS[name])
    config = TrainConfig(model="lenet", data="fake", epochs=1, train_limit=16, quiet=True, out=str(tmp_path / "r"),
                         **{name: value})
    with pytest.raises(UsageError, match=f"^--{name.replace('_', '-')} is a {owner} option; a classification run"):
        Trainer(config)


def test_interval_checks_leave_out_the_ends_a_parenthesis_names_and_seeds_end_below_two_to_the_32():
    # within("(a, b]"): '(' excludes a, ']' includes b; a seed is one numpy and torch both take, 0 .. 2³² − 1
    from visionzoo.core.options import seed_range, within
    check = within("(0, 1]")
    assert check(0.0) and check(1.5) and check(-0.1)
    assert check(1.0) is None and check(1e-9) is None
    assert within("[0, 1)")(0.0) is None and within("[0, 1)")(1.0)
    assert seed_range(2 ** 32 - 1) is None and seed_range(0) is None
    assert seed_range(2 ** 32) and seed_range(-1)
    with pytest.raises(UsageError, match="--adv-eps 0.0: must lie in"):
        check_options(TrainConfig(adv_eps=0.0))
    with pytest.raises(UsageError, match="--seed"):
        check_options(TrainConfig(seed=2 ** 32))


@pytest.mark.parametrize("betas", [[0.9, float("nan")], (float("inf"), 0.999)])
def test_a_non_finite_number_inside_a_list_option_is_refused(betas):
    # NaN or ±inf is no setting of any option, whether alone, in a dict or in a list
    with pytest.raises(UsageError, match="--betas .*must be a finite number"):
        check_options(TrainConfig(optimizer="adam", betas=betas))
