"""lenssr.config: the one YAML reader, ``defaults:`` includes, dotlist overrides, coercion."""

from __future__ import annotations

from pathlib import Path

import pytest

from lenssr.config import apply_overrides, load_yaml, merge, number, parse_overrides
from lenssr.errors import ConfigError


def test_yaml_numbers_and_includes_relative_to_the_including_file(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "base.yaml").write_text("optim: {lr: 1e-4, betas: [0.9, 0.99]}\nseed: 3\n")
    child = tmp_path / "sub" / "child.yaml"
    child.write_text("defaults: ../base.yaml\noptim: {lr: 2e-4}\nmodel.name: edsr\n")
    cfg = load_yaml(child)
    assert cfg == {
        "optim": {"lr": 2e-4, "betas": [0.9, 0.99]},
        "seed": 3,
        "model": {"name": "edsr"},
    }
    assert isinstance(load_yaml(tmp_path / "base.yaml")["optim"]["lr"], float)  # not "1e-4"


def test_include_cycles_and_bad_files_are_one_line_errors(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("defaults: b.yaml\n")
    (tmp_path / "b.yaml").write_text("defaults: a.yaml\n")
    (tmp_path / "self.yaml").write_text("defaults: self.yaml\n")
    (tmp_path / "bad.yaml").write_text("a: [1,\n")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    cases = {
        "a.yaml": "cycle",
        "self.yaml": "itself",
        "bad.yaml": "invalid YAML",
        "list.yaml": "mapping",
        "missing.yaml": "not found",
    }
    for name, match in cases.items():
        with pytest.raises(ConfigError, match=match) as exc:
            load_yaml(tmp_path / name)
        assert "\n" not in str(exc.value) and name in str(exc.value)


def test_strict_merge_names_the_file_and_the_key(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("lr: {psf_fwhm: 0.2, bogus: 1}\n")
    root = {"lr": {"psf_fwhm": 0.18}, "lens": {"q": [0.5, 1.0]}}
    with pytest.raises(ConfigError, match=r"unknown config key 'lr.bogus' in .*p\.yaml"):
        load_yaml(path, root=root, strict=True)
    with pytest.raises(ConfigError, match="'lens' in overrides is a section"):
        apply_overrides(root, ["lens=3"], strict=True)
    dist = {"loguniform": [1.0, 2.0]}
    leaf = lambda v: set(v) == {"loguniform"}  # noqa: E731
    out = merge(root, {"lens": {"q": dist}}, strict=True, leaf=leaf)
    assert out["lens"]["q"] == dist and root["lens"]["q"] == [0.5, 1.0]
    # model-like sections take any key
    assert merge(
        {"model": {"name": "x"}}, {"model": {"k": 1}}, strict=True, open_sections=["model"]
    )


def test_overrides_are_read_as_yaml() -> None:
    parsed = parse_overrides(["optim.lr=1e-4", "lens.q=[0.7, 0.9]", "init=null", "x=", "d=a/b.h5"])
    assert parsed == {
        "optim": {"lr": 1e-4},
        "lens": {"q": [0.7, 0.9]},
        "init": None,
        "x": None,
        "d": "a/b.h5",
    }
    for bad, match in (("optim", "key=value"), ("=3", "empty key"), ("a=[1,", "cannot read")):
        with pytest.raises(ConfigError, match=match):
            parse_overrides([bad])


def test_number_coerces_and_checks() -> None:
    assert number("1e-4", "optim.lr") == pytest.approx(1e-4)
    assert number(4.0, "data.batch_size", integer=True) == 4
    for value, kw, match in (
        (True, {}, "must be a number"),
        ("abc", {}, "must be a number"),
        (2.5, {"integer": True}, "integer"),
        (0, {"positive": True}, "> 0"),
        (-1, {"minimum": 0}, ">= 0"),
    ):
        with pytest.raises(ConfigError, match=match):
            number(value, "k", **kw)
