"""The tool registry: spec validation, parameter schemas, command templating, safe input names."""

from __future__ import annotations

from pathlib import Path

import pytest

from headwater.errors import InputError
from tasks.tool_registry import (
    ParameterError,
    ToolSpec,
    UnknownToolError,
    assign_inputs,
    cache_key,
    get_tool,
    load_registry,
    parse_param_args,
    render_command,
    safe_input_name,
    split_jobs,
    unique_names,
    validate_params,
)


def _spec(**over: object) -> ToolSpec:
    data: dict[str, object] = {
        "name": "demo",
        "version": "1",
        "image": "headwater/demo:1",
        "command": ["run", "{molecules}", "--out", "{out}", "{verbose}", "--n={n}", "{label}"],
        "inputs": [{"name": "molecules"}],
        "params": {
            "verbose": {"type": "boolean", "default": False, "flag": "-v"},
            "n": {"type": "integer", "default": 3, "minimum": 1, "maximum": 10},
            "label": {"type": "string"},
            "mode": {"type": "string", "default": "a", "enum": ["a", "b"]},
        },
    }
    data.update(over)
    return ToolSpec(**data)  # type: ignore[arg-type]


def test_builtin_tools_load() -> None:
    tools = load_registry()
    assert {"obabel-convert", "obabel-descriptors", "obabel-split", "vina-dock", "sleep"} <= set(
        tools
    )
    for spec in tools.values():
        assert spec.user.split(":")[0] != "0"
        assert not spec.image.endswith(":latest")


def test_unknown_tool_is_rejected_naming_known_ones() -> None:
    with pytest.raises(UnknownToolError, match=r"unknown tool 'nope'.*obabel-convert"):
        get_tool("nope")


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({}, {"verbose": False, "n": 3, "mode": "a"}),
        ({"verbose": "true", "n": "7"}, {"verbose": True, "n": 7, "mode": "a"}),
        (
            {"label": "run-1", "mode": "b"},
            {"verbose": False, "n": 3, "mode": "b", "label": "run-1"},
        ),
    ],
)
def test_validate_params_coerces_and_fills_defaults(given: dict, expected: dict) -> None:
    assert validate_params(_spec(), given) == expected


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"bogus": 1}, "unknown parameter"),
        ({"n": "0"}, "below the minimum"),
        ({"n": 11}, "above the maximum"),
        ({"n": "2.5"}, "expected an integer|invalid literal"),
        ({"verbose": "maybe"}, "expected true or false"),
        ({"mode": "c"}, "is not one of"),
        ({"label": "x; rm -rf /"}, "does not match"),
        ({"label": "$(id)"}, "does not match"),
    ],
)
def test_validate_params_rejects(given: dict, message: str) -> None:
    with pytest.raises(ParameterError, match=message):
        validate_params(_spec(), given)


def test_required_parameter() -> None:
    spec = _spec(params={"k": {"type": "number", "required": True}}, command=["x", "{k}"])
    with pytest.raises(ParameterError, match="k is required"):
        validate_params(spec, {})


def test_render_command_flags_and_optional_values() -> None:
    spec = _spec()
    argv = render_command(spec, validate_params(spec, {}), {"molecules": ["a.sdf"]})
    assert argv == ["run", "/in/a.sdf", "--out", "/out", "--n=3"]
    argv = render_command(
        spec, validate_params(spec, {"verbose": True, "label": "L"}), {"molecules": ["a.sdf"]}
    )
    assert argv == ["run", "/in/a.sdf", "--out", "/out", "-v", "--n=3", "L"]


def test_render_command_expands_multi_file_slot() -> None:
    spec = _spec(inputs=[{"name": "molecules", "multiple": True}])
    argv = render_command(spec, validate_params(spec, {}), {"molecules": ["a.sdf", "b.sdf"]})
    assert argv[:3] == ["run", "/in/a.sdf", "/in/b.sdf"]


def test_spec_validation() -> None:
    with pytest.raises(ValueError, match="placeholder"):
        _spec(command=["x", "{nope}"])
    with pytest.raises(ValueError, match="non-root"):
        _spec(user="0:0")
    with pytest.raises(ValueError, match="latest"):
        _spec(image="headwater/demo:latest")
    with pytest.raises(ValueError, match="version tag"):
        _spec(image="headwater/demo")


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("cdk2.sdf", "cdk2.sdf"),
        ("../../etc/passwd", "etc_passwd"),
        ("a/b\\c.mol", "a_b_c.mol"),
        ("..hidden.sdf", "hidden.sdf"),
        ("-rf.sdf", "rf.sdf"),
        ("bad\x00na\nme\x7f.sdf", "bad_na_me_.sdf"),
        ("space and;semi.sdf", "space_and_semi.sdf"),
    ],
)
def test_safe_input_name(name: str, safe: str) -> None:
    out = safe_input_name(name)
    assert out == safe
    assert "/" not in out and ".." not in out and out == Path(out).name


@pytest.mark.parametrize("name", ["..", "/", "\x01\x02", "...", ""])
def test_safe_input_name_rejects_unusable(name: str) -> None:
    with pytest.raises(InputError, match="no usable characters"):
        safe_input_name(name)


def test_unique_names_deduplicate() -> None:
    assert unique_names(["a.sdf", "x/a.sdf", "a.sdf"]) == ["a.sdf", "x_a.sdf", "a-1.sdf"]


def test_fan_out_one_job_per_file_for_single_file_slot() -> None:
    spec = _spec()
    slots = assign_inputs(spec, ["k/a.sdf", "k/b.sdf", "k/c.sdf"])
    jobs = split_jobs(spec, slots)
    assert [j["molecules"] for j in jobs] == [["k/a.sdf"], ["k/b.sdf"], ["k/c.sdf"]]
    multi = _spec(inputs=[{"name": "molecules", "multiple": True}])
    assert len(split_jobs(multi, assign_inputs(multi, ["a", "b"]))) == 1


def test_assign_inputs_checks_slots() -> None:
    spec = get_tool("vina-dock")
    with pytest.raises(InputError, match="input receptor is required"):
        assign_inputs(spec, {"ligand": ["l.sdf"]})
    with pytest.raises(InputError, match="unknown input slot"):
        assign_inputs(spec, {"ligand": ["l.sdf"], "receptor": ["r.pdb"], "extra": ["x"]})
    with pytest.raises(InputError, match="takes one file"):
        assign_inputs(spec, {"ligand": ["l.sdf"], "receptor": ["r.pdb", "s.pdb"]})


def test_cache_key_depends_on_params_inputs_and_image() -> None:
    spec = _spec()
    params = validate_params(spec, {})
    base = cache_key(spec, "sha256:1", params, {"molecules": ["a.sdf:aa"]})
    assert base == cache_key(spec, "sha256:1", dict(params), {"molecules": ["a.sdf:aa"]})
    assert base != cache_key(spec, "sha256:2", params, {"molecules": ["a.sdf:aa"]})
    assert base != cache_key(spec, "sha256:1", {**params, "n": 4}, {"molecules": ["a.sdf:aa"]})
    assert base != cache_key(spec, "sha256:1", params, {"molecules": ["a.sdf:ab"]})


def test_parse_param_args() -> None:
    assert parse_param_args(["a=1", "b=x=y"]) == {"a": "1", "b": "x=y"}
    with pytest.raises(ParameterError, match="NAME=VALUE"):
        parse_param_args(["novalue"])
