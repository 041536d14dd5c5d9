"""The relay connection's plumbing: proxies, the trusted certificate authorities,
and a sentence for every way reaching the relay can fail.

Kept on ``http.client`` (docs/architecture.md, "The relay client's transport",
says why and what was measured): this module adds what a clinic's network
needs to it.

Proxies come from the environment, as curl and most tools take them:
``https_proxy``/``HTTPS_PROXY`` for an https relay, ``http_proxy``/``HTTP_PROXY``
for an http one (lower case first), and ``no_proxy``/``NO_PROXY`` (host names
and their subdomains, IP addresses, CIDR ranges, ``host:port``, ``*``). Every
request goes through the proxy as a CONNECT tunnel, for http relays too: the
signed request reaches the relay byte for byte, and TLS runs end to end, from
this client to the relay, whatever the proxy is.

Trusted authorities: the system's, plus ``SSL_CERT_FILE`` if set, plus the
profile's CA file (``sealdrop config ca-file``). A file that cannot be read is
an error, not silently ignored: a clinic that set one expects it to be used.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import http.client
import io
import ipaddress
import os
import socket
import ssl
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass

from .errors import ClientError

CA_SETTING = "`sealdrop config ca-file PATH`"
_CONNECT_PROBE_SECONDS = 5.0
# OpenSSL's verify codes (X509_V_ERR_*) that mean "signed by an authority this
# computer does not know": the case a private CA explains.
_UNKNOWN_ISSUER = {2, 18, 19, 20, 21}
_EXPIRED, _NOT_YET_VALID, _HOSTNAME_MISMATCH = 10, 9, 62


@dataclass(frozen=True, slots=True)
class Proxy:
    host: str
    port: int
    source: str  # the environment variable it came from
    authorization: str | None = None  # a Proxy-Authorization header value

    @property
    def shown(self) -> str:
        """Where it is, for messages: never its credentials."""
        return f"http://{self.host}:{self.port}"


def _env(env: Mapping[str, str], name: str) -> tuple[str, str] | None:
    for key in (name.lower(), name.upper()):
        value = env.get(key, "").strip()
        if value:
            return key, value
    return None


def bypassed(host: str, port: int, no_proxy: str) -> bool:
    """True if ``no_proxy`` (curl's syntax) says ``host:port`` is reached directly."""
    host = host.lower().strip("[]").rstrip(".")
    try:
        addr: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
    except ValueError:
        addr = None
    for raw in no_proxy.split(","):
        entry = raw.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return True
        name, want_port = entry, None
        if entry.count(":") == 1:  # host:port (an IPv6 entry has several colons)
            name, _, p = entry.partition(":")
            want_port = int(p) if p.isdigit() else None
        elif entry.startswith("[") and "]:" in entry:
            name, _, p = entry[1:].partition("]:")
            want_port = int(p) if p.isdigit() else None
        name = name.strip("[]").rstrip(".")
        if want_port is not None and want_port != port:
            continue
        if addr is not None:
            with contextlib.suppress(ValueError):
                if addr in ipaddress.ip_network(name, strict=False):
                    return True
            continue
        name = name.lstrip("*").lstrip(".")
        if name and (host == name or host.endswith("." + name)):
            return True
    return False


def proxy_for(scheme: str, host: str, port: int,
              env: Mapping[str, str] | None = None) -> Proxy | None:
    """The proxy the environment sets for this relay, or None to connect directly."""
    env = os.environ if env is None else env
    found = _env(env, f"{scheme}_proxy")
    if found is None:
        return None
    no = _env(env, "no_proxy")
    if no is not None and bypassed(host, port, no[1]):
        return None
    source, value = found
    url = urllib.parse.urlsplit(value if "://" in value else f"http://{value}")
    if url.scheme != "http" or not url.hostname:
        raise ClientError(
            f"{source} must be a proxy's http://host:port address, not {url.scheme}://…",
            hint="proxies reached over TLS or SOCKS are not supported; "
                 "ask your IT for the HTTP proxy's address")
    try:
        proxy_port = url.port or 80
    except ValueError as exc:
        raise ClientError(f"{source} has a malformed port", hint="write it as "
                          "http://host:port") from exc
    auth = None
    if url.username is not None:
        pair = (f"{urllib.parse.unquote(url.username)}:"
                f"{urllib.parse.unquote(url.password or '')}")
        auth = "Basic " + base64.b64encode(pair.encode()).decode()
    return Proxy(host=url.hostname, port=proxy_port, source=source, authorization=auth)


def tls_context(ca_file: str | None, env: Mapping[str, str] | None = None) -> ssl.SSLContext:
    """Verify the relay against the system's authorities, SSL_CERT_FILE and ``ca_file``."""
    env = os.environ if env is None else env
    ctx = ssl.create_default_context()
    for path, where in ((env.get("SSL_CERT_FILE", ""), "SSL_CERT_FILE"),
                        (ca_file or "", CA_SETTING)):
        if not path:
            continue
        try:
            ctx.load_verify_locations(cafile=path)
        except (OSError, ssl.SSLError, ValueError) as exc:
            why = _cause(exc) if isinstance(exc, OSError) and exc.strerror else (
                "it holds no PEM certificate")
            raise ClientError(f"cannot use the certificate authority file {path} "
                              f"(set with {where}): {why}",
                              hint="give the path of the CA's certificate in PEM format") \
                from exc
    return ctx


class ProxyRefused(OSError):
    """The proxy answered our CONNECT with something other than 2xx: its status as
    data, so the sentence (407: credentials; anything else: the proxy's admin)
    never depends on how a library words the refusal. An ``OSError`` because it
    fails the connection, as every other way of not reaching the relay does."""

    def __init__(self, status: int, reason: str) -> None:
        # One argument, not two: OSError(a, b) would file the status as an errno.
        super().__init__(f"the proxy answered {status} {reason}".rstrip())
        self.status = status
        self.reason = reason


# http.client's own bounds on an answer's head, for the proxy's answer too.
_MAX_LINE = 65536
_MAX_HEADERS = 100
_MAX_REASON = 100  # of the proxy's reason phrase, repeated in the message


def _authority(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _read_connect_answer(stream: io.RawIOBase) -> tuple[int, str]:
    """The status and reason phrase of a proxy's answer to CONNECT, its header
    lines read and dropped. ``stream`` is unbuffered so that nothing after the
    blank line (the tunnel's first bytes) is taken from the socket."""
    line = stream.readline(_MAX_LINE + 1)
    if not line:
        # What http.client raises when a server hangs up without answering.
        raise http.client.RemoteDisconnected("the proxy closed the connection "
                                             "without answering")
    if len(line) > _MAX_LINE:
        raise http.client.LineTooLong("status line")
    version, _, rest = line.decode("latin-1").rstrip("\r\n").partition(" ")
    code, _, reason = rest.partition(" ")
    if not version.startswith("HTTP/") or len(code) != 3 or not code.isdigit():
        raise http.client.BadStatusLine(line.decode("latin-1"))
    for _ in range(_MAX_HEADERS + 1):
        header = stream.readline(_MAX_LINE + 1)
        if len(header) > _MAX_LINE:
            raise http.client.LineTooLong("header line")
        if header in (b"\r\n", b"\n", b""):
            return int(code), reason.strip()[:_MAX_REASON]
    raise http.client.HTTPException(f"the proxy sent more than {_MAX_HEADERS} headers")


def _ask_tunnel(sock: socket.socket, proxy: Proxy, host: str, port: int) -> None:
    """Ask ``proxy``, connected on ``sock``, for a tunnel to ``host:port``; raises
    ``ProxyRefused`` if it says no. Sent here rather than through http.client's
    ``set_tunnel``, which reports a refusal only as the text of a plain OSError."""
    target = _authority(host, port)
    head = [f"CONNECT {target} HTTP/1.1", f"Host: {target}"]
    if proxy.authorization:
        head.append(f"Proxy-Authorization: {proxy.authorization}")
    sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
    with sock.makefile("rb", buffering=0) as answer:
        status, reason = _read_connect_answer(answer)
    # RFC 9110 section 9.3.6: any 2xx means the proxy now relays bytes.
    if not 200 <= status < 300:
        raise ProxyRefused(status, reason)


class _Tunnelled(http.client.HTTPConnection):
    """An http.client connection whose socket is a CONNECT tunnel through ``proxy``.
    ``host``/``port`` stay the relay's, so the Host header and the certificate
    check name the relay, not the proxy."""

    # Set by open_connection before any connect. Not an __init__ argument: in
    # _TunnelledTLS, HTTPSConnection.__init__ calls the next __init__ in line
    # (this class's) with http.client's own positional arguments.
    proxy: Proxy

    def connect(self) -> None:
        # self.sock is set before the CONNECT is sent, as http.client does: a
        # request's deadline shuts down self.sock, a proxy that sits on the
        # CONNECT included.
        self.sock = socket.create_connection((self.proxy.host, self.proxy.port),
                                             self.timeout)
        try:
            # As http.client does on its own sockets: a chunk's headers and body
            # go out in separate writes, which Nagle would hold back.
            with contextlib.suppress(OSError):
                self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            _ask_tunnel(self.sock, self.proxy, self.host, self.port)
        except BaseException:
            self.close()
            raise


class _TunnelledTLS(http.client.HTTPSConnection, _Tunnelled):
    """TLS to the relay inside the tunnel: HTTPSConnection.connect calls
    ``_Tunnelled.connect`` (next in line) for the socket, then wraps it."""


def open_connection(scheme: str, host: str, port: int | None, *, timeout: float,
                    context: ssl.SSLContext | None, proxy: Proxy | None
                    ) -> http.client.HTTPConnection:
    """A connection (not yet open) to the relay, tunnelled through ``proxy`` if set."""
    if proxy is None:
        if scheme == "https":
            return http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
        return http.client.HTTPConnection(host, port, timeout=timeout)
    relay_port = port or (443 if scheme == "https" else 80)
    conn = (_TunnelledTLS(host, relay_port, timeout=timeout, context=context)
            if scheme == "https" else _Tunnelled(host, relay_port, timeout=timeout))
    conn.proxy = proxy
    return conn


# -- the sentences -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Failure:
    message: str
    hint: str
    tls: bool = False  # a certificate problem: not worth retrying


def _issuer(scheme: str, host: str, port: int | None, proxy: Proxy | None) -> str | None:
    """Who signed the certificate the relay presents, fetched without verifying it
    (only to name it in the message; nothing is sent on that connection)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    conn = open_connection(scheme, host, port, timeout=_CONNECT_PROBE_SECONDS, context=ctx,
                           proxy=proxy)
    try:
        conn.connect()
        sock = conn.sock
        der = sock.getpeercert(binary_form=True) if isinstance(sock, ssl.SSLSocket) else None
        if not der:
            return None
        from cryptography import x509

        text = x509.load_der_x509_certificate(der).issuer.rfc4514_string()
        return text[:160] + ("…" if len(text) > 160 else "")
    except (OSError, http.client.HTTPException, ValueError):
        return None
    finally:
        conn.close()


def _certificate(exc: ssl.SSLCertVerificationError, url: str, scheme: str, host: str,
                 port: int | None, proxy: Proxy | None) -> Failure:
    code = exc.verify_code
    reason = exc.verify_message or exc.reason or "not trusted"
    if code in _UNKNOWN_ISSUER:
        issuer = _issuer(scheme, host, port, proxy)
        return Failure(
            f"the relay at {url} presented a certificate this computer does not trust "
            f"(issuer {issuer or 'unknown'}: {reason})",
            f"if your clinic uses its own certificate authority, set it with {CA_SETTING} "
            "or SSL_CERT_FILE; otherwise someone may be intercepting the connection: "
            "tell the relay's operator", tls=True)
    if code == _HOSTNAME_MISMATCH:
        return Failure(
            f"the relay at {url} presented a certificate for another name ({reason})",
            "check the host name in the relay URL; if it is right, the relay's certificate "
            "is wrong or someone is intercepting the connection: tell the relay's operator",
            tls=True)
    if code in (_EXPIRED, _NOT_YET_VALID):
        return Failure(
            f"the relay at {url} presented a certificate that is not valid today ({reason})",
            "check this computer's date and time; if they are right, tell the relay's "
            "operator that its certificate expired", tls=True)
    return Failure(
        f"the relay at {url} presented a certificate this computer does not accept "
        f"({reason})",
        f"tell the relay's operator; a private certificate authority is set with "
        f"{CA_SETTING} or SSL_CERT_FILE", tls=True)


def _cause(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror[0].lower() + exc.strerror[1:]
    return str(exc) or type(exc).__name__


def explain(exc: BaseException, *, url: str, scheme: str, host: str, port: int | None,
            proxy: Proxy | None, timeout: float, sending: bool) -> Failure:
    """One sentence naming ``url`` (and the proxy if one is in the way), and a hint,
    for a request that got no answer. ``sending``: the request carried a body
    (the connection may have been cut midway)."""
    reach = f"cannot reach the relay at {url}"
    via = (f"cannot reach the proxy at {proxy.shown} (set by {proxy.source}) on the way to "
           f"the relay at {url}") if proxy is not None else reach
    proxy_hint = (f"check {proxy.source}, or list the relay's host in NO_PROXY if it needs "
                  "no proxy" if proxy is not None else "")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return _certificate(exc, url, scheme, host, port, proxy)
    if isinstance(exc, ssl.SSLError):
        return Failure(
            f"cannot open a secure connection to the relay at {url} "
            f"(TLS failed: {exc.reason or exc})",
            "check that the relay URL's scheme and port are right (https:// to a plain "
            "http port fails like this); a firewall or proxy may also be in the way")
    if isinstance(exc, socket.gaierror):
        name = proxy.host if proxy is not None else host
        return Failure(
            f"{via}: the name {name} was not found",
            proxy_hint or "check the relay URL's spelling and this computer's network "
            "connection (is it online?)")
    if isinstance(exc, ConnectionRefusedError):
        return Failure(f"{via}: connection refused", proxy_hint or
                       "Is the relay running? If it is, check the port in the relay URL.")
    if isinstance(exc, TimeoutError):
        return Failure(
            f"{reach}: no answer within {timeout:g} s",
            "check this computer's network connection; if it works, the relay may be "
            "down or overloaded: try again in a few minutes")
    if isinstance(exc, ProxyRefused):
        status = f"{exc.status} {exc.reason}".rstrip()
        return Failure(
            f"the proxy at {proxy.shown if proxy else '?'} would not connect to the relay at "
            f"{url}: {status}",
            "the proxy wants a user name and password: put them in "
            f"{proxy.source if proxy else 'HTTPS_PROXY'} (http://user:password@host:port)"
            if exc.status == 407 else
            "ask whoever runs the proxy to allow the relay's host and port")
    if isinstance(exc, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError,
                        http.client.RemoteDisconnected)):
        what = "while sending" if sending else "before it answered"
        return Failure(f"the connection to the relay at {url} was cut {what} "
                       f"({_cause(exc)})",
                       "the relay restarted or the network dropped; try again")
    if isinstance(exc, OSError) and exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH,
                                                  errno.ENETDOWN):
        return Failure(f"{via}: {_cause(exc)}",
                       "check this computer's network connection (is it online?)")
    if isinstance(exc, http.client.HTTPException):
        return Failure(
            f"the relay at {url} answered something that is not HTTP ({type(exc).__name__})",
            "check the relay URL's scheme and port; a proxy or firewall may be in the way")
    return Failure(f"{reach}: {_cause(exc)}",
                   "check this computer's network connection, then try again")
