"""HTTPS always: the zoo's hosts are fetched over TLS even where the registry
says http://, against a local server with a certificate from a test CA that
plays download.tensorflow.org through the test-only ZOO_TEST_HOST_MAP."""

from __future__ import annotations

import datetime
import json
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from conftest import CONFIG_PATH, MODEL, SAMPLE_CONFIGS, TARBALL_PATH, Zoo, clean_env, model_entry
from httpserver import FileServer
from tarballs import sha256_of
from zoo.settings import CA_BUNDLE_VARIABLES, Settings
from zoo.sources import Pin, candidate_urls, https_url, mirror_relative, plan_sources

ZOO_HOST = "download.tensorflow.org"
CONFIG_HOST = "raw.githubusercontent.com"
REGISTRY_URL = f"http://{ZOO_HOST}{TARBALL_PATH}"  # as the zoo table writes it
CONFIG_URL = f"https://{CONFIG_HOST}{CONFIG_PATH}"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def tls_server(cert: trustme.LeafCert, tarball: Path) -> FileServer:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(context)
    return serving(FileServer(tls=context), tarball)


def serving(server: FileServer, tarball: Path) -> FileServer:
    server.add(TARBALL_PATH, tarball.read_bytes())
    server.add(CONFIG_PATH, (SAMPLE_CONFIGS / f"{MODEL}.config").read_bytes())
    return server


@pytest.fixture
def plain(tarball: Path) -> Iterator[FileServer]:
    """What port 80 of the zoo's host would answer: never asked unless plain HTTP is allowed."""
    with serving(FileServer(), tarball) as server:
        yield server


@pytest.fixture
def secure(ca: trustme.CA, tarball: Path) -> Iterator[FileServer]:
    with tls_server(ca.issue_cert(ZOO_HOST, CONFIG_HOST), tarball) as server:
        yield server


def zoo_for(tmp_path: Path, ca: trustme.CA, secure: FileServer, plain: FileServer) -> Zoo:
    """A zoo whose registry names the real hosts, which resolve to the local servers only."""
    zoo = Zoo(tmp_path, clean_env(tmp_path))
    zoo.write_registry([model_entry(secure, url=REGISTRY_URL, sample_config={"path": "x.config", "url": CONFIG_URL})])
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    for name in CA_BUNDLE_VARIABLES:  # the test CA alone, whatever the host trusts
        zoo.env.pop(name, None)
    zoo.env.update(
        ZOO_REGISTRY=str(zoo.registry),
        REQUESTS_CA_BUNDLE=str(ca_file),
        ZOO_TEST_HOST_MAP=",".join([
            f"{ZOO_HOST}:443=127.0.0.1:{secure.server_port}",
            f"{CONFIG_HOST}:443=127.0.0.1:{secure.server_port}",
            f"{ZOO_HOST}:80=127.0.0.1:{plain.server_port}",
        ]),
    )  # fmt: skip
    return zoo


def gets(server: FileServer) -> list[tuple[str, bool, str | None]]:
    return [(r.path, r.tls, r.host) for r in server.requests if r.method == "GET"]


@pytest.mark.timeout(120)
def test_an_http_zoo_url_is_fetched_over_tls_and_plain_http_never_tried(
    tmp_path: Path, ca: trustme.CA, secure: FileServer, plain: FileServer, tarball: Path
):
    zoo = zoo_for(tmp_path, ca, secure, plain)
    result = zoo.run("fetch", MODEL, "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["sha256"] == sha256_of(tarball)
    assert gets(secure) == [(TARBALL_PATH, True, ZOO_HOST), (CONFIG_PATH, True, CONFIG_HOST)]
    assert plain.requests == []
    marker = json.loads((zoo.cache / "models" / MODEL / "zoo-entry.json").read_text())
    # The registry's URL stays the model's identity; only the connection changed.
    assert (marker["upstream_url"], marker["url"]) == (REGISTRY_URL, "https" + REGISTRY_URL[4:])


@pytest.mark.timeout(120)
def test_ssl_cert_file_is_honoured_like_requests_ca_bundle(
    tmp_path: Path, ca: trustme.CA, secure: FileServer, plain: FileServer
):
    zoo = zoo_for(tmp_path, ca, secure, plain)
    zoo.env["SSL_CERT_FILE"] = zoo.env.pop("REQUESTS_CA_BUNDLE")
    result = zoo.run("fetch", MODEL)
    assert result.returncode == 0, result.stderr
    assert gets(secure)[0] == (TARBALL_PATH, True, ZOO_HOST)


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("flag", "env"), [((), {"ZOO_ALLOW_HTTP": "1"}), (("--allow-http",), {})])
def test_allow_http_fetches_plain_http_with_a_warning(
    tmp_path: Path, ca: trustme.CA, secure: FileServer, plain: FileServer, flag: tuple[str, ...], env: dict[str, str]
):
    zoo = zoo_for(tmp_path, ca, secure, plain)
    result = zoo.run("fetch", MODEL, *flag, **env)
    assert result.returncode == 0, result.stderr
    assert gets(plain) == [(TARBALL_PATH, False, ZOO_HOST)]
    assert [path for path, _tls, _host in gets(secure)] == [CONFIG_PATH]  # already https in the registry
    assert f"{REGISTRY_URL}: plain HTTP as --allow-http / ZOO_ALLOW_HTTP asks" in result.stderr


def expired(ca: trustme.CA) -> trustme.LeafCert:
    now = datetime.datetime.now(datetime.timezone.utc)
    day = datetime.timedelta(days=1)
    return ca.issue_cert(ZOO_HOST, not_before=now - 30 * day, not_after=now - day)


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("issue", "cause"),
    [
        (expired, "certificate expired"),
        (lambda ca: trustme.CA().issue_cert(ZOO_HOST), "unknown issuer"),
        (lambda ca: ca.issue_cert("elsewhere.example"), "hostname mismatch"),
    ],
    ids=["expired", "unknown-issuer", "hostname-mismatch"],
)
def test_a_bad_certificate_is_one_line_naming_host_cause_and_variable(
    tmp_path: Path, ca: trustme.CA, plain: FileServer, tarball: Path, issue, cause: str
):
    with tls_server(issue(ca), tarball) as bad:
        zoo = zoo_for(tmp_path, ca, bad, plain)
        result = zoo.run("fetch", MODEL)
        assert result.returncode == 5, result.stderr
        (line,) = result.stderr.strip().splitlines()
        assert f"TLS failure with {ZOO_HOST}: {cause}; " in line
        assert "set REQUESTS_CA_BUNDLE (or SSL_CERT_FILE)" in line
        bad.wait_idle()
        assert bad.requests == [] and bad.tls_refused == 1  # refused once: the same certificate next time
        assert plain.requests == []
        assert zoo.published() == []


def test_https_url_upgrades_the_zoo_hosts_only():
    assert https_url(REGISTRY_URL) == "https" + REGISTRY_URL[4:]
    assert https_url("http://storage.googleapis.com/b/o.tar.gz") == "https://storage.googleapis.com/b/o.tar.gz"
    assert https_url("http://download.tensorflow.org:80/x") == "https://download.tensorflow.org/x"
    for unchanged in ("http://download.tensorflow.org:8080/x", "http://mirror.internal:8000/x",
                      "https://download.tensorflow.org/x", "/srv/mirror/x", "s3://bucket/x"):  # fmt: skip
        assert https_url(unchanged) == unchanged


def test_mirrors_stay_as_given_and_keep_the_registry_layout():
    urls = candidate_urls(REGISTRY_URL, ["http://mirror.internal:8000"], offline=False)
    assert urls == [f"http://mirror.internal:8000/{ZOO_HOST}{TARBALL_PATH}", "https" + REGISTRY_URL[4:]]
    assert mirror_relative(REGISTRY_URL) == ZOO_HOST + TARBALL_PATH
    assert candidate_urls(REGISTRY_URL, [], offline=False, allow_http=True) == [REGISTRY_URL]


def test_plan_sources_fetches_upstream_over_https(tmp_path: Path):
    settings = Settings.from_env(cache_dir=tmp_path, env={})
    assert [s.url for s in plan_sources(REGISTRY_URL, Pin(), settings)] == ["https" + REGISTRY_URL[4:]]
    allowed = Settings.from_env(cache_dir=tmp_path, allow_http=True, env={})
    assert [s.url for s in plan_sources(REGISTRY_URL, Pin(), allowed)] == [REGISTRY_URL]
    assert Settings.from_env(cache_dir=tmp_path, env={"ZOO_ALLOW_HTTP": "1"}).allow_http
