"""A real OIDC relying party (authlib) signs in against a live idlink: code + PKCE S256
through idlink's login page, the ID token verified against the JWKS (joserfc, authlib's
JOSE library), nonce and at_hash checked, /userinfo read, the refresh token rotated, and
a replayed code refused. Closes with `oidc: N passed, N failed`."""

import base64
import hashlib
import os
import secrets
import sys
from urllib.parse import parse_qs, urljoin, urlparse

import requests
from authlib.integrations.requests_client import OAuth2Session
from joserfc import jwt
from joserfc.jwk import KeySet

BASE = os.environ["IDLINK_BASE_URL"]
ADMIN_ID = os.environ["IDLINK_ADMIN_CLIENT_ID"]
ADMIN_SECRET = os.environ["IDLINK_ADMIN_CLIENT_SECRET"]
CLIENT_ID = "oidc-rp"
CALLBACK = "http://127.0.0.1:1/callback"  # never fetched: the test reads the redirect
EMAIL = f"rp-{secrets.token_hex(4)}@example.com"
PASSWORD = "correct-Horse-battery-9"

passed = failed = 0


def check(name, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print(f"PASS {name}")
    else:
        failed += 1
        print(f"FAIL {name} {detail}")


def main():
    discovery = requests.get(f"{BASE}/.well-known/openid-configuration", timeout=10).json()
    check("discovery names the authorization endpoint", discovery["authorization_endpoint"] == f"{BASE}/authorize")

    admin = requests.post(f"{BASE}/oauth/token", json={
        "grant_type": "client_credentials", "client_id": ADMIN_ID, "client_secret": ADMIN_SECRET,
        "audience": discovery["issuer"].replace("http://", "https://") + "api/v2/",
    }, timeout=10).json()["access_token"]
    created = requests.post(f"{BASE}/api/v2/users", headers={"authorization": f"Bearer {admin}"}, json={
        "connection": "Username-Password-Authentication", "email": EMAIL, "password": PASSWORD,
        "email_verified": True,
    }, timeout=10)
    check("database user created", created.status_code == 201, created.text)
    user_id = created.json().get("user_id")

    client = OAuth2Session(CLIENT_ID, redirect_uri=CALLBACK, scope="openid profile email offline_access",
                           code_challenge_method="S256", token_endpoint_auth_method="none")
    verifier = secrets.token_urlsafe(48)
    nonce = secrets.token_urlsafe(16)
    url, state = client.create_authorization_url(discovery["authorization_endpoint"], code_verifier=verifier,
                                                 nonce=nonce, connection="Username-Password-Authentication")

    browser = requests.Session()
    login = browser.get(url, allow_redirects=True, timeout=10)
    check("login page shown", login.status_code == 200 and ">Password</label>" in login.text, login.status_code)
    tx = parse_qs(urlparse(login.url).query)["state"][0]
    answer = browser.post(urljoin(BASE, "/u/login"), allow_redirects=False, timeout=10, data={
        "state": tx, "csrf": browser.cookies.get("idlink_csrf"), "connection": "Username-Password-Authentication",
        "username": EMAIL, "password": PASSWORD,
    })
    location = answer.headers.get("location", "")
    check("login redirects to the callback", answer.status_code == 302 and location.startswith(CALLBACK), answer.text[:200])

    token = client.fetch_token(discovery["token_endpoint"], authorization_response=location, code_verifier=verifier,
                               state=state)
    check("code exchanged", "access_token" in token and "id_token" in token, token)

    keys = KeySet.import_key_set(requests.get(discovery["jwks_uri"], timeout=10).json())
    decoded = jwt.decode(token["id_token"], keys, algorithms=["RS256"])
    claims = decoded.claims
    registry = jwt.JWTClaimsRegistry(iss={"essential": True, "value": discovery["issuer"]},
                                     aud={"essential": True, "value": CLIENT_ID},
                                     nonce={"essential": True, "value": nonce})
    try:
        registry.validate(claims)
        check("ID token verifies against the JWKS (iss, aud, nonce, exp)", True)
    except Exception as err:  # noqa: BLE001 - reported as a failed check
        check("ID token verifies against the JWKS (iss, aud, nonce, exp)", False, repr(err))
    check("ID token sub is the user", claims.get("sub") == user_id, claims)
    digest = hashlib.sha256(token["access_token"].encode()).digest()
    at_hash = base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode()
    check("at_hash matches the access token", claims.get("at_hash") == at_hash, claims)

    info = requests.get(discovery["userinfo_endpoint"], headers={"authorization": f"Bearer {token['access_token']}"},
                        timeout=10)
    check("userinfo answers the user", info.status_code == 200 and info.json().get("email") == EMAIL, info.text)

    refreshed = client.refresh_token(discovery["token_endpoint"], refresh_token=token["refresh_token"])
    check("refresh token rotated", refreshed.get("refresh_token") not in (None, token["refresh_token"]), refreshed)

    code = parse_qs(urlparse(location).query)["code"][0]
    replay = requests.post(discovery["token_endpoint"], timeout=10, data={
        "grant_type": "authorization_code", "client_id": CLIENT_ID, "code": code, "redirect_uri": CALLBACK,
        "code_verifier": verifier,
    })
    check("a replayed code is refused", replay.status_code == 403 and replay.json().get("error") == "invalid_grant",
          replay.text)


try:
    main()
except Exception as err:  # noqa: BLE001 - any crash is a failed check
    import traceback

    traceback.print_exc()
    check("the flow ran to its end", False, repr(err))
print(f"oidc: {passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
