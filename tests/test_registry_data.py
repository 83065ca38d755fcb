"""Data checks for registry.json against the published zoo tables and the
TF2 sample configs copied in tests/data (see tests/data/tf2_sample_configs/SOURCE.md).

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

FAMILIES = ["tf2-detection", "tf2-classification", "tf1-detection"]
EXPECTED_COUNTS = {"tf2-detection": 43, "tf2-classification": 14, "tf1-detection": 47}
MODEL_KEYS = [
    "name", "aliases", "family", "url", "checkpoint", "sample_config",
    "meta_architecture", "feature_extractor", "input_size", "coco_map",
    "speed_ms", "outputs", "sha256", "size",
]
CONFIG_PREFIX = "research/object_detection/configs/tf2/"
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
    return json.loads((DATA / "zoo_tables.json").read_text(encoding="utf-8"))


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


def test_640_variant_is_default_where_one_exists(registry, models):
    sizes = {m["name"]: m["input_size"] for m in models}
    claims = _claims(models)
    for alias, target in registry["defaults"].items():
        if any(sizes[n] == [640, 640] for n in claims[alias]):
            assert sizes[target] == [640, 640], alias


# --- sample configs -------------------------------------------------------


def test_sample_config_urls_pinned_to_source_commit(models, source_commits):
    seen = 0
    for m in models:
        sc = m["sample_config"]
        if sc is None:
            continue
        seen += 1
        assert m["family"] == "tf2-detection", m["name"]
        assert list(sc) == ["path", "url"], m["name"]
        assert sc["path"].startswith(CONFIG_PREFIX), m["name"]
        fname = sc["path"][len(CONFIG_PREFIX):]
        assert "/" not in fname and fname.endswith(".config")
        assert (CONFIGS / fname).is_file(), fname
        match = RAW_URL_RE.match(sc["url"])
        assert match, sc["url"]
        assert match.group(1) == source_commits[fname], m["name"]
        assert match.group(2) == sc["path"], m["name"]
    assert seen > 0


def test_sample_config_only_for_tf2_detection(models):
    for m in models:
        if m["family"] != "tf2-detection":
            assert m["sample_config"] is None, m["name"]


def test_sample_config_matches_meta_and_extractor(models):
    for m in models:
        sc = m["sample_config"]
        if sc is None:
            continue
        fname = sc["path"][len(CONFIG_PREFIX):]
        meta, fe = _config_meta_and_extractor((CONFIGS / fname).read_text(encoding="utf-8"))
        assert meta is not None and fe is not None, fname
        assert m["meta_architecture"] == meta, m["name"]
        assert m["feature_extractor"] == fe, m["name"]


def test_sample_configs_quote_their_placeholders(models):
    # The stale centernet_hg104_* files write PATH_TO_BE_CONFIGURED unquoted;
    # the registry must point at the current centernet_hourglass104_* ones.
    for m in models:
        sc = m["sample_config"]
        if sc is None:
            continue
        text = (CONFIGS / sc["path"][len(CONFIG_PREFIX):]).read_text(encoding="utf-8")
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


def test_input_size(models):
    for m in models:
        size = m["input_size"]
        hxw = HXW_RE.search(m["name"])
        if m["family"] == "tf2-classification":
            assert size is None, m["name"]
        elif hxw:
            assert size == [int(hxw.group(1)), int(hxw.group(2))], m["name"]
        if size is not None:
            assert len(size) == 2 and all(type(v) is int and v > 0 for v in size)
    by_name = {m["name"]: m for m in models}
    assert by_name["efficientdet_d0_coco17_tpu-32"]["input_size"] == [512, 512]
    assert by_name["efficientdet_d6_coco17_tpu-32"]["input_size"] == [1280, 1280]
    assert by_name["efficientdet_d7_coco17_tpu-32"]["input_size"] == [1536, 1536]


def test_no_hash_or_size_invented(models):
    for m in models:
        assert m["sha256"] is None, m["name"]
        assert m["size"] is None, m["name"]
