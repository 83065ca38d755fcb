"""Library callers catch zoo's errors as the standard exceptions they are and
read what went wrong from attributes, never from the message."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import MODEL, TARBALL_PATH, Zoo, model_entry
from httpserver import FileServer
from tarballs import sha256_of
from zoo import Cache, Settings, fetch
from zoo.errors import IntegrityError, NetworkError, NotCachedError, OfflineMissError, RegistryError, UnknownModelError


def settings_for(zoo: Zoo, registry: Path | None = None, **fields: Any) -> Settings:
    base = Settings(cache_dir=zoo.cache, registry_files=(registry or zoo.registry,), retries=1, backoff=0.01)
    return dataclasses.replace(base, **fields)


@pytest.mark.timeout(60)
def test_a_missing_file_is_a_connection_error_with_its_url_and_status(zoo: Zoo, upstream: FileServer):
    upstream.remove(TARBALL_PATH)
    with pytest.raises(ConnectionError) as caught:
        fetch(MODEL, settings=settings_for(zoo))
    assert isinstance(caught.value, NetworkError)
    assert (caught.value.url, caught.value.status) == (upstream.url_for(TARBALL_PATH), 404)


@pytest.mark.timeout(60)
def test_a_pin_mismatch_is_a_value_error_with_both_hashes(zoo: Zoo, upstream: FileServer, tarball: Path):
    zoo.write_registry([model_entry(upstream, sha256="0" * 64)])
    with pytest.raises(ValueError) as caught:
        fetch(MODEL, settings=settings_for(zoo))
    assert isinstance(caught.value, IntegrityError)
    assert (caught.value.expected, caught.value.actual) == ("0" * 64, sha256_of(tarball))
    assert caught.value.url == upstream.url_for(TARBALL_PATH)


def test_offline_and_uncached_is_file_not_found_naming_the_model(zoo: Zoo):
    with pytest.raises(FileNotFoundError) as caught:
        fetch(MODEL, settings=settings_for(zoo, offline=True))
    assert isinstance(caught.value, OfflineMissError) and caught.value.model == MODEL


def test_a_model_not_in_the_cache_is_file_not_found_naming_it(tmp_path: Path):
    with pytest.raises(FileNotFoundError) as caught:
        Cache(tmp_path).require_entry(MODEL)
    assert isinstance(caught.value, NotCachedError) and caught.value.model == MODEL


def test_an_unknown_name_is_a_lookup_error_with_suggestions(zoo: Zoo):
    with pytest.raises(LookupError) as caught:
        fetch("ssd_resnet50_v1_fpm", settings=settings_for(zoo))
    assert isinstance(caught.value, UnknownModelError)
    assert caught.value.model == "ssd_resnet50_v1_fpm" and "ssd_resnet50_v1_fpn" in caught.value.suggestions


def test_a_broken_registry_file_is_a_value_error_naming_the_file(zoo: Zoo, tmp_path: Path):
    broken = tmp_path / "broken.json"
    broken.write_text('{"format": 1, "models": [')
    with pytest.raises(ValueError) as caught:
        fetch(MODEL, settings=settings_for(zoo, registry=broken))
    assert isinstance(caught.value, RegistryError) and caught.value.path == broken


def test_zoo_fetch_stays_the_function_after_its_module_is_imported():
    # The README's Python API calls zoo.fetch(...) more than once; the lazy
    # exports once handed out the module zoo.fetch on the second access.
    probe = "import zoo; first = zoo.fetch; import zoo.fetch; print(first is zoo.fetch, callable(zoo.fetch))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["True", "True"]


@pytest.mark.parametrize(("variable", "value"), [("ZOO_TIMEOUT", "nan"), ("ZOO_TIMEOUT", "inf"), ("ZOO_TIMEOUT", "1e400"),
                                                 ("ZOO_TIMEOUT", "0"), ("ZOO_RETRIES", "1e30"), ("ZOO_BACKOFF", "nan")])
def test_a_setting_requests_cannot_take_is_a_usage_error_not_a_traceback(zoo: Zoo, variable: str, value: str):
    # These once reached requests as ValueError/OverflowError tracebacks on a download.
    result = zoo.run("fetch", MODEL, **{variable: value})
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith(f"zoo: error: {variable}={value!r} is not a")


def test_output_into_a_missing_directory_names_the_path_given(zoo: Zoo, tmp_path: Path):
    fetched = zoo.run("fetch", MODEL)
    assert fetched.returncode == 0, fetched.stderr
    result = zoo.run("lock", MODEL, "-o", str(tmp_path / "missing" / "zoo.lock"))
    # Not the temporary file the atomic write would have used.
    assert result.returncode == 2
    assert result.stderr == f"zoo: error: cannot write {tmp_path}/missing/zoo.lock: {tmp_path}/missing is not a directory\n"


@pytest.mark.timeout(60)
def test_an_empty_mirror_option_is_no_mirror(zoo: Zoo, upstream: FileServer):
    # --mirror "$UNSET" once made the file-system root a mirror of every file.
    result = zoo.run("fetch", MODEL, "--mirror", "", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["url"] == upstream.url_for(TARBALL_PATH)
    assert "trying the next source" not in result.stderr
