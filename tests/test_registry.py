"""The registry loader: strict validation, layering, lookup, suggestions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from zoo.errors import RegistryError, UnknownModelError
from zoo.registry import builtin_registry_path, load_registry


def write_registry(path: Path, models: list[dict], defaults: dict | None = None, **top) -> Path:
    document = {"format": 1, "models": models, **({"defaults": defaults} if defaults else {}), **top}
    path.write_text(json.dumps(document))
    return path


def in_house(name: str = "team_detector_v3", **fields) -> dict:
    return {"name": name, "family": "tf2-detection", "url": f"https://models.example.internal/{name}.tar.gz", **fields}


def test_builtin_registry_loads_and_every_url_is_unique():
    registry = load_registry()
    assert len(registry) == 104
    urls = [model.url for model in registry]
    assert len(urls) == len(set(urls))
    assert builtin_registry_path().name == "registry.json"


def test_lookup_exact_then_alias_then_case_insensitive():
    registry = load_registry()
    canonical = "ssd_resnet50_v1_fpn_640x640_coco17_tpu-8"
    assert registry.resolve(canonical).name == canonical
    assert registry.resolve("ssd_resnet50_v1_fpn").name == canonical
    assert registry.resolve("SSD_ResNet50_V1_FPN").name == canonical
    assert registry.resolve("SSD_RESNET50_V1_FPN_1024X1024_COCO17_TPU-8").name == (
        "ssd_resnet50_v1_fpn_1024x1024_coco17_tpu-8"
    )


def test_alias_variants_are_listed():
    registry = load_registry()
    model = registry.resolve("ssd_resnet50_v1_fpn")
    assert [v.name for v in registry.variants(model)] == ["ssd_resnet50_v1_fpn_1024x1024_coco17_tpu-8"]


def test_unknown_name_suggests_the_closest():
    with pytest.raises(UnknownModelError) as caught:
        load_registry().resolve("ssd_resnet50_fpn")
    assert "ssd_resnet50_v1_fpn" in caught.value.suggestions
    assert "did you mean" in str(caught.value)


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (in_house(url="ftp://x/y.tar.gz"), "field 'url': must be an http(s):// or file:// URL or an absolute path"),
        (in_house(family="tf3"), "field 'family': must be one of"),
        (in_house(sha256="ABC"), "field 'sha256': must be 64 lowercase hex"),
        (in_house(size=-1), "field 'size': must be a positive integer"),
        (in_house(input_size=[640]), "field 'input_size'"),
        (in_house(checkpoint="../../etc/passwd"), "field 'checkpoint': must be a relative path"),
        (in_house(sha265=None), "unknown field(s) sha265"),
        (in_house(name="bad name"), "field 'name'"),
        (in_house(sample_config={"path": "x"}), "field 'sample_config'"),
        (in_house(sample_config={"path": "x", "url": "https://h/" + "a" * 40 + "/x", "commit": "b" * 40}),
         "field 'sample_config': commit must be 40 lowercase hex digits that the url names"),
        (in_house(speed_device=""), "field 'speed_device'"),
        (in_house(display_name=3), "field 'display_name'"),
        # Registry text reaches the terminal: an escape sequence could retitle or rewrite it.
        (in_house(display_name="a \x1b]0;pwned\x07"), "field 'display_name': must not hold control characters"),
        (in_house(url="https://h/x\x00.tar.gz"), "field 'url': must not hold control characters"),
    ],
)
def test_validation_errors_name_file_entry_and_field(tmp_path, model, message):
    path = write_registry(tmp_path / "team.json", [in_house("fine_one"), model])
    with pytest.raises(RegistryError) as caught:
        load_registry([path])
    text = str(caught.value)
    assert text.startswith(f"{path}: models[1]")
    assert message in text


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON at line 1 column 2"),
        ('{"format": 2, "models": []}', "field 'format' must be 1"),
        ('{"format": 1, "models": {}}', "field 'models' must be a list"),
        ('{"format": 1, "models": [], "extra": 1}', "unknown field(s) extra"),
        ("[]", "top level must be a JSON object"),
    ],
)
def test_document_level_errors(tmp_path, content, message):
    path = tmp_path / "broken.json"
    path.write_text(content)
    with pytest.raises(RegistryError) as caught:
        load_registry([path])
    assert str(caught.value).startswith(f"{path}: ")
    assert message in str(caught.value)


def test_missing_registry_file_is_named(tmp_path):
    with pytest.raises(RegistryError, match="nothere.json: no such file"):
        load_registry([tmp_path / "nothere.json"])


def test_duplicate_names_and_ambiguous_aliases_are_refused(tmp_path):
    duplicate = write_registry(tmp_path / "dup.json", [in_house("a"), in_house("a")])
    with pytest.raises(RegistryError, match="duplicate model name 'a'"):
        load_registry([duplicate])
    shared = write_registry(tmp_path / "shared.json", [in_house("a", aliases=["x"]), in_house("b", aliases=["x"])])
    with pytest.raises(RegistryError, match="alias 'x' is shared by a, b; 'defaults' must name one"):
        load_registry([shared])
    fixed = write_registry(tmp_path / "fixed.json", [in_house("a", aliases=["x"]), in_house("b", aliases=["x"])], {"x": "b"})
    assert load_registry([fixed]).resolve("x").name == "b"


def test_extra_files_layer_over_the_builtin_one(tmp_path):
    upstream = "ssd_resnet50_v1_fpn_640x640_coco17_tpu-8"
    first = write_registry(tmp_path / "first.json", [in_house("team_a")])
    pin = {"name": upstream, "sha256": "a" * 64, "size": 10}
    moved = {"name": "team_a", "url": "file:///srv/models/team_a.tar.gz"}
    second = write_registry(tmp_path / "second.json", [pin, moved, in_house("team_b")])
    registry = load_registry([first, second])
    assert len(registry) == 106
    pinned = registry.resolve("ssd_resnet50_v1_fpn")
    assert (pinned.name, pinned.sha256, pinned.size) == (upstream, "a" * 64, 10)
    assert pinned.url.startswith("http://download.tensorflow.org/")
    assert registry.resolve("team_a").url == "file:///srv/models/team_a.tar.gz"
    assert registry.resolve("team_b").source == str(second)


def test_a_layer_that_breaks_an_alias_default_is_named(tmp_path):
    dropped = {"name": "ssd_resnet50_v1_fpn_640x640_coco17_tpu-8", "aliases": []}
    path = write_registry(tmp_path / "team.json", [dropped])
    with pytest.raises(RegistryError, match=r"team.json: defaults: 'ssd_resnet50_v1_fpn' -> "):
        load_registry([path])


HOSTILE_NAMES = ["../../../tmp/canary", "a/b", "..", ".hidden", "-rf", "a..b", "x" * 129, "tab\tname", "ünïcode", "a\\b"]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_names_and_aliases_are_single_safe_path_components(tmp_path, name):
    """They become cache directory names, from any registry file a team layers in."""
    named = write_registry(tmp_path / "named.json", [in_house(name)])
    with pytest.raises(RegistryError) as caught:
        load_registry([named])
    assert str(caught.value) == (
        f"{named}: models[0] ({name}): field 'name': must be 1-128 letters, digits, '.', '_' or '-', "
        f"starting with a letter or digit, without '..'; got {name!r}"
    )
    aliased = write_registry(tmp_path / "aliased.json", [in_house(aliases=["fine", name])])
    with pytest.raises(RegistryError) as caught:
        load_registry([aliased])
    assert str(caught.value).startswith(f"{aliased}: models[0] (team_detector_v3): field 'aliases': must be 1-128")
    assert str(caught.value).endswith(f"; got {name!r}")


def test_every_builtin_name_and_alias_is_a_safe_path_component(tmp_path):
    registry = load_registry()
    keys = [key for model in registry for key in (model.name, *model.aliases)]
    # Layering each built-in entry again re-validates it: none is refused.
    relisted = write_registry(tmp_path / "again.json", [{"name": model.name, "aliases": list(model.aliases)}
                                                        for model in registry])  # fmt: skip
    assert len(load_registry([relisted])) == len(registry) and len(keys) > len(registry)
    longest = write_registry(tmp_path / "long.json", [in_house("a" * 128, aliases=["b.c_d-9"])])
    assert load_registry([longest]).resolve("b.c_d-9").name == "a" * 128


def test_table_columns_and_titles_reach_the_listing_fields():
    registry = load_registry()
    d6 = registry.resolve("efficientdet_d6_coco17_tpu-32").to_dict()
    assert (d6["display_name"], d6["input_size"]) == ("EfficientDet D6 1280x1280", [1408, 1408])
    edgetpu = registry.resolve("ssdlite_mobiledet_edgetpu_320x320_coco").to_dict()
    assert (edgetpu["speed_ms"], edgetpu["speed_device"], edgetpu["metric"]) == (
        6.9, "Pixel 4 Edge TPU", "COCO mAP (fp32/uint8)")
    assert edgetpu["sample_config"]["commit"] in edgetpu["sample_config"]["url"]
    r50v2 = registry.resolve("centernet_resnet50_v2_512x512_coco17_tpu-8").to_dict()
    assert r50v2["sample_config"] is None and "internal" in r50v2["sample_config_note"]


def test_a_layer_adding_a_sample_config_drops_the_note(tmp_path):
    config = {"path": "configs/r50v2.config", "url": "https://configs.example.internal/r50v2.config"}
    path = write_registry(tmp_path / "team.json", [{"name": "centernet_resnet50_v2_512x512_coco17_tpu-8",
                                                   "sample_config": config}])
    model = load_registry([path]).resolve("centernet_resnet50_v2_512x512_coco17_tpu-8")
    assert model.sample_config is not None and model.sample_config.commit is None
    assert model.sample_config_note is None
