"""Data checks for registry.json against the published zoo tables and the
TF2 and TF1 sample configs copied in tests/data (see tests/data/tf2_sample_configs/SOURCE.md,
tests/data/tf1_sample_configs/SOURCE.md and tests/data/tf1_config_map.json).

Only the standard library (json, pathlib, re) is used: these tests check the
data file itself, independently of the loader in zoo/registry.py.
"""
import json
import re
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
DATA = TESTS / "data"
REGISTRY_PATH = TESTS.parent / "registry.json"
CONFIGS = DATA / "tf2_sample_configs"
TF1_CONFIGS = DATA / "tf1_sample_configs"
CONFIG_DIRS = {"tf2-detection": CONFIGS, "tf1-detection": TF1_CONFIGS}

FAMILIES = ["tf2-detection", "tf2-classification", "tf1-detection"]
EXPECTED_COUNTS = {"tf2-detection": 43, "tf2-classification": 14, "tf1-detection": 47}
MODEL_KEYS = [
    "name", "display_name", "aliases", "family", "url", "checkpoint", "sample_config", "sample_config_note",
    "meta_architecture", "feature_extractor", "input_size", "coco_map", "metric",
    "speed_ms", "speed_device", "outputs", "sha256", "size",
]
CONFIG_PREFIX = "research/object_detection/configs/tf2/"
# The zoo table links a sign-in URL (storage.cloud.google.com) that serves no
# download outside a browser; the registry uses the public form of the same object.
PUBLIC_URLS = {
    "https://storage.cloud.google.com/mobilenet_edgetpu/checkpoints/ssdlite_mobilenet_edgetpu_coco_quant.tar.gz":
        "https://storage.googleapis.com/mobilenet_edgetpu/checkpoints/ssdlite_mobilenet_edgetpu_coco_quant.tar.gz",
}
RAW_URL_RE = re.compile(
    r"^https://raw\.githubusercontent\.com/tensorflow/models/([0-9a-f]{40})/(.+)$"
)
DEPRECATED_EXTREMENET_URL = (
    "http://download.tensorflow.org/models/object_detection/tf2/20200711/extremenet.tar.gz"
)
TF1_DOCUMENTED_URL_RE = re.compile(
    r"^http://download\.tensorflow\.org/models/object_detection/([^/]+)\.tar\.gz$"
)
HXW_RE = re.compile(r"_(\d+)x(\d+)(?=_|$)")


@pytest.fixture(scope="module")
def registry_text():
    return REGISTRY_PATH.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def registry(registry_text):
    return json.loads(registry_text)


@pytest.fixture(scope="module")
def models(registry):
    return registry["models"]


@pytest.fixture(scope="module")
def tables():
    rows = json.loads((DATA / "zoo_tables.json").read_text(encoding="utf-8"))
    return [{**row, "url": PUBLIC_URLS.get(row["url"], row["url"])} for row in rows]


@pytest.fixture(scope="module")
def tf1_map():
    return json.loads((DATA / "tf1_config_map.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def tf1_source_commits():
    """file name -> (repository path, commit), from the table in the TF1 SOURCE.md."""
    text = (TF1_CONFIGS / "SOURCE.md").read_text(encoding="utf-8")
    table = text.split("## Files, commits, sizes, matches", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\|\s*(\S+\.config)\s*\|\s*`([^`]+)`\s*\|\s*([0-9a-f]{40})\s*\|", table, re.M)
    assert len(rows) == 38
    return {name: (path, commit) for name, path, commit in rows}


@pytest.fixture(scope="module")
def source_commits():
    """file name -> commit, from the table in SOURCE.md."""
    text = (CONFIGS / "SOURCE.md").read_text(encoding="utf-8")
    table = text.split("## Files, commits and sizes", 1)[1].split("\n## ", 1)[0]
    commits = dict(
        re.findall(r"^\|\s*(\S+\.config)\s*\|\s*([0-9a-f]{40})\s*\|", table, re.M)
    )
    assert len(commits) == 47
    return commits


def _url_basename(url):
    base = url.rsplit("/", 1)[1]
    assert base.endswith(".tar.gz"), url
    return base[: -len(".tar.gz")]


def _strip_comment_lines(text):
    return "\n".join(re.sub(r"^\s*#.*$", "", line) for line in text.splitlines())


def _config_meta_and_extractor(text):
    """(meta architecture, first feature_extractor type) of a pipeline config."""
    text = _strip_comment_lines(text)
    meta = re.search(r"\bmodel\s*:?\s*\{\s*(\w+)\s*:?\s*\{", text)
    fe = re.search(
        r"\bfeature_extractor\s*:?\s*\{[^}]*?\btype\s*:\s*[\"']([^\"']+)[\"']", text
    )
    return (meta.group(1) if meta else None), (fe.group(1) if fe else None)


def _claims(models):
    claims = {}
    for m in models:
        for alias in m["aliases"]:
            claims.setdefault(alias, []).append(m["name"])
    return claims


# --- shape and formatting -------------------------------------------------


def test_top_level_shape(registry):
    assert list(registry) == ["format", "defaults", "models"]
    assert registry["format"] == 1
    assert isinstance(registry["defaults"], dict)
    assert isinstance(registry["models"], list)


def test_model_keys_in_order(models):
    for m in models:
        assert list(m) == MODEL_KEYS, m.get("name")


def test_file_is_canonically_formatted(registry, registry_text):
    expected = json.dumps(registry, indent=2, ensure_ascii=False) + "\n"
    assert registry_text == expected


def test_defaults_sorted_by_key(registry):
    keys = list(registry["defaults"])
    assert keys == sorted(keys)


# --- rows of the published tables -----------------------------------------


def test_family_counts(models, tables):
    for fam in FAMILIES:
        n_models = sum(1 for m in models if m["family"] == fam)
        n_rows = sum(1 for r in tables if r["zoo"] == fam)
        assert n_models == n_rows == EXPECTED_COUNTS[fam], fam
    assert {m["family"] for m in models} == set(FAMILIES)
    assert len(models) == len(tables) == 104


def test_every_row_has_exactly_one_model(models, tables):
    model_urls = [m["url"] for m in models]
    assert len(set(model_urls)) == len(model_urls), "duplicate URL"
    row_urls = {r["url"] for r in tables}
    for url in row_urls:
        assert model_urls.count(url) == 1, url
    for url in model_urls:
        assert url in row_urls, url


def test_published_fields_copied_unchanged(models, tables):
    by_url = {r["url"]: r for r in tables}
    for m in models:
        row = by_url[m["url"]]
        assert m["family"] == row["zoo"], m["name"]
        assert m["coco_map"] == row["coco_map"], m["name"]
        assert m["speed_ms"] == row["speed_ms"], m["name"]
        assert type(m["speed_ms"]) is type(row["speed_ms"]), m["name"]
        assert m["outputs"] == row["outputs"], m["name"]


def test_models_sorted_by_family_then_table_order(models, tables):
    expected = [r["url"] for fam in FAMILIES for r in tables if r["zoo"] == fam]
    assert [m["url"] for m in models] == expected


# --- names and aliases ----------------------------------------------------


def test_names_unique_case_insensitively(models):
    names = [m["name"] for m in models]
    assert len(set(names)) == len(names)
    assert len({n.lower() for n in names}) == len(names)


def test_name_is_url_basename(models):
    for m in models:
        if m["url"] == DEPRECATED_EXTREMENET_URL:
            assert m["name"] == "extremenet_20200711"
        else:
            assert m["name"] == _url_basename(m["url"]), m["url"]


def test_extremenet_rows_named_apart(models):
    by_name = {m["name"]: m for m in models}
    assert "/20210507/" in by_name["extremenet"]["url"]
    assert by_name["extremenet_20200711"]["url"] == DEPRECATED_EXTREMENET_URL


def test_alias_never_equals_a_canonical_name(models):
    names = {m["name"].lower() for m in models}
    for m in models:
        assert len(set(m["aliases"])) == len(m["aliases"]), m["name"]
        for alias in m["aliases"]:
            assert alias.lower() not in names, (m["name"], alias)


def test_alias_case_collisions_are_real_claims(models):
    # Two different spellings of one alias differing only in case are not allowed.
    spellings = {}
    for alias in _claims(models):
        spellings.setdefault(alias.lower(), set()).add(alias)
    for low, spelled in spellings.items():
        assert len(spelled) == 1, spelled


def test_shared_aliases_have_a_default_among_claimers(registry, models):
    defaults = registry["defaults"]
    for alias, claimers in _claims(models).items():
        if len(claimers) > 1:
            assert alias in defaults, alias
            assert defaults[alias] in claimers, alias
        else:
            assert alias not in defaults, alias


def test_defaults_only_for_shared_aliases(registry, models):
    claims = _claims(models)
    for alias, target in registry["defaults"].items():
        assert len(claims.get(alias, [])) > 1, alias
        assert target in claims[alias]


def test_tf1_never_shadows_tf2_aliases(registry, models):
    families = {m["name"]: m["family"] for m in models}
    claims = _claims(models)
    for alias, claimers in claims.items():
        fams = {families[n] for n in claimers}
        if "tf1-detection" in fams:
            assert fams == {"tf1-detection"}, (alias, claimers)
    for alias, target in registry["defaults"].items():
        if any(families[n] != "tf1-detection" for n in claims[alias]):
            assert families[target] != "tf1-detection", alias


def test_classification_models_have_no_aliases(models):
    for m in models:
        if m["family"] == "tf2-classification":
            assert m["aliases"] == [], m["name"]


def test_documented_alias_examples(registry, models):
    by_name = {m["name"]: m for m in models}
    assert by_name["ssd_resnet50_v1_fpn_640x640_coco17_tpu-8"]["aliases"] == [
        "ssd_resnet50_v1_fpn", "ssd_resnet50_v1_fpn_640x640"]
    assert by_name["efficientdet_d0_coco17_tpu-32"]["aliases"] == ["efficientdet_d0"]
    assert by_name["centernet_hg104_512x512_kpts_coco17_tpu-32"]["aliases"] == [
        "centernet_hg104_kpts", "centernet_hg104_512x512_kpts"]
    assert by_name["ssd_mobilenet_v1_coco_2018_01_28"]["aliases"] == ["ssd_mobilenet_v1_coco"]


def test_ssd_resnet50_v1_fpn_defaults_to_640(registry):
    assert registry["defaults"]["ssd_resnet50_v1_fpn"] == (
        "ssd_resnet50_v1_fpn_640x640_coco17_tpu-8"
    )


def test_alias_names_the_first_variant_the_table_lists(registry, models):
    # README (Registry): a shared alias resolves to the variant listed first in the zoo table.
    for alias, claimers in _claims(models).items():
        if len(claimers) > 1:
            assert registry["defaults"][alias] == claimers[0], alias
    assert registry["defaults"]["ssd_mobilenet_v2_fpnlite"] == "ssd_mobilenet_v2_fpnlite_320x320_coco17_tpu-8"


# --- sample configs -------------------------------------------------------


def _config_file(m):
    return CONFIG_DIRS[m["family"]] / m["sample_config"]["path"].rsplit("/", 1)[1]


def _with_config(models):
    return [m for m in models if m["sample_config"] is not None]


def test_sample_config_urls_pinned_to_source_commit(models, source_commits, tf1_source_commits):
    for m in _with_config(models):
        sc = m["sample_config"]
        assert list(sc) == ["path", "commit", "url"], m["name"]
        fname = sc["path"].rsplit("/", 1)[1]
        assert _config_file(m).is_file(), fname
        if m["family"] == "tf2-detection":
            assert sc["path"] == CONFIG_PREFIX + fname, m["name"]
            assert sc["commit"] == source_commits[fname], m["name"]
        else:
            assert (sc["path"], sc["commit"]) == tf1_source_commits[fname], m["name"]
        match = RAW_URL_RE.match(sc["url"])
        assert match, sc["url"]
        assert match.groups() == (sc["commit"], sc["path"]), m["name"]
    assert len(_with_config(models)) == 35 + 38  # TF2 (less the internal CenterNet one) and TF1 mapped


def test_tf1_sample_configs_follow_the_map(models, tf1_map):
    tf1 = {m["name"]: m for m in models if m["family"] == "tf1-detection"}
    assert set(tf1) == set(tf1_map)
    for name, mapped in tf1_map.items():
        sc = tf1[name]["sample_config"]
        if mapped is None:
            assert sc is None, name
            assert tf1[name]["sample_config_note"], name  # the map's reason, shown by `zoo info`
        else:
            assert {"path": sc["path"], "commit": sc["commit"]} == mapped, name
    used = {m["sample_config"]["path"].rsplit("/", 1)[1] for m in tf1.values() if m["sample_config"]}
    assert used == {p.name for p in TF1_CONFIGS.glob("*.config")}
    assert len(used) == 38


def test_detection_models_have_a_config_or_say_why_not(models):
    for m in models:
        if m["family"] == "tf2-classification":
            assert m["sample_config"] is None and m["sample_config_note"] is None, m["name"]
        elif m["sample_config"] is not None:
            assert m["sample_config_note"] is None, m["name"]


def test_internal_centernet_resnet50_v2_config_is_not_used(models):
    by_name = {m["name"]: m for m in models}
    entry = by_name["centernet_resnet50_v2_512x512_coco17_tpu-8"]
    assert entry["sample_config"] is None
    assert "internal" in entry["sample_config_note"]


def test_sample_config_matches_meta_and_extractor(models):
    for m in _with_config(models):
        meta, fe = _config_meta_and_extractor(_config_file(m).read_text(encoding="utf-8"))
        assert meta is not None and fe is not None, m["name"]
        assert m["meta_architecture"] == meta, m["name"]
        assert m["feature_extractor"] == fe, m["name"]


def test_sample_configs_quote_their_placeholders(models):
    # The stale centernet_hg104_* files write PATH_TO_BE_CONFIGURED unquoted;
    # the registry must point at the current centernet_hourglass104_* ones.
    for m in _with_config(models):
        text = _config_file(m).read_text(encoding="utf-8")
        assert not re.search(r":\s*PATH_TO_BE_CONFIGURED", text), m["name"]


# --- per-family value rules -----------------------------------------------


def test_meta_architecture_values(models):
    for m in models:
        if m["family"] == "tf2-detection":
            assert m["meta_architecture"] in {"ssd", "faster_rcnn", "center_net"}, m["name"]
        elif m["family"] == "tf2-classification":
            assert m["meta_architecture"] is None, m["name"]
            assert m["feature_extractor"] is None, m["name"]
        else:
            assert m["meta_architecture"] in {None, "ssd", "faster_rcnn", "rfcn"}, m["name"]


def test_checkpoint_prefix_rules(models):
    for m in models:
        if m["family"] == "tf2-detection":
            assert m["checkpoint"] == "checkpoint/ckpt-0", m["name"]
        elif m["family"] == "tf2-classification":
            assert m["checkpoint"] is None, m["name"]
        else:
            match = TF1_DOCUMENTED_URL_RE.match(m["url"])
            if match and match.group(1) == m["name"]:
                assert m["checkpoint"] == "model.ckpt", m["name"]
            else:
                assert m["checkpoint"] is None, m["name"]


def _resizer_size(text):
    """[height, width] of a fixed_shape_resizer, [min, max] of a keep_aspect_ratio_resizer."""
    text = _strip_comment_lines(text)
    block = re.search(r"(fixed_shape|keep_aspect_ratio)_resizer\s*:?\s*\{([^}]*)\}", text)
    if block is None:
        return None
    fields = dict(re.findall(r"(\w+)\s*:\s*(\d+)", block[2]))
    keys = ("height", "width") if block[1] == "fixed_shape" else ("min_dimension", "max_dimension")
    return [int(fields[k]) for k in keys]


def test_input_size_is_the_sample_configs_resizer(models):
    for m in models:
        size = m["input_size"]
        if m["family"] == "tf2-classification":
            assert size is None, m["name"]
        elif m["sample_config"] is not None:
            assert size == _resizer_size(_config_file(m).read_text(encoding="utf-8")), m["name"]
        elif HXW_RE.search(m["name"]):
            hxw = HXW_RE.search(m["name"])
            assert size == [int(hxw.group(1)), int(hxw.group(2))], m["name"]
        if size is not None:
            assert len(size) == 2 and all(type(v) is int and v > 0 for v in size)
    by_name = {m["name"]: m for m in models}
    assert by_name["efficientdet_d0_coco17_tpu-32"]["input_size"] == [512, 512]
    assert by_name["efficientdet_d6_coco17_tpu-32"]["input_size"] == [1408, 1408]
    assert by_name["efficientdet_d7_coco17_tpu-32"]["input_size"] == [1536, 1536]
    assert by_name["ssd_mobilenet_v2_320x320_coco17_tpu-8"]["input_size"] == [300, 300]


def test_display_name_keeps_the_tables_title(models):
    by_name = {m["name"]: m for m in models}
    assert by_name["efficientdet_d6_coco17_tpu-32"]["display_name"] == "EfficientDet D6 1280x1280"
    assert by_name["ssd_mobilenet_v2_320x320_coco17_tpu-8"]["display_name"] == "SSD MobileNet v2 320x320"
    for m in models:
        title = m["display_name"]
        assert (title is not None) == (m["family"] == "tf2-detection"), m["name"]
        name_size = HXW_RE.search(m["name"])
        if title and name_size:  # what users search for stays findable
            assert f"{name_size[1]}x{name_size[2]}" in title, m["name"]


MOBILE_COLUMNS = {
    "ssdlite_mobiledet_cpu_320x320_coco_2020_05_19": ("Pixel 1", None),
    "ssd_mobilenet_v2_mnasfpn_shared_box_predictor_320x320_coco_sync_2020_05_18": ("Pixel 1", None),
    "ssd_mobilenet_v3_large_coco_2020_01_14": ("Pixel 1", None),
    "ssd_mobilenet_v3_small_coco_2020_01_14": ("Pixel 1", None),
    "ssdlite_mobiledet_edgetpu_320x320_coco_2020_05_19": ("Pixel 4 Edge TPU", "COCO mAP (fp32/uint8)"),
    "ssdlite_mobilenet_edgetpu_coco_quant": ("Pixel 4 Edge TPU", "COCO mAP (fp32/uint8)"),
    "ssdlite_mobiledet_dsp_320x320_coco_2020_05_19": ("Pixel 4 DSP", "COCO mAP (fp32/uint8)"),
    "spaghettinet_edgetpu_s_2021_10_13": ("Pixel 6 Edge TPU", "COCO 2017 mAP (uint8)"),
    "spaghettinet_edgetpu_m_2021_10_13": ("Pixel 6 Edge TPU", "COCO 2017 mAP (uint8)"),
    "spaghettinet_edgetpu_l_2021_10_13": ("Pixel 6 Edge TPU", "COCO 2017 mAP (uint8)"),
    "faster_rcnn_resnet101_snapshot_serengeti_2020_06_10": (None, "COCO mAP@0.5"),
    "context_rcnn_resnet101_snapshot_serengeti_2020_06_10": (None, "COCO mAP@0.5"),
}


def test_speed_and_map_name_the_column_they_came_from(models):
    for m in models:
        assert (m["speed_device"], m["metric"]) == MOBILE_COLUMNS.get(m["name"], (None, None)), m["name"]


def test_no_sign_in_urls(models):
    for m in models:
        assert "storage.cloud.google.com" not in m["url"], m["name"]


def test_no_hash_or_size_invented(models):
    for m in models:
        assert m["sha256"] is None, m["name"]
        assert m["size"] is None, m["name"]
