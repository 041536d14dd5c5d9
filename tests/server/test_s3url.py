"""The S3 blob store's configuration (server/s3url.py, server/config.py): what
``blobs`` may say, credentials refused wherever they hide, and the part-size
floor on max_chunk_bytes. Pure: no server."""

from __future__ import annotations

from pathlib import Path

import pytest

from sealdrop.server.config import load_config
from sealdrop.server.errors import ConfigError
from sealdrop.server.s3url import parse


def test_bucket_and_prefix() -> None:
    loc = parse("s3://sealdrop-blobs/relay1/eu", endpoint="https://s3.example.net:9000/",
                region="eu-west-1")
    assert (loc.bucket, loc.prefix, loc.endpoint, loc.region) == (
        "sealdrop-blobs", "relay1/eu/", "https://s3.example.net:9000", "eu-west-1")
    assert loc.url == "s3://sealdrop-blobs/relay1/eu"
    bare = parse("s3://abc")
    assert (bare.prefix, bare.endpoint, bare.url) == ("", "", "s3://abc")


@pytest.mark.parametrize("url", [
    "s3://AKIAXXX:hunter2@bucket/x", "s3://hunter2@bucket/x", "s3://:hunter2@bucket",
])
def test_credentials_in_the_url_are_refused_and_not_repeated(url: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse(url)
    assert "must not hold credentials" in e.value.message
    assert "AWS_ACCESS_KEY_ID" in e.value.message and "hunter2" not in e.value.message


def test_credentials_in_the_endpoint_are_refused() -> None:
    with pytest.raises(ConfigError) as e:
        parse("s3://bucket/x", endpoint="https://key:hunter2@s3.example.net")
    assert "must not hold credentials" in e.value.message and "hunter2" not in e.value.message


@pytest.mark.parametrize("url, what", [
    ("https://bucket/x", "s3://BUCKET"),
    ("s3://ab/x", "not an S3 bucket name"),
    ("s3://Bucket/x", "not an S3 bucket name"),
    ("s3://bucket/x?region=eu", "no ?query"),
    ("s3://bucket/../x", "prefix segment"),
    ("s3://bucket/a b", "prefix segment"),
])
def test_malformed_blobs_are_refused(url: str, what: str) -> None:
    with pytest.raises(ConfigError, match=what.replace("?", r"\?")):
        parse(url)


@pytest.mark.parametrize("endpoint", ["s3.example.net", "ftp://s3.example.net",
                                      "https://s3.example.net/path", "https://"])
def test_malformed_endpoints_are_refused(endpoint: str) -> None:
    with pytest.raises(ConfigError, match="s3_endpoint"):
        parse("s3://bucket", endpoint=endpoint)


def test_config_from_the_environment(tmp_path: Path) -> None:
    cfg = load_config(tmp_path, env={
        "SEALDROP_RELAY_BLOBS": "s3://bucket/p", "SEALDROP_RELAY_S3_ENDPOINT": "http://127.0.0.1:1",
    })
    assert cfg.s3 is not None and cfg.s3.url == "s3://bucket/p"
    assert cfg.s3.endpoint == "http://127.0.0.1:1" and cfg.s3.region == ""
    assert load_config(tmp_path, env={}).s3 is None


def test_s3_needs_chunks_of_at_least_five_mib(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="at least 5242880"):
        load_config(tmp_path, env={"SEALDROP_RELAY_BLOBS": "s3://bucket",
                                   "SEALDROP_RELAY_MAX_CHUNK_BYTES": str(4 << 20)})
    # files take any chunk down to 64 KiB, as before
    assert load_config(tmp_path, env={"SEALDROP_RELAY_MAX_CHUNK_BYTES": str(1 << 20)})


def test_a_bad_blobs_setting_in_relay_toml_names_it(tmp_path: Path) -> None:
    (tmp_path / "relay.toml").write_text('blobs = "s3://x"\n')
    with pytest.raises(ConfigError, match="not an S3 bucket name"):
        load_config(tmp_path, env={})
