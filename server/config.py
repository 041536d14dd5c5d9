"""The relay's configuration: read once, validated, frozen.

Sources, later ones winning: built-in defaults, ``relay.toml`` in the data
directory, the environment file ``/etc/sealdrop-relay/env`` (or the one
``SEALDROP_RELAY_ENV_FILE`` names), then environment variables
``SEALDROP_RELAY_<FIELD>`` (field name upper-cased, e.g.
``SEALDROP_RELAY_DATABASE_URL``). Unknown keys in either file are refused, so a
typo never silently falls back to a default.

Why the relay reads the environment file itself: systemd passes it only to
the units that name it, and an operator's shell to none. A database URL kept
there was invisible to the backup unit and to manual commands, which then fell
back to an empty SQLite database. Read by every command, it is one
configuration whoever runs it.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from sealdrop.crypto.protocol import MIN_CHUNK_SIZE

from . import s3url
from .errors import ConfigError

CONFIG_NAME = "relay.toml"
DB_NAME = "relay.db"
BLOB_DIR = "blobs"
LOG_KEY_NAME = "log-key"
ENV_PREFIX = "SEALDROP_RELAY_"
ENV_FILE = Path("/etc/sealdrop-relay/env")
ENV_FILE_VAR = ENV_PREFIX + "ENV_FILE"
# Names the environment file may hold that are not settings: the data folder
# (chosen before the file is read) and the file's own name.
_ENV_FILE_EXTRA = {ENV_PREFIX + "DATA", ENV_FILE_VAR}
MiB = 1024 * 1024
DAY = 86400


@dataclass(frozen=True, slots=True)
class WitnessConfig:
    """A tlog-witness the relay asks to cosign its checkpoints (``[[witness]]``)."""

    url: str  # the submission prefix: POST {url}/add-checkpoint
    vkey: str  # its cosignature vkey (type 0x04), to keep only its valid cosignatures


@dataclass(frozen=True, slots=True, kw_only=True)
class RelayConfig:
    data_dir: Path
    database_url: str = ""  # empty: SQLite file relay.db in data_dir
    # Empty: files under data_dir/blobs. "s3://BUCKET/PREFIX": an S3-compatible
    # object store (server.s3blobs), at s3_endpoint ("" for AWS) in s3_region.
    blobs: str = ""
    s3_endpoint: str = ""
    s3_region: str = ""
    # The longest the object store may take to accept a connection or to
    # answer (server.s3faults); each S3 call is tried up to 3 times.
    s3_timeout_seconds: float = 20.0
    host: str = "127.0.0.1"
    port: int = 8780
    default_expiry_seconds: int = 30 * DAY
    max_expiry_seconds: int = 30 * DAY
    max_transfer_bytes: int = 8 * 1024 * MiB
    quota_bytes: int = 50 * 1024 * MiB  # per account: sum of its live transfers
    max_chunk_bytes: int = 16 * MiB
    max_json_bytes: int = 64 * 1024
    max_recipients: int = 64
    clock_skew_seconds: int = 300
    rate_per_second: float = 50.0  # per account, token bucket refill
    rate_burst: int = 200
    abandoned_upload_seconds: int = DAY
    invite_ttl_seconds: int = 14 * DAY
    gc_interval_seconds: int = 3600
    log_level: str = "info"
    # Reverse proxies whose X-Forwarded-For the relay believes (CIDR blocks).
    # Empty: the connection's peer address is the client, whatever the header says.
    trusted_proxies: tuple[str, ...] = ()
    # Witnesses asked to cosign each new checkpoint (server.witnessing); none by default.
    witness: tuple[WitnessConfig, ...] = ()
    # Slow clients: request line and headers must arrive whole within
    # header_timeout_seconds; a JSON body within body_timeout_seconds; an upload
    # chunk may pause at most body_timeout_seconds and must average at least
    # min_body_bytes_per_second after that grace.
    header_timeout_seconds: float = 60.0
    body_timeout_seconds: float = 60.0
    min_body_bytes_per_second: int = 16 * 1024
    # The transparency log (docs/transparency.md): its origin line (empty:
    # "sealdrop.invalid/<relay id>") and its Ed25519 note key (empty:
    # DATA/log-key, made by `init` or the first start). Every process serving
    # one database must use the same key file.
    log_origin: str = ""
    log_key_file: str = ""

    @property
    def db_url(self) -> str:
        """The SQLAlchemy async URL (driver filled in)."""
        url = self.database_url or f"sqlite:///{self.data_dir / DB_NAME}"
        return async_url(url)

    @property
    def is_sqlite(self) -> bool:
        return self.db_url.startswith("sqlite")

    @property
    def sqlite_path(self) -> Path | None:
        if not self.is_sqlite:
            return None
        return Path(self.db_url.split(":///", 1)[1])

    @property
    def log_key_path(self) -> Path:
        return Path(self.log_key_file) if self.log_key_file else self.data_dir / LOG_KEY_NAME

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / BLOB_DIR

    @property
    def s3(self) -> s3url.S3Location | None:
        """Where the S3 blob store is; None for files in the data folder."""
        if not self.blobs:
            return None
        return s3url.parse(self.blobs, endpoint=self.s3_endpoint, region=self.s3_region)

    def replace(self, **changes: object) -> RelayConfig:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


def async_url(url: str) -> str:
    """``postgresql://`` → ``postgresql+asyncpg://``, ``sqlite://`` → ``sqlite+aiosqlite://``."""
    for plain, driver in (
        ("postgresql://", "postgresql+asyncpg://"),
        ("postgres://", "postgresql+asyncpg://"),
        ("sqlite://", "sqlite+aiosqlite://"),
    ):
        if url.startswith(plain):
            url = driver + url[len(plain) :]
            break
    if url.startswith("postgresql+asyncpg://"):
        return _asyncpg_tls(url)
    if url.startswith("sqlite+aiosqlite://"):
        return url
    raise ConfigError("database_url must start with postgresql:// or sqlite:///")


# libpq's TLS modes, which asyncpg takes as its ``ssl`` argument.
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
# libpq URL parameters naming TLS files: asyncpg takes them only from the
# environment (PGSSLROOTCERT, ...), and would fail on them with a traceback.
_SSL_FILE_PARAMS = {
    "sslrootcert": "PGSSLROOTCERT",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "sslcrl": "PGSSLCRL",
    "sslpassword": "PGSSLPASSWORD",
}


def _asyncpg_tls(url: str) -> str:
    """A libpq-style ``?sslmode=`` becomes asyncpg's ``?ssl=``; TLS file
    parameters are refused with the environment variable that does the same."""
    base, sep, query = url.partition("?")
    if not sep:
        return url
    params = []
    for item in query.split("&"):
        key, _, value = item.partition("=")
        if key in _SSL_FILE_PARAMS:
            raise ConfigError(
                f"database_url: {key}= is not supported in the url; set "
                f"{_SSL_FILE_PARAMS[key]} in the relay's environment instead"
            )
        if key in ("sslmode", "ssl"):
            if value not in SSL_MODES:
                raise ConfigError(
                    f"database_url: {key}={value} is not a tls mode; use one of "
                    + ", ".join(SSL_MODES)
                )
            item = f"ssl={value}"
        params.append(item)
    return base + "?" + "&".join(params)


# A checkpoint's first line (C2SP tlog-checkpoint): a schemeless URL prefix,
# host[:port][/path], ASCII, no spaces or '+' (it also names the log's note
# key, and a key name may not hold '+'), short.
_ORIGIN_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9.\-]*(:[0-9]{1,5})?(/[A-Za-z0-9._~\-]+)*")

_FIELDS = {f.name: f for f in dataclasses.fields(RelayConfig)}
_FIELDS.pop("data_dir")


_KIND_NAMES = {
    "tuple[str, ...]": 'a list of network blocks, e.g. ["127.0.0.1/32", "10.0.0.0/8"]',
    "tuple[WitnessConfig, ...]": 'tables [[witness]] with url = "https://..." and '
    'vkey = "NAME+ID+KEY" (in the environment: "URL VKEY" pairs, comma-separated)',
}


def _coerce(name: str, value: object, source: str) -> object:
    kind = _FIELDS[name].type
    try:
        if kind == "int":
            if isinstance(value, bool):
                raise ValueError
            out: object = int(value)  # type: ignore[call-overload]
        elif kind == "float":
            if isinstance(value, bool):
                raise ValueError
            out = float(value)  # type: ignore[arg-type]
        elif kind == "tuple[str, ...]":
            out = _networks(value)
        elif kind == "tuple[WitnessConfig, ...]":
            out = _witnesses(value)
        else:
            if not isinstance(value, str):
                raise ValueError
            out = value
    except (TypeError, ValueError):
        what = _KIND_NAMES.get(str(kind), str(kind))
        raise ConfigError(f"{source}: {name} must be {what}") from None
    return out


def _networks(value: object) -> tuple[str, ...]:
    """A list of CIDR blocks (TOML array, or comma-separated in the environment)."""
    if isinstance(value, str):
        items: list[object] = [v.strip() for v in value.split(",") if v.strip()]
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        raise ValueError
    out = []
    for item in items:
        if not isinstance(item, str):
            raise ValueError
        # strict=False: "10.0.0.1/8" means the block 10.0.0.0/8, as in nginx's set_real_ip_from.
        out.append(str(ipaddress.ip_network(item.strip(), strict=False)))
    return tuple(out)


def _witnesses(value: object) -> tuple[WitnessConfig, ...]:
    """``[[witness]]`` tables, or "URL VKEY" pairs comma-separated in the environment."""
    from urllib.parse import urlsplit

    from sealdrop.crypto.errors import SealdropCryptoError
    from sealdrop.crypto.tlog.cosignature import CosignatureVerifier

    if isinstance(value, str):
        pairs = [item.split() for item in value.split(",") if item.strip()]
        items: list[object] = [{"url": p[0], "vkey": p[1]} if len(p) == 2 else None
                               for p in pairs]
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        raise ValueError
    out = []
    for item in items:
        if not isinstance(item, dict) or set(item) != {"url", "vkey"}:
            raise ValueError
        url, vkey = item["url"], item["vkey"]
        if not isinstance(url, str) or not isinstance(vkey, str):
            raise ValueError
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
            raise ValueError
        try:
            CosignatureVerifier.from_vkey(vkey)
        except (SealdropCryptoError, ValueError):
            raise ValueError from None
        out.append(WitnessConfig(url=url.rstrip("/"), vkey=vkey))
    return tuple(out)


def _validate(cfg: RelayConfig) -> RelayConfig:
    positive = [
        "default_expiry_seconds",
        "max_expiry_seconds",
        "max_transfer_bytes",
        "quota_bytes",
        "max_chunk_bytes",
        "max_json_bytes",
        "max_recipients",
        "clock_skew_seconds",
        "rate_burst",
        "abandoned_upload_seconds",
        "invite_ttl_seconds",
        "gc_interval_seconds",
        "header_timeout_seconds",
        "body_timeout_seconds",
        "min_body_bytes_per_second",
        "s3_timeout_seconds",
    ]
    for name in positive:
        if getattr(cfg, name) <= 0:
            raise ConfigError(f"configuration: {name} must be positive")
    if cfg.rate_per_second <= 0:
        raise ConfigError("configuration: rate_per_second must be positive")
    for name in ("header_timeout_seconds", "body_timeout_seconds", "s3_timeout_seconds"):
        # nan slips past "<= 0", and inf would mean no timeout at all.
        if not math.isfinite(getattr(cfg, name)):
            raise ConfigError(f"configuration: {name} must be a finite number of seconds")
    if cfg.default_expiry_seconds > cfg.max_expiry_seconds:
        raise ConfigError("configuration: default_expiry_seconds exceeds max_expiry_seconds")
    if not 0 <= cfg.port <= 65535:
        raise ConfigError("configuration: port must be 0-65535")
    if cfg.max_chunk_bytes > 256 * MiB:
        raise ConfigError("configuration: max_chunk_bytes must be at most 256 MiB")
    if cfg.max_chunk_bytes < MIN_CHUNK_SIZE:
        # Clients adapt their chunks down to the relay's limit, but not below this.
        raise ConfigError(
            f"configuration: max_chunk_bytes must be at least {MIN_CHUNK_SIZE} (64 KiB), "
            "the smallest chunk clients upload"
        )
    if cfg.log_level.lower() not in {"debug", "info", "warning", "error"}:
        raise ConfigError("configuration: log_level must be debug, info, warning or error")
    if cfg.log_origin and not (
        len(cfg.log_origin) <= 200 and _ORIGIN_RE.fullmatch(cfg.log_origin)
    ):
        raise ConfigError(
            "configuration: log_origin must be the relay's address without scheme, like "
            "relay.example.net/sealdrop (host, optional :port and /path; no https://, no "
            "spaces, no trailing slash)"
        )
    cfg.db_url  # noqa: B018 - validates the URL scheme
    if cfg.s3 is not None and cfg.max_chunk_bytes < s3url.MIN_PART_BYTES:
        raise ConfigError(
            f"configuration: max_chunk_bytes must be at least {s3url.MIN_PART_BYTES} (5 MiB) "
            "with S3 blobs, S3's smallest multipart part"
        )
    return cfg


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines as systemd's EnvironmentFile reads them (``#`` comments,
    optional quotes); only ``SEALDROP_RELAY_*`` keys, each one known."""
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        return {}
    except PermissionError:
        # Refused, not skipped: skipping would lose the database URL it may hold.
        raise ConfigError(
            f"{path}: cannot read the environment file as this user; make it readable by "
            f"the relay's user (chown root:sealdrop {path}; chmod 0640 {path})"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the environment file: {exc}") from exc
    known = {ENV_PREFIX + k.upper() for k in _FIELDS} | _ENV_FILE_EXTRA
    out: dict[str, str] = {}
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        key, sep, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if key.startswith("export "):
            key = key[len("export "):].strip()
        if not sep or not key:
            raise ConfigError(f"{path}:{n}: expected NAME=value")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        if not key.startswith(ENV_PREFIX):
            continue  # other programs' settings may share the file
        if key not in known:
            raise ConfigError(f"{path}:{n}: unknown setting {key}")
        out[key] = value
    return out


def load_config(
    data_dir: Path | str,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, object] | None = None,
) -> RelayConfig:
    """Defaults, then ``DATA/relay.toml``, the environment file, the environment,
    then ``overrides``. An explicit ``env`` (tests) reads an environment file only
    if it names one in ``SEALDROP_RELAY_ENV_FILE``."""
    data = Path(data_dir).absolute()
    if env is None:
        env = os.environ
        env_file: Path | None = Path(env.get(ENV_FILE_VAR) or ENV_FILE)
    else:
        env_file = Path(env[ENV_FILE_VAR]) if env.get(ENV_FILE_VAR) else None
    file_env = read_env_file(env_file) if env_file is not None else {}
    values: dict[str, object] = {}
    path = data / CONFIG_NAME
    if path.exists():
        try:
            raw = tomllib.loads(path.read_text("utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
        for key, value in raw.items():
            if key not in _FIELDS:
                raise ConfigError(f"{path}: unknown setting {key!r}")
            values[key] = _coerce(key, value, str(path))
    for source in (file_env, env):
        for key in _FIELDS:
            env_key = ENV_PREFIX + key.upper()
            if env_key in source:
                where = f"{env_file}: {env_key}" if source is file_env else env_key
                values[key] = _coerce(key, source[env_key], where)
    for key, value in (overrides or {}).items():
        if key not in _FIELDS:
            raise ConfigError(f"unknown setting {key!r}")
        if value is not None:
            values[key] = _coerce(key, value, "command line")
    return _validate(RelayConfig(data_dir=data, **values))  # type: ignore[arg-type]


DEFAULT_CONFIG_TEXT = """\
# sealdrop-relay configuration. Every setting can also be given as
# SEALDROP_RELAY_<NAME> (e.g. SEALDROP_RELAY_DATABASE_URL) in the environment
# file /etc/sealdrop-relay/env, which every command and unit reads, or in the
# environment; both win over this file. Sizes in bytes, durations in seconds.

# Empty: SQLite file relay.db next to this file. For PostgreSQL:
# database_url = "postgresql://sealdrop@db.internal/sealdrop"
database_url = ""
# Empty: blob files in blobs/ next to this file. For S3-compatible object
# storage (docs/operations.md, "Object storage (S3)"); credentials come only
# from the AWS variables or files in the relay's environment, never from here:
# blobs = "s3://sealdrop-blobs/relay1"
# s3_endpoint = "https://s3.example.net"   # empty for AWS itself
# s3_region = "eu-west-1"
# s3_timeout_seconds = 20.0   # to connect, and for each answer (3 tries)
blobs = ""
host = "127.0.0.1"
port = 8780
default_expiry_seconds = 2592000   # 30 days
max_expiry_seconds = 2592000
max_transfer_bytes = 8589934592    # 8 GiB
quota_bytes = 53687091200          # 50 GiB per account
max_chunk_bytes = 16777216         # 16 MiB
rate_per_second = 50.0
rate_burst = 200
abandoned_upload_seconds = 86400
invite_ttl_seconds = 1209600       # 14 days
gc_interval_seconds = 3600
log_level = "info"

# Behind a reverse proxy: the proxies whose X-Forwarded-For is believed, so
# that registrations are rate-limited per real client, not per proxy.
# trusted_proxies = ["127.0.0.1/32", "::1/128"]
trusted_proxies = []
header_timeout_seconds = 60.0      # request line and headers, whole; idle keep-alive
body_timeout_seconds = 60.0        # a JSON body, whole; the longest pause in an upload
min_body_bytes_per_second = 16384  # an upload chunk's slowest average, after that grace

# The transparency log (docs/transparency.md). Empty origin:
# "sealdrop.invalid/<relay id>"; set it to the relay's public name before
# clients pin it. Empty key file: log-key next to this file. Every relay
# process on one database must read the same key file.
log_origin = ""
log_key_file = ""
"""
