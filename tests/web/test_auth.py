"""HTTP authentication: auth_basic, auth_digest (RFC 7616, with a real client too), the legacy
basic_auth/digest_auth tools and httpauth helpers; wrong credentials, malformed headers,
forged and stale nonces, replays, bodies of unauthenticated requests."""

from __future__ import annotations

import base64
import hashlib
import time
from pathlib import Path
from typing import Any

import pytest
import requests
import requests.auth

import services.web as cherrypy
from services.web.lib import auth_basic, auth_digest, httpauth
from services.web.lib.auth_digest import (
    HttpDigestAuthorization,
    get_ha1_dict,
    get_ha1_dict_plain,
    get_ha1_file_htdigest,
    synthesize_nonce,
)

USERS = {"jon": "secret", "zoë": "pässwörd"}
KEY = "a565c27146791cfb"
REALM = "localhost"


class Root:
    @cherrypy.expose
    def index(self) -> str:
        return "public"

    @cherrypy.expose
    def protected(self, **params: Any) -> str:
        return f"hello {cherrypy.request.login} {sorted(params.items())}"

    md5only = protected


def basic(user: str, password: str) -> tuple[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return ("Authorization", f"Basic {token}")


# -- Basic ------------------------------------------------------------------------------------


@pytest.fixture
def basic_app(web: Any) -> Any:
    web.mount(Root(), "", {"/protected": {
        "tools.auth_basic.on": True, "tools.auth_basic.realm": REALM,
        "tools.auth_basic.checkpassword": auth_basic.checkpassword_dict(USERS),
        "request.body.maxbytes": 1000}})
    return web


def test_basic_accepts_good_credentials(basic_app: Any) -> None:
    basic_app.getPage("/protected", headers=[basic("jon", "secret")])
    basic_app.assertStatus(200)
    basic_app.assertBody("hello jon []")
    basic_app.getPage("/protected", headers=[basic("zoë", "pässwörd")])
    basic_app.assertBody("hello zoë []")
    basic_app.getPage("/")
    basic_app.assertBody("public")


@pytest.mark.parametrize("headers", [
    [],
    [basic("jon", "wrong")],
    [basic("nobody", "secret")],
    [basic("jon", "")],
    [("Authorization", "Bearer abc")],
    [("Authorization", "Digest username=jon")],
])
def test_basic_refuses_with_a_challenge(basic_app: Any, headers: list[Any]) -> None:
    basic_app.getPage("/protected", headers=headers)
    basic_app.assertStatus(401)
    basic_app.assertHeader("WWW-Authenticate", 'Basic realm="localhost", charset="UTF-8"')


@pytest.mark.parametrize("value", ["Basic !!!notbase64", "Basic " + base64.b64encode(
    b"no-colon").decode(), "Basic " + base64.b64encode(b"\xff\xfe:x").decode()[:-1]])
def test_basic_malformed_credentials_are_400(basic_app: Any, value: str) -> None:
    basic_app.getPage("/protected", headers=[("Authorization", value)])
    basic_app.assertStatus(400)


def test_latin1_credentials_of_old_clients(basic_app: Any) -> None:
    token = base64.b64encode("zoë:pässwörd".encode("latin-1")).decode()
    basic_app.getPage("/protected", headers=[("Authorization", f"Basic {token}")])
    basic_app.assertBody("hello zoë []")


def test_unauthenticated_bodies_are_never_read(basic_app: Any) -> None:
    # A body over the limit would be a 413 if it were read; unauthenticated, it is a 401.
    basic_app.getPage("/protected", method="POST", body="x=" + "a" * 5000)
    basic_app.assertStatus(401)
    basic_app.getPage("/protected", method="POST", body="x=" + "a" * 5000,
                      headers=[basic("jon", "secret")])
    basic_app.assertStatus(413)
    basic_app.getPage("/protected", method="POST", body="x=1",
                      headers=[basic("jon", "secret")])
    basic_app.assertBody("hello jon [('x', '1')]")
    basic_app.getPage("/protected", method="POST", body="--x\r\nbroken multipart",
                      headers=[("Content-Type", "multipart/form-data; boundary=x")])
    basic_app.assertStatus(401)


def test_checkpassword_dict() -> None:
    check = auth_basic.checkpassword_dict(USERS)
    assert check(REALM, "jon", "secret")
    assert not check(REALM, "jon", "Secret")
    assert not check(REALM, "ghost", "secret")


# -- Digest -----------------------------------------------------------------------------------


def digest_header(method: str, uri: str, user: str, password: str, nonce: str,
                  algorithm: str = "MD5", qop: str = "auth", nc: str = "00000001",
                  cnonce: str = "0a4f113b", realm: str = REALM, body: bytes = b"",
                  response: str | None = None) -> tuple[str, str]:
    """Compute a Digest Authorization header as RFC 7616 section 3.4.1 says (independently)."""
    algo = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}[algorithm.removesuffix("-sess")]

    def h(text: str | bytes) -> str:
        return algo(text.encode() if isinstance(text, str) else text).hexdigest()

    ha1 = h(f"{user}:{realm}:{password}")
    if algorithm.endswith("-sess"):
        ha1 = h(f"{ha1}:{nonce}:{cnonce}")
    a2 = f"{method}:{uri}" + (f":{h(body)}" if qop == "auth-int" else "")
    if response is None:
        response = h(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{h(a2)}")
    return ("Authorization",
            f'Digest username="{user}", realm="{realm}", nonce="{nonce}", uri="{uri}", '
            f'algorithm={algorithm}, qop={qop}, nc={nc}, cnonce="{cnonce}", '
            f'response="{response}"')


@pytest.fixture
def digest_app(web: Any) -> Any:
    web.mount(Root(), "", {
        "/protected": {
            "tools.auth_digest.on": True, "tools.auth_digest.realm": REALM,
            "tools.auth_digest.get_ha1": get_ha1_dict_plain(USERS),
            "tools.auth_digest.key": KEY, "tools.auth_digest.qop": "auth,auth-int",
            "request.body.maxbytes": 1000},
        "/md5only": {
            "tools.auth_digest.on": True, "tools.auth_digest.realm": REALM,
            "tools.auth_digest.get_ha1": get_ha1_dict(
                {"jon": hashlib.md5(f"jon:{REALM}:secret".encode()).hexdigest()}),
            "tools.auth_digest.key": KEY}})
    return web


def challenges(web: Any) -> str:
    web.assertStatus(401)
    return web.assertHeader("WWW-Authenticate")


def test_digest_challenge_offers_sha256_then_md5(digest_app: Any) -> None:
    digest_app.getPage("/protected")
    header = challenges(digest_app)
    assert header.startswith('Digest realm="localhost", nonce="')
    assert header.index("algorithm=SHA-256") < header.index("algorithm=MD5")
    assert 'qop="auth,auth-int"' in header and 'charset="UTF-8"' in header
    digest_app.getPage("/md5only")
    header = challenges(digest_app)
    assert "algorithm=MD5" in header and "SHA-256" not in header


@pytest.mark.parametrize("algorithm", ["MD5", "MD5-sess", "SHA-256", "SHA-256-sess"])
@pytest.mark.parametrize("qop", ["auth", "auth-int"])
def test_digest_accepts_each_algorithm_and_qop(digest_app: Any, algorithm: str,
                                               qop: str) -> None:
    nonce = synthesize_nonce(REALM, KEY)
    uri = "/protected?a=1"
    digest_app.getPage(uri, headers=[digest_header("GET", uri, "jon", "secret", nonce,
                                                   algorithm, qop)])
    digest_app.assertStatus(200)
    digest_app.assertBody("hello jon [('a', '1')]")


def test_digest_auth_int_hashes_the_body_and_still_processes_it(digest_app: Any) -> None:
    body = b"x=1&y=2"
    nonce = synthesize_nonce(REALM, KEY)
    good = digest_header("POST", "/protected", "jon", "secret", nonce, "SHA-256", "auth-int",
                         body=body)
    digest_app.getPage("/protected", method="POST", body=body, headers=[good])
    digest_app.assertBody("hello jon [('x', '1'), ('y', '2')]")
    tampered = digest_header("POST", "/protected", "jon", "secret", nonce, "SHA-256",
                             "auth-int", nc="00000002", body=body)
    digest_app.getPage("/protected", method="POST", body=b"x=6&y=6", headers=[tampered])
    digest_app.assertStatus(401)
    oversized = digest_header("POST", "/protected", "jon", "secret", nonce, "SHA-256",
                              "auth-int", nc="00000003", body=b"a" * 2000)
    digest_app.getPage("/protected", method="POST", body=b"a" * 2000, headers=[oversized])
    digest_app.assertStatus(413)


def test_digest_with_a_real_client(digest_app: Any) -> None:
    url = f"{digest_app.base()}/protected?q=requests"
    with requests.Session() as session:
        session.auth = requests.auth.HTTPDigestAuth("jon", "secret")
        for _ in range(3):  # the nonce is reused with a growing nc
            response = session.get(url, timeout=30)
            assert response.status_code == 200
            assert response.text == "hello jon [('q', 'requests')]"
        session.auth = requests.auth.HTTPDigestAuth("jon", "wrong")
        assert session.get(url, timeout=30).status_code == 401


def test_digest_unicode_user(digest_app: Any) -> None:
    nonce = synthesize_nonce(REALM, KEY)
    digest_app.getPage("/protected", headers=[digest_header(
        "GET", "/protected", "zoë", "pässwörd", nonce, "SHA-256")])
    digest_app.assertBody("hello zoë []")


def test_digest_replayed_requests_are_refused(digest_app: Any) -> None:
    nonce = synthesize_nonce(REALM, KEY)
    first = digest_header("GET", "/protected", "jon", "secret", nonce, "SHA-256")
    digest_app.getPage("/protected", headers=[first])
    digest_app.assertStatus(200)
    digest_app.getPage("/protected", headers=[first])  # captured and replayed verbatim
    assert "stale" not in challenges(digest_app)
    lower = digest_header("GET", "/protected", "jon", "secret", nonce, "SHA-256", nc="00000000")
    digest_app.getPage("/protected", headers=[lower])
    digest_app.assertStatus(401)
    later = digest_header("GET", "/protected", "jon", "secret", nonce, "SHA-256", nc="00000002")
    digest_app.getPage("/protected", headers=[later])
    digest_app.assertStatus(200)


def test_digest_stale_nonces_ask_for_a_retry(digest_app: Any) -> None:
    old = synthesize_nonce(REALM, KEY, int(time.time()) - 601)
    digest_app.getPage("/protected", headers=[digest_header("GET", "/protected", "jon",
                                                            "secret", old)])
    assert "stale=true" in challenges(digest_app)
    digest_app.getPage("/protected", headers=[digest_header("GET", "/protected", "jon",
                                                            "wrong", old)])
    assert "stale=true" not in challenges(digest_app)  # a wrong password is not just stale


@pytest.mark.parametrize("nonce", [
    synthesize_nonce(REALM, "another key"),
    synthesize_nonce("another realm", KEY),
    f"{int(time.time()) + 1000}:00:{'0' * 64}",
    synthesize_nonce(REALM, KEY).replace(":", "", 1),
    "12345",
    "",
])
def test_digest_forged_nonces_are_refused(digest_app: Any, nonce: str) -> None:
    digest_app.getPage("/protected", headers=[digest_header("GET", "/protected", "jon",
                                                            "secret", nonce or "x")])
    assert "stale" not in challenges(digest_app)


@pytest.mark.parametrize("kwargs", [
    {"password": "wrong"},
    {"user": "ghost"},
    {"realm": "elsewhere"},
    {"response": "0" * 32},
    {"algorithm": "SHA-256", "response": "0" * 64},
])
def test_digest_wrong_credentials_are_401(digest_app: Any, kwargs: dict[str, str]) -> None:
    args = {"user": "jon", "password": "secret", "realm": REALM, **kwargs}
    header = digest_header("GET", "/protected", args.pop("user"), args.pop("password"),
                           synthesize_nonce(REALM, KEY), **args)
    digest_app.getPage("/protected", headers=[header])
    challenges(digest_app)


def test_digest_md5_only_store_refuses_sha256(digest_app: Any) -> None:
    nonce = synthesize_nonce(REALM, KEY)
    digest_app.getPage("/md5only", headers=[digest_header("GET", "/md5only", "jon", "secret",
                                                          nonce, "SHA-256")])
    challenges(digest_app)
    digest_app.getPage("/md5only", headers=[digest_header("GET", "/md5only", "jon", "secret",
                                                          nonce, "MD5")])
    digest_app.assertBody("hello jon []")


@pytest.mark.parametrize("value", [
    'Digest username="jon", realm="localhost"',                         # fields missing
    'Digest username="jon" realm="localhost"',                          # no commas
    'Digest username="jon, realm=localhost',                            # unterminated quote
    'Digest username="jon", username="amy", realm="localhost", nonce="1", uri="/protected", '
    'response="x", qop=auth, nc=00000001, cnonce="c"',                  # duplicated field
    'Digest username="jon", realm="localhost", nonce="1", uri="/protected", response="x", '
    'qop=auth, nc=1, cnonce="c"',                                        # nc not 8 hex digits
    'Digest username="jon", realm="localhost", nonce="1", uri="/protected", response="x"',
    'Digest username="jon", realm="localhost", nonce="1", uri="/protected", response="x", '
    'algorithm=SHA-1, qop=auth, nc=00000001, cnonce="c"',                # unknown algorithm
    'Digest username="jon", realm="localhost", nonce="1", uri="/elsewhere", response="x", '
    'qop=auth, nc=00000001, cnonce="c"',                                 # another uri
])
def test_digest_malformed_headers_are_400(digest_app: Any, value: str) -> None:
    digest_app.getPage("/protected", headers=[("Authorization", value)])
    digest_app.assertStatus(400)


def test_digest_parses_quoted_pairs_and_ext_usernames() -> None:
    header = ('Digest username*=UTF-8\'\'zo%C3%AB, realm="a \\"quoted\\" realm", nonce="n", '
              'uri="/", response="R", qop=auth, nc=00000001, cnonce="c"')
    auth = HttpDigestAuthorization(header, "GET")
    assert auth.username == "zoë"
    assert auth.realm == 'a "quoted" realm'
    assert auth.response == "r"


def test_rfc7616_example_sha256() -> None:
    # RFC 7616 section 3.9.1: Mufasa, "Circle of Life", realm http-auth@example.org.
    nonce = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"
    header = ('Digest username="Mufasa", realm="http-auth@example.org", uri="/dir/index.html",'
              ' algorithm=SHA-256, nonce="' + nonce + '", nc=00000001, '
              'cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", qop=auth, '
              'response="753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1", '
              'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"')
    auth = HttpDigestAuthorization(header, "GET")
    ha1 = get_ha1_dict_plain({"Mufasa": "Circle of Life"})("http-auth@example.org", "Mufasa",
                                                          algorithm="SHA-256")
    assert ha1 is not None
    assert auth.request_digest(ha1) == auth.response
    md5 = header.replace("SHA-256", "MD5").replace(
        "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
        "8ca523f5e9506fed4657c9700eebdbec")
    assert HttpDigestAuthorization(md5, "GET").request_digest(
        hashlib.md5(b"Mufasa:http-auth@example.org:Circle of Life").hexdigest()) == \
        "8ca523f5e9506fed4657c9700eebdbec"


def test_nonces_and_helpers(tmp_path: Path) -> None:
    nonce = synthesize_nonce("realm", "key", 1000, "salt")
    assert nonce.startswith("1000:salt:") and nonce == synthesize_nonce("realm", "key", 1000,
                                                                         "salt")
    assert nonce != synthesize_nonce("realm", "other", 1000, "salt")
    assert synthesize_nonce("realm", "key", 1000) != synthesize_nonce("realm", "key", 1000)
    htdigest = tmp_path / "htdigest"
    htdigest.write_text("alice:wonderland:3238cdf91a8b2ed8e39646921a02d4c\n"
                        "bob:elsewhere:0123\n")
    get_ha1 = get_ha1_file_htdigest(str(htdigest))
    assert get_ha1("wonderland", "alice") == "3238cdf91a8b2ed8e39646921a02d4c"
    assert get_ha1("wonderland", "bob") is None
    assert auth_digest.H("abc") == hashlib.md5(b"abc").hexdigest()
    with pytest.raises(ValueError, match="quote"):
        auth_digest.www_authenticate('a"b', "k")
    with pytest.raises(ValueError, match="algorithm"):
        auth_digest.www_authenticate("r", "k", algorithm="SHA-1")


def test_nonce_counts_forget_expired_nonces() -> None:
    counts = auth_digest.NonceCounts()
    now = int(time.time())
    assert counts.advance("old", 1, now - 1000, 600)
    assert counts.advance("new", 1, now, 600)
    assert not counts.advance("new", 1, now, 600)
    assert counts.advance("other", 1, now, 600)
    assert list(counts._counts) == ["new", "other"]  # "old" was dropped on the way


# -- the legacy tools and httpauth ------------------------------------------------------------


def test_legacy_basic_and_digest_tools(web: Any) -> None:
    md5 = httpauth.DIGEST_AUTH_ENCODERS[httpauth.MD5]
    web.mount(Root(), "", {
        "/protected": {"tools.basic_auth.on": True, "tools.basic_auth.realm": REALM,
                       "tools.basic_auth.users": {"jon": md5("secret")}}})
    web.getPage("/protected")
    web.assertStatus(401)
    web.assertHeader("WWW-Authenticate", 'Basic realm="localhost"')
    web.getPage("/protected", headers=[basic("jon", "secret")])
    web.assertBody("hello jon []")
    web.getPage("/protected", headers=[("Authorization", "Basic %%%")])
    web.assertStatus(400)
    web.mount(Root(), "/d", {
        "/protected": {"tools.digest_auth.on": True, "tools.digest_auth.realm": REALM,
                       "tools.digest_auth.users": lambda: USERS}})
    web.getPage("/d/protected")
    assert challenges(web).startswith('Digest realm="localhost"')
    header = digest_header("GET", "/d/protected", "jon", "secret", "anynonce")
    web.getPage("/d/protected", headers=[header])
    web.assertBody("hello jon []")


def test_httpauth_helpers() -> None:
    assert httpauth.basicAuth("r") == 'Basic realm="r"'
    assert httpauth.doAuth("r").startswith('Digest realm="r", nonce="')
    assert httpauth.doAuth("r").endswith('Basic realm="r"')
    assert httpauth.parseAuthorization("Basic " + base64.b64encode(b"a:b").decode()) == {
        "username": "a", "password": "b", "auth_scheme": "basic"}
    assert httpauth.parseAuthorization("Basic ###") is None
    assert httpauth.parseAuthorization("Digest garbage") is None
    assert httpauth.parseAuthorization(None) is None
    _, value = digest_header("GET", "/", "jon", "secret", "abc", qop="auth")
    auth_map = httpauth.parseAuthorization(value)
    assert auth_map is not None
    assert httpauth.checkResponse(auth_map, "secret", "GET", realm=REALM)
    assert not httpauth.checkResponse(auth_map, "wrong", "GET", realm=REALM)
    assert not httpauth.checkResponse(auth_map, "secret", "GET", realm="other")
    _, sess = digest_header("GET", "/", "jon", "secret", "abc", algorithm="MD5-sess")
    sess_map = httpauth.parseAuthorization(sess)
    assert sess_map is not None and httpauth.checkResponse(sess_map, "secret", realm=REALM)
    assert httpauth.md5SessionKey(sess_map, "secret").endswith(":abc:0a4f113b")
    assert len(httpauth.calculateNonce("r")) == 32
    with pytest.raises(NotImplementedError):
        httpauth.calculateNonce("r", "SHA-1")
