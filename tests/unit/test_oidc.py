"""The OIDC client's checks (regops_token.oidc) and the CLI secrets (regops_token.clisecrets),
without a provider: ID tokens signed here with keys made here, the provider's documents
served by a fetch function. The real provider is in tests/sandbox/test_59_oidc.py."""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from regops_token import oidc
from regops_token.clisecrets import PREFIX, CliSecrets
from regops_token.shared import FileStore

ISSUER = "https://sso.example.test"
CLIENT = "regops"


class FakeProvider:
    """The documents a provider serves, and the ID tokens it would sign."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = "k1"
        self.fetched: list[str] = []
        self.id_token = ""

    def jwk(self) -> dict:
        doc = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        return {**doc, "kid": self.kid, "use": "sig", "alg": "RS256"}

    def sign(self, **claims: object) -> str:
        now = int(time.time())
        base = {"iss": ISSUER, "aud": CLIENT, "sub": "s-erin", "iat": now, "exp": now + 300,
                "nonce": "n1", "preferred_username": "erin", "groups": ["platform-team"]}
        base.update(claims)
        return jwt.encode({k: v for k, v in base.items() if v is not None}, self.key,
                          algorithm="RS256", headers={"kid": self.kid})

    def fetch(self, request: urllib.request.Request, _timeout: float) -> bytes:
        url = request.full_url
        self.fetched.append(url.split("?")[0])
        if url.endswith("/.well-known/openid-configuration"):
            return json.dumps({
                "issuer": ISSUER, "authorization_endpoint": f"{ISSUER}/auth",
                "token_endpoint": f"{ISSUER}/token", "jwks_uri": f"{ISSUER}/jwks"}).encode()
        if url.endswith("/jwks"):
            return json.dumps({"keys": [self.jwk()]}).encode()
        if url.endswith("/token"):
            body = urllib.parse.parse_qs(request.data.decode())  # type: ignore[union-attr]
            assert body["code_verifier"] and body["grant_type"] == ["authorization_code"]
            assert request.headers["Authorization"].startswith("Basic ")
            return json.dumps({"id_token": self.id_token, "token_type": "Bearer"}).encode()
        raise AssertionError(url)


@pytest.fixture
def fake() -> FakeProvider:
    return FakeProvider()


def _provider(fake: FakeProvider, clock=time.time) -> oidc.Provider:
    config = oidc.OidcConfig(ISSUER, CLIENT, "-", "https://registry.example.test/oidc/callback")
    return oidc.Provider(config, "s3cret", clock=clock, fetch=fake.fetch)


def test_a_good_id_token_names_the_person_and_their_groups(fake):
    claims = _provider(fake).verify(fake.sign(), "n1")
    who = _provider(fake).identity(claims)
    assert (who.name, who.groups, who.subject) == ("erin", frozenset({"platform-team"}), "s-erin")


@pytest.mark.parametrize(("change", "why"), [
    ({"aud": "someone-else"}, "(?i)audience"),
    ({"iss": "https://evil.example.test"}, "issuer"),
    ({"exp": int(time.time()) - 3600}, "expired"),
    ({"nonce": "another"}, "nonce"),
    ({"nonce": None}, "nonce"),
    ({"iat": int(time.time()) + 3600}, "future|not yet valid"),
    ({"aud": [CLIENT, "other"], "azp": "other"}, "azp"),
])
def test_an_id_token_with_a_wrong_claim_is_refused(fake, change, why):
    with pytest.raises(oidc.OidcError, match=why):
        _provider(fake).verify(fake.sign(**change), "n1")


def test_a_tampered_id_token_is_refused(fake):
    head, body, signature = fake.sign().split(".")
    claims = json.loads(jwt.utils.base64url_decode(body))
    claims["groups"] = ["registry-admins"]
    forged = jwt.utils.base64url_encode(json.dumps(claims).encode()).decode()
    with pytest.raises(oidc.OidcError, match="Signature verification failed"):
        _provider(fake).verify(f"{head}.{forged}.{signature}", "n1")


def test_unsigned_and_shared_secret_tokens_are_refused_whatever_they_claim(fake):
    unsigned = jwt.encode({"iss": ISSUER, "aud": CLIENT, "sub": "x", "nonce": "n1"}, None,
                          algorithm="none")
    # HS256 keyed with the client secret: a token anyone holding that secret could make.
    shared = jwt.encode({"iss": ISSUER, "aud": CLIENT, "sub": "x", "nonce": "n1",
                         "iat": int(time.time()), "exp": int(time.time()) + 60}, "s3cret",
                        algorithm="HS256", headers={"kid": fake.kid})
    for token in (unsigned, shared):
        with pytest.raises(oidc.OidcError, match="algorithm"):
            _provider(fake).verify(token, "n1")


def test_a_token_of_another_key_is_refused_and_unknown_key_ids_fetch_at_most_once_a_minute(fake):
    now = [time.time()]  # PyJWT checks exp against the real clock
    provider = _provider(fake, clock=lambda: now[0])
    other = FakeProvider()
    other.kid = "k2"
    provider.verify(fake.sign(), "n1")
    for _ in range(3):
        with pytest.raises(oidc.OidcError, match="does not publish"):
            provider.verify(other.sign(), "n1")
    assert fake.fetched.count(f"{ISSUER}/jwks") == 1  # the first fetch; the rest wait
    now[0] += oidc.JWKS_REFETCH + 1
    fake.kid = "k2"  # the provider rotated to a new key: it is fetched and accepted
    fake.key = other.key
    provider.verify(fake.sign(), "n1")
    assert fake.fetched.count(f"{ISSUER}/jwks") == 2


def test_a_provider_naming_another_issuer_is_not_trusted(fake):
    served = fake.fetch

    def lying(request, timeout):
        doc = served(request, timeout)
        return doc.replace(ISSUER.encode() + b'"', b'https://other.test"', 1)

    provider = oidc.Provider(_provider(fake).config, "s3cret", fetch=lying)
    with pytest.raises(oidc.ProviderDown, match="names itself"):
        provider.discovery()


def test_the_authorization_url_carries_state_nonce_and_an_s256_challenge(fake):
    pending = oidc.Pending.new("/repo/team/app", time.time())
    url = urllib.parse.urlsplit(_provider(fake).authorization_url(pending))
    query = dict(urllib.parse.parse_qsl(url.query))
    assert f"{url.scheme}://{url.netloc}{url.path}" == f"{ISSUER}/auth"
    assert query["state"] == pending.state and query["nonce"] == pending.nonce
    assert query["code_challenge_method"] == "S256"
    assert query["code_challenge"] == oidc.challenge(pending.verifier) != pending.verifier
    assert query["redirect_uri"] == "https://registry.example.test/oidc/callback"
    assert len(query["code_challenge"]) == 43  # base64url of a SHA-256, unpadded


def test_the_callback_refuses_a_foreign_a_replayed_or_an_expired_state(fake):
    provider = _provider(fake)
    pending = oidc.Pending.new("/", time.time())
    fake.id_token = fake.sign(nonce=pending.nonce)
    with pytest.raises(oidc.OidcError, match="does not match"):
        provider.finish("code", "someone-elses-state", pending)
    with pytest.raises(oidc.OidcError, match="no sign-in was started"):
        provider.finish("code", pending.state, None)
    assert provider.finish("code", pending.state, pending).name == "erin"
    with pytest.raises(oidc.OidcError, match="used already"):
        provider.finish("code", pending.state, pending)
    key = provider.cookie_key
    assert oidc.Pending.from_cookie(pending.cookie(key), pending.expires + 1, key) is None
    assert oidc.Pending.from_cookie(pending.cookie(key), time.time(), key) == pending
    assert oidc.Pending.from_cookie("bm90IGpzb24", time.time(), key) is None


def test_a_state_cookie_not_made_with_the_client_secret_is_no_sign_in():
    """A cookie an attacker wrote (their own state, nonce and verifier) does not make
    the service exchange a code at the provider."""
    pending = oidc.Pending.new("/", time.time())
    forged = pending.cookie(b"another key")
    assert oidc.Pending.from_cookie(forged, time.time(), b"s3cret") is None
    body, _, mac = pending.cookie(b"s3cret").partition(".")
    other = oidc.Pending("x", pending.nonce, pending.verifier, "/", pending.expires)
    assert oidc.Pending.from_cookie(f"{other.cookie(b'k').partition('.')[0]}.{mac}",
                                    time.time(), b"s3cret") is None


@pytest.mark.parametrize("name", ["", "a:b", "*", "a b", "x/y", "a" * 256, "nul\0"])
def test_a_name_that_cannot_be_a_registry_user_is_refused(fake, name):
    claims = _provider(fake).verify(fake.sign(preferred_username=name or None), "n1")
    with pytest.raises(oidc.OidcError):
        _provider(fake).identity(claims)


def test_cli_secrets_are_stored_as_hashes_rotate_revoke_and_expire(tmp_path: Path):
    now = [1_000_000.0]
    path = tmp_path / "cli-secrets.json"
    store = CliSecrets(FileStore(str(path)), days=90, clock=lambda: now[0])
    first, entry = store.create("erin", frozenset({"platform-team"}))
    assert first.startswith(PREFIX) and store.check("erin", first) == entry
    assert first not in path.read_text() and entry.hash in path.read_text()
    assert path.stat().st_mode & 0o777 == 0o600
    second, _ = store.create("erin", frozenset({"platform-team"}))
    assert store.check("erin", first) is None and store.check("erin", second)
    store.signed_in("erin", frozenset({"readers"}))
    # another start, same file:
    reread = CliSecrets(FileStore(str(path)), days=90, clock=lambda: now[0])
    assert reread.check("erin", second).groups == ("readers",)
    assert reread.check("erin", second[:-1] + "x") is None
    now[0] += 90 * 86400 + 1
    assert reread.check("erin", second) is None
    assert reread.revoke("erin") and not reread.knows("erin")


def test_someone_in_the_directory_and_in_single_sign_on_logs_in_with_either(tmp_path):
    """A CLI secret for a name the directory also knows does not lock the directory
    password out: a password that is not a CLI secret goes to the directory."""
    from regops_token.audit import Audit
    from regops_token.authn import Authn
    from regops_token.config import Config
    from regops_token.rules import LDAP, OIDC, parse_policy

    (tmp_path / "users").write_text("")
    (tmp_path / "robots").write_text("")
    config = Config(service="s", issuer="t", ttl=300, refresh_days=90, listen="",
                    notify_listen=None, notify_secret_file=None, key="", chain="",
                    users=str(tmp_path / "users"), robots=str(tmp_path / "robots"),
                    audit=str(tmp_path / "audit.log"), policy=parse_policy([]),
                    oidc={"cli_secrets": str(tmp_path / "cli.json"), "cli_secret_days": 9})
    authn = Authn(config, Audit(config.audit))

    class Directory:  # what Authn asks of regops_token.directory.Directory
        def login(self, name, password):
            person = type("Person", (), {"name": name, "groups": ["ops"]})
            return person if password == "directory-password" else None

    authn.directory = Directory()
    assert authn.cli is not None
    secret, _ = authn.cli.create("dana", frozenset({"platform-team"}))
    assert authn.authenticate("dana", secret, "10.0.0.1")[0].kind == OIDC
    assert authn.authenticate("dana", "directory-password", "10.0.0.2")[0].kind == LDAP
    assert authn.authenticate("dana", secret + "x", "10.0.0.3")[0] is None


def test_a_cli_secrets_store_that_does_not_answer_costs_only_cli_secrets(tmp_path):
    """The replicas' bucket down: a CLI secret is refused as unavailable (503, not a
    wrong password), a directory password and a local user still log in."""
    import bcrypt

    from regops_token.audit import Audit
    from regops_token.authn import Authn, StoreUnavailable
    from regops_token.config import Config
    from regops_token.rules import LDAP, parse_policy
    from regops_token.shared import StoreDown
    hashed = bcrypt.hashpw(b"local-pw", bcrypt.gensalt(4)).decode()
    (tmp_path / "users").write_text(f"admin:{hashed}\n")
    (tmp_path / "robots").write_text("")
    config = Config(service="s", issuer="t", ttl=300, refresh_days=90, listen="",
                    notify_listen=None, notify_secret_file=None, key="", chain="",
                    users=str(tmp_path / "users"), robots=str(tmp_path / "robots"),
                    audit=str(tmp_path / "audit.log"),
                    policy=parse_policy(["admin"]),
                    oidc={"cli_secrets": str(tmp_path / "cli.json"), "cli_secret_days": 9})
    authn = Authn(config, Audit(config.audit))

    class Directory:
        def login(self, name, password):
            person = type("Person", (), {"name": name, "groups": ["ops"]})
            return person if password == "directory-password" else None

    class Down:  # a store as BucketStore is when its bucket does not answer
        def get(self, key):
            raise StoreDown("bucket 'images' at http://10.0.0.9:8333 does not answer")

        put = delete = names = get

    authn.directory = Directory()
    assert authn.cli is not None
    authn.cli.store = Down()
    with pytest.raises(StoreUnavailable, match="does not answer"):
        authn.authenticate("dana", PREFIX + "x" * 43, "10.0.0.1")
    assert authn.authenticate("dana", "directory-password", "10.0.0.2")[0].kind == LDAP
    assert authn.authenticate("admin", "local-pw", "10.0.0.3")[0].kind == "user"
