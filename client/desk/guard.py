"""Who may talk to the desk: the checks every request passes, as pure functions.

The desk serves on 127.0.0.1, so anything running on this computer can reach
its port, and any web page the user visits can make the browser send requests
to it. The browser's same-origin policy stops other pages from *reading* the
answers, not from sending requests; these checks stop the rest:

- **The launch key.** ``sealdrop desk`` makes a random token each time it starts
  and puts it in the address it opens. Only a request carrying it, once, gets
  the session cookie (HttpOnly, SameSite=Strict, named after the port so two
  desks on one computer keep theirs apart); every API call needs that cookie.
  Another local user, or a page that guesses the port, has neither.
- **Host.** Only ``127.0.0.1:<port>`` and ``localhost:<port>``. A DNS-rebinding
  page (evil.example resolving to 127.0.0.1) sends ``Host: evil.example``.
- **Origin and the CSRF token** on every request that changes anything: the
  Origin must be the desk's own, and the ``X-Sealdrop-CSRF`` header must carry
  the token the page read from ``/api/session`` (which another origin cannot
  read). A cross-site form can set neither.

Tokens are compared in constant time. Nothing here is secret-dependent in
its error messages.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass, field

CSRF_HEADER = "X-Sealdrop-CSRF"
SAFE_METHODS = frozenset({"GET", "HEAD"})

# No inline script or style, nothing from another origin: a note or a file
# name a sender wrote cannot become code here even if escaping failed.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; "
       "img-src 'self' data:; connect-src 'self'; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # the launch token is in the first URL
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


@dataclass(frozen=True)
class Keys:
    """This launch's secrets: the URL token, the cookie, and the CSRF token."""

    port: int
    token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    cookie: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))

    @property
    def cookie_name(self) -> str:
        return f"sealdrop_desk_{self.port}"

    @property
    def origins(self) -> frozenset[str]:
        return frozenset({f"http://127.0.0.1:{self.port}", f"http://localhost:{self.port}"})

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/?token={self.token}"


def same(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def host_ok(keys: Keys, host: str | None) -> bool:
    return host in (f"127.0.0.1:{keys.port}", f"localhost:{keys.port}")


def refusal(keys: Keys, *, method: str, path: str, host: str | None, origin: str | None,
            cookie: str | None, csrf: str | None) -> str | None:
    """Why the request is refused (a sentence for the 403 page), or None to serve it.

    The static page and its assets need no cookie (they hold no secret, and the
    page must load to say "open the address sealdrop desk printed"); the API does.
    """
    if not host_ok(keys, host):
        return "this address is not the desk's: open the address sealdrop desk printed"
    if method not in SAFE_METHODS:
        if origin not in keys.origins:
            return "refused: the request did not come from the desk's own page"
        if not same(csrf, keys.csrf):
            return "refused: the page's security token is missing or wrong; reload the page"
    if path.startswith("/api/") and not same(cookie, keys.cookie):
        return ("this browser has not been let in: open the address sealdrop desk printed "
                "(it carries this launch's key)")
    return None
