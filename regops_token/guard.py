"""What the service accepts from a client, bounded before anything matches or logs it:
names and scopes, request bodies and headers, the paths a redirect may follow, the
header values it sends. One place for the limits (docs/security.md lists them), so
the token endpoint, the web pages and the notifications listener hold the same line.
"""

from __future__ import annotations

from urllib.parse import urlsplit

MAX_NAME = 255  # a repository name (distribution's own limit) or a login name
MAX_SCOPES = 32  # scopes in one token request (docker asks for one to three)
MAX_SCOPE_TEXT = 4096  # all scopes of one request together, in characters
MAX_BODY = 64 * 1024  # a token or web form POST (nginx allows the same)
MAX_NOTIFY_BODY = 1024 * 1024  # the registry's notification envelopes
MAX_HEADER_BYTES = 32 * 1024  # all request headers together
MAX_AUDIT_TEXT = 320  # one string field of an audit line (a scope of a 255-character name fits)
MAX_AUDIT_LIST = 1024  # the items of one list field of an audit line, together


class Refused(ValueError):
    """Input past a limit: the message says which, for the client and the audit log."""


class TooLarge(Refused):
    """A request body over its limit (HTTP 413)."""


def _controls(text: str) -> bool:
    return any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in text)


def local_path(target: str) -> str:
    """`target` if it is a path on this site, else "": no scheme, no host, no control
    characters or backslashes (browsers drop tabs and newlines and read `\\` as `/`,
    so `/\\t/evil.example` and `/\\evil.example` would leave the site)."""
    if not target.startswith("/") or target.startswith("//") or not target.isascii():
        return ""
    if "\\" in target or _controls(target) or " " in target:
        return ""
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return ""
    return target


def header_safe(value: str) -> bool:
    """A header value holds no CR, LF or other control character (a tab aside), and
    only what HTTP/1.1 headers carry (latin-1)."""
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return not any((ord(ch) < 0x20 and ch != "\t") or ord(ch) == 0x7F for ch in value)


def account_name(text: str) -> bool:
    """A name an identity provider vouches for can be a registry user: 1 to MAX_NAME
    characters, none of them a space, control character, `:` (labels such as
    `oidc:NAME` split there), `*` (rules' wildcard) or `/` (a `${user}` path segment)."""
    return 0 < len(text) <= MAX_NAME and not _controls(text) and not any(
        ch.isspace() or ch in ":*/" for ch in text)


def content_length(raw: str | None, limit: int) -> int:
    """The request's Content-Length as a number in 0..limit, or Refused."""
    if raw is None or raw == "":
        return 0
    if not raw.isascii() or not raw.isdigit():
        raise Refused(f"Content-Length {raw[:32]!r} is not a non-negative number")
    length = int(raw) if len(raw) <= 18 else limit + 1  # int() of 5,000 digits is refused
    if length > limit:
        raise TooLarge(f"a request body of {length} bytes is over the limit of {limit}")
    return length


def name(text: str, what: str = "name") -> str:
    """A login or repository name no longer than MAX_NAME, or Refused."""
    if len(text) > MAX_NAME:
        raise Refused(f"a {what} of {len(text)} characters is longer than {MAX_NAME}")
    return text


def scope_texts(values: list[str]) -> list[str]:
    """Repeated and space-separated scope parameters, split, within the limits."""
    texts = [text for value in values for text in value.split()]
    if len(texts) > MAX_SCOPES:
        raise Refused(f"{len(texts)} scopes in one request; at most {MAX_SCOPES}")
    if sum(len(t) for t in texts) > MAX_SCOPE_TEXT:
        raise Refused(f"the scopes of one request are longer than {MAX_SCOPE_TEXT} "
                      "characters together")
    return texts


def clip(text: str, limit: int = MAX_AUDIT_TEXT) -> str:
    """`text` cut to `limit` characters, saying how much was cut."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}...(+{len(text) - limit} characters)"


def clip_list(items: list[str], limit: int = MAX_AUDIT_LIST) -> list[str]:
    """As many items (each clipped) as fit in `limit` characters, then how many more."""
    kept: list[str] = []
    used = 0
    for n, item in enumerate(items):
        item = clip(item)
        if used + len(item) > limit:
            kept.append(f"...(+{len(items) - n} more)")
            break
        kept.append(item)
        used += len(item)
    return kept
