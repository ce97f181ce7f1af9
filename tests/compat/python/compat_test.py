"""Drives a running idlink with the official Auth0 Python SDK (auth0-python), using only
its public API: the whole account-linking story and the error mapping.

Environment (set by ../run.sh):
  IDLINK_MODE         http | https | emulate (idlink emulate over HTTP: retries counted)
  IDLINK_DOMAIN       host:port, e.g. 127.0.0.1:8443
  IDLINK_BASE_URL     http://host:port (HTTP mode: the explicit base URL)
  IDLINK_ADMIN_CLIENT_ID / IDLINK_ADMIN_CLIENT_SECRET
  IDLINK_RUN_ID       makes emails and social ids unique per run
HTTPS mode trusts the server's certificate through REQUESTS_CA_BUNDLE (authentication
API, `requests`) and SSL_CERT_FILE (Management API, `httpx`).

Prints one PASS/FAIL line per step and closes with `python: N passed, N failed`.
"""

from __future__ import annotations

import os
import re
import sys
import time
import traceback

from auth0.authentication import GetToken
from auth0.authentication.exceptions import Auth0Error
from auth0.management import (
    Auth0,
    BadRequestError,
    ConflictError,
    ForbiddenError,
    ManagementClient,
    NotFoundError,
    UnauthorizedError,
)
from auth0.management.core.api_error import ApiError  # as the SDK's README imports it

MODE = os.environ.get("IDLINK_MODE", "http")
DOMAIN = os.environ["IDLINK_DOMAIN"]
BASE_URL = os.environ.get("IDLINK_BASE_URL", f"{'https' if MODE == 'https' else 'http'}://{DOMAIN}")
CLIENT_ID = os.environ["IDLINK_ADMIN_CLIENT_ID"]
CLIENT_SECRET = os.environ["IDLINK_ADMIN_CLIENT_SECRET"]
RUN = os.environ.get("IDLINK_RUN_ID", str(int(time.time() * 1000)))
TAG = f"py-{MODE}-{RUN}"
AUDIENCE = f"https://{DOMAIN}/api/v2/"
REALM = "Username-Password-Authentication"
PASSWORD = "Compat-Passw0rd!-long-enough"

results: list[tuple[str, bool]] = []
state: dict = {}


def step(name):
    def wrap(fn):
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 — every failure is reported, then counted
            results.append((name, False))
            print(f"FAIL {name}: {type(exc).__name__}: {exc}")
            traceback.print_exc(limit=3, file=sys.stdout)
        else:
            results.append((name, True))
            print(f"PASS {name}")
        return fn

    return wrap


def eq(actual, expected, what=""):
    assert actual == expected, f"{what}: expected {expected!r}, got {actual!r}"


def error_code(exc) -> str:
    body = exc.body
    assert isinstance(body, dict), f"error body is not an object: {body!r}"
    for key in ("statusCode", "error", "message", "errorCode"):
        assert key in body, f"error body lacks {key}: {body!r}"
    eq(body["statusCode"], exc.status_code, "statusCode in body")
    return body["errorCode"]


def expect(error_type, code, call):
    try:
        call()
    except error_type as exc:
        eq(error_code(exc), code, f"{error_type.__name__} errorCode")
        return exc
    raise AssertionError(f"expected {error_type.__name__} ({code}), got no error")


def auth_client() -> GetToken:
    # GetToken takes a domain; its `protocol` option is what reaches a plain-HTTP server.
    protocol = "https" if MODE == "https" else "http"
    return GetToken(DOMAIN, CLIENT_ID, client_secret=CLIENT_SECRET, protocol=protocol)


def management(token: str):
    """A Management API client acting with `token`."""
    if MODE == "https":
        return ManagementClient(domain=DOMAIN, token=token)
    return Auth0(base_url=f"{BASE_URL}/api/v2", token=token)


def ids(identities):
    return [(i.provider, i.user_id) for i in identities]


# ---------------------------------------------------------------------------------------


@step("GetToken.client_credentials returns a Management API token")
def _():
    token = auth_client().client_credentials(audience=AUDIENCE)
    state["admin_token"] = token["access_token"]
    eq(token["token_type"], "Bearer", "token_type")
    eq(token["expires_in"], 86400, "expires_in")
    assert "update:users" in token["scope"].split(), token["scope"]


@step("Management client (SDK client-credentials path over HTTPS, else explicit base URL)")
def _():
    if MODE == "https":
        # Only a domain: the SDK's TokenProvider fetches and caches the token itself.
        state["admin"] = ManagementClient(domain=DOMAIN, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    else:
        state["admin"] = management(state["admin_token"])
    page = state["admin"].users.list(per_page=5, include_totals=True)
    assert isinstance(list(page), list)


@step("users.create: database users (primary and mode-A secondary)")
def _():
    admin = state["admin"]
    primary = admin.users.create(
        connection=REALM,
        email=f"{TAG}-primary@example.com",
        password=PASSWORD,
        email_verified=True,
        name="Primary Person",
        given_name="Primary",
        user_metadata={"plan": "pro", "prefs": {"theme": "dark"}},
        app_metadata={"roles": ["admin"]},
    )
    assert re.fullmatch(r"auth0\|[0-9a-f]{24}", primary.user_id), primary.user_id
    eq(primary.email, f"{TAG}-primary@example.com", "email")
    eq(primary.name, "Primary Person", "name")
    eq(primary.user_metadata, {"plan": "pro", "prefs": {"theme": "dark"}}, "user_metadata")
    eq(len(primary.identities), 1, "identities")
    main = primary.identities[0]
    eq((main.provider, main.connection, main.is_social), ("auth0", REALM, False), "main identity")
    eq(main.user_id, primary.user_id.split("|", 1)[1], "main identity user_id")
    state["primary"] = primary
    secondary = admin.users.create(
        connection=REALM,
        email=f"{TAG}-secondary@example.com",
        password=PASSWORD,
        email_verified=False,
        name="Secondary Person",
        nickname="second",
        user_metadata={"lost": True},
    )
    assert secondary.user_id.startswith("auth0|")
    state["secondary"] = secondary


@step("users.create: social users (google-oauth2; github with a numeric id)")
def _():
    admin = state["admin"]
    google_id = f"10{int(time.time() * 1000)}{os.getpid()}"
    google = admin.users.create(
        connection="google-oauth2",
        user_id=google_id,
        email=f"{TAG}-primary@example.com",  # same address as the primary
        email_verified=True,
        name="Google Person",
        given_name="Goo",
        picture="https://example.com/g.png",
        user_metadata={"discarded": True},
    )
    eq(google.user_id, f"google-oauth2|{google_id}", "google user_id")
    eq(ids(google.identities), [("google-oauth2", google_id)], "google identities")
    eq(google.identities[0].is_social, True, "google isSocial")
    state["google_id"] = google_id

    github_id = int(time.time() * 1000) % 1_000_000_000 + os.getpid()
    # The SDK annotates user_id as str, but sends what it is given: a GitHub id is a number.
    github = admin.users.create(connection="github", user_id=github_id, nickname="octocat", name="Octo Cat")
    eq(github.user_id, f"github|{github_id}", "github user_id")
    identity = github.identities[0]
    eq((identity.provider, identity.connection, identity.is_social), ("github", "github", True), "github identity")
    eq(str(identity.user_id), str(github_id), "github identity user_id")
    state["github_id"] = github_id


@step("users.identities.link by provider + user_id (mode B, update:users)")
def _():
    admin, primary = state["admin"], state["primary"]
    identities = admin.users.identities.link(primary.user_id, provider="google-oauth2", user_id=state["google_id"])
    eq(ids(identities), [("auth0", primary.identities[0].user_id), ("google-oauth2", state["google_id"])], "order")
    linked = identities[1]
    eq((linked.connection, linked.is_social), ("google-oauth2", True), "google identity")
    assert linked.profile_data is not None, "profileData missing"
    eq(linked.profile_data.email, f"{TAG}-primary@example.com", "profileData.email")
    eq(linked.profile_data.name, "Google Person", "profileData.name")
    eq(linked.profile_data.given_name, "Goo", "profileData.given_name")
    eq(linked.profile_data.email_verified, True, "profileData.email_verified")
    eq(getattr(linked.profile_data, "picture", None), "https://example.com/g.png", "profileData.picture (extra key)")


@step("users.identities.link with an integer user_id (github)")
def _():
    admin, primary = state["admin"], state["primary"]
    identities = admin.users.identities.link(primary.user_id, provider="github", user_id=state["github_id"])
    eq([i.provider for i in identities], ["auth0", "google-oauth2", "github"], "order")
    eq(str(identities[2].user_id), str(state["github_id"]), "github user_id")
    eq(identities[2].profile_data.name, "Octo Cat", "profileData.name")


@step("GetToken.login (password-realm): mode-A access token and secondary ID token")
def _():
    primary, secondary = state["primary"], state["secondary"]
    caller = auth_client().login(
        username=primary.email,
        password=PASSWORD,
        realm=REALM,
        audience=AUDIENCE,
        scope="openid update:current_user_identities",
    )
    eq(caller["token_type"], "Bearer", "token_type")
    assert "update:current_user_identities" in caller["scope"].split(), caller["scope"]
    state["primary_token"] = caller["access_token"]
    second = auth_client().login(
        username=secondary.email, password=PASSWORD, realm=REALM, scope="openid profile email"
    )
    assert second.get("id_token"), f"no id_token: {second}"
    state["secondary_id_token"] = second["id_token"]
    # A token with no Management scope at all, for the forbidden case.
    bare = auth_client().login(username=secondary.email, password=PASSWORD, realm=REALM, audience=AUDIENCE, scope="openid")
    state["scopeless_token"] = bare["access_token"]


@step("GetToken.login with a wrong password raises Auth0Error invalid_grant")
def _():
    try:
        auth_client().login(username=state["primary"].email, password="wrong", realm=REALM)
    except Auth0Error as exc:
        eq(exc.error_code, "invalid_grant", "error_code")
        eq(exc.status_code, 403, "status")
    else:
        raise AssertionError("no error")


@step("users.identities.link with link_with (mode A, the user's own token)")
def _():
    primary, secondary = state["primary"], state["secondary"]
    as_user = management(state["primary_token"])
    identities = as_user.users.identities.link(primary.user_id, link_with=state["secondary_id_token"])
    eq(
        [i.provider for i in identities],
        ["auth0", "google-oauth2", "github", "auth0"],
        "order",
    )
    last = identities[3]
    eq((last.user_id, last.connection, last.is_social), (secondary.user_id.split("|", 1)[1], REALM, False), "secondary")
    eq(last.profile_data.email, secondary.email, "profileData.email")
    eq(last.profile_data.email_verified, False, "profileData.email_verified")
    eq(last.profile_data.name, "Secondary Person", "profileData.name")


@step("users.get: the primary keeps its profile and metadata, identities in order")
def _():
    admin, primary = state["admin"], state["primary"]
    user = admin.users.get(primary.user_id)
    eq(user.user_id, primary.user_id, "user_id")
    eq(user.email, primary.email, "email")
    eq(user.name, "Primary Person", "name")
    eq(user.user_metadata, {"plan": "pro", "prefs": {"theme": "dark"}}, "user_metadata")
    eq(user.app_metadata, {"roles": ["admin"]}, "app_metadata")
    eq([i.provider for i in user.identities], ["auth0", "google-oauth2", "github", "auth0"], "identities")
    eq([i.is_social for i in user.identities], [False, True, True, False], "isSocial")
    assert user.logins_count >= 1, user.logins_count
    assert user.created_at is not None and user.updated_at is not None


@step("linked secondaries disappear: users.get raises NotFoundError inexistent_user")
def _():
    admin = state["admin"]
    expect(NotFoundError, "inexistent_user", lambda: admin.users.get(f"google-oauth2|{state['google_id']}"))
    expect(NotFoundError, "inexistent_user", lambda: admin.users.get(state["secondary"].user_id))


@step("users.list_users_by_email and users.list(q=email) find only the primary")
def _():
    admin, primary = state["admin"], state["primary"]
    found = admin.users.list_users_by_email(email=primary.email)
    eq([u.user_id for u in found], [primary.user_id], "by email")
    eq(len(found[0].identities), 4, "identities")
    page = admin.users.list(q=f'email:"{primary.email}"', include_totals=True, per_page=10)
    eq([u.user_id for u in page], [primary.user_id], "search")


@step("linking an identity that is already there raises ConflictError identity_conflict")
def _():
    admin, primary = state["admin"], state["primary"]
    expect(
        ConflictError,
        "identity_conflict",
        lambda: admin.users.identities.link(primary.user_id, provider="google-oauth2", user_id=state["google_id"]),
    )


@step("unlinking the main identity raises BadRequestError invalid_uri")
def _():
    admin, primary = state["admin"], state["primary"]
    main_id = primary.user_id.split("|", 1)[1]
    expect(BadRequestError, "invalid_uri", lambda: admin.users.identities.delete(primary.user_id, "auth0", main_id))


@step("a token without the scope raises ForbiddenError insufficient_scope")
def _():
    primary = state["primary"]
    scopeless = management(state["scopeless_token"])
    expect(
        ForbiddenError,
        "insufficient_scope",
        lambda: scopeless.users.identities.link(primary.user_id, provider="github", user_id=1),
    )


@step("a user token acting on another user raises ForbiddenError unowned_resource")
def _():
    as_user = management(state["primary_token"])
    other = f"google-oauth2|{state['google_id']}"
    expect(ForbiddenError, "unowned_resource", lambda: as_user.users.identities.link(other, link_with="x.y.z"))


@step("a bad token raises UnauthorizedError invalid_token")
def _():
    bad = management("not-a-jwt")
    expect(UnauthorizedError, "invalid_token", lambda: bad.users.get(state["primary"].user_id))


@step("link_with a garbage token raises BadRequestError invalid_link_with")
def _():
    as_user = management(state["primary_token"])
    expect(
        BadRequestError,
        "invalid_link_with",
        lambda: as_user.users.identities.link(state["primary"].user_id, link_with="not.a.token"),
    )


@step("users.identities.delete (unlink google) returns the remaining identities")
def _():
    admin, primary = state["admin"], state["primary"]
    remaining = admin.users.identities.delete(primary.user_id, "google-oauth2", state["google_id"])
    eq([i.provider for i in remaining], ["auth0", "github", "auth0"], "remaining")
    eq(remaining[0].is_social, False, "main isSocial")


@step("users.get: the unlinked identity is a new standalone user without metadata")
def _():
    admin, primary = state["admin"], state["primary"]
    user = admin.users.get(f"google-oauth2|{state['google_id']}")
    eq(ids(user.identities), [("google-oauth2", state["google_id"])], "identities")
    eq(user.identities[0].is_social, True, "isSocial")
    eq(user.email, primary.email, "email from profileData")
    eq(user.name, "Google Person", "name from profileData")
    assert not user.user_metadata, f"user_metadata kept: {user.user_metadata}"
    assert not user.app_metadata, f"app_metadata kept: {user.app_metadata}"


@step("users.identities.delete (unlink github by its string id) and read it back")
def _():
    admin, primary = state["admin"], state["primary"]
    remaining = admin.users.identities.delete(primary.user_id, "github", str(state["github_id"]))
    eq([i.provider for i in remaining], ["auth0", "auth0"], "remaining")
    user = admin.users.get(f"github|{state['github_id']}")
    eq(user.nickname, "octocat", "nickname from profileData")
    eq(ids(user.identities), [("github", user.identities[0].user_id)], "identities")
    eq(str(user.identities[0].user_id), str(state["github_id"]), "github user_id")
    eq(user.name, "Octo Cat", "name")


@step("unlinking an identity that is not there is a 200 no-op (as recorded on Auth0)")
def _():
    # Auth0 answers 200 with the identities unchanged (recorded: ruby-auth0's unlink).
    admin, primary = state["admin"], state["primary"]
    before = admin.users.get(primary.user_id).identities
    remaining = admin.users.identities.delete(primary.user_id, "google-oauth2", state["google_id"])
    eq(ids(remaining), ids(before), "identities unchanged")


@step("users.list_users_by_email now finds the primary and the recreated user")
def _():
    admin, primary = state["admin"], state["primary"]
    found = admin.users.list_users_by_email(email=primary.email)
    eq(
        sorted(u.user_id for u in found),
        sorted([primary.user_id, f"google-oauth2|{state['google_id']}"]),
        "by email",
    )


@step("users.delete: the primary and its linked identities go; the others too")
def _():
    admin, primary = state["admin"], state["primary"]
    eq(admin.users.delete(primary.user_id), None, "delete result")
    expect(NotFoundError, "inexistent_user", lambda: admin.users.get(primary.user_id))
    # The mode-A secondary was linked to the primary and went with it.
    expect(NotFoundError, "inexistent_user", lambda: admin.users.get(state["secondary"].user_id))
    admin.users.delete(f"google-oauth2|{state['google_id']}")
    admin.users.delete(f"github|{state['github_id']}")
    eq(admin.users.list_users_by_email(email=primary.email), [], "by email after delete")



@step("connections.list(name=…) gives the connection_id go-auth0 links with; connections.get reads it")
def _():
    # go-auth0 looks the connection up by name before linking (recorded in its
    # TestUserManager_Link); the same through this SDK, then a link by connection_id.
    admin = state["admin"]
    found = list(admin.connections.list(name=REALM, fields="id,name,strategy"))
    eq([(c.name, c.strategy) for c in found], [(REALM, "auth0")], "lookup by name")
    connection_id = found[0].id
    assert re.fullmatch(r"con_[A-Za-z0-9]{16}", connection_id), connection_id
    eq(admin.connections.get(connection_id).name, REALM, "connections.get")
    a = admin.users.create(connection=REALM, email=f"{TAG}-con-a@example.com", password=PASSWORD)
    b = admin.users.create(connection=REALM, email=f"{TAG}-con-b@example.com", password=PASSWORD)
    linked = admin.users.identities.link(
        a.user_id, provider="auth0", user_id=b.user_id, connection_id=connection_id
    )
    eq([i.provider for i in linked], ["auth0", "auth0"], "linked by connection_id")
    eq(linked[0].profile_data.email, a.email, "the primary's profileData")
    admin.users.delete(a.user_id)


def control(method: str, path: str, body=None):
    """A call to the emulator's control API."""
    import json
    import urllib.request

    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"{BASE_URL}/idlink/v1{path}", data=data, method=method,
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        eq(response.status, 200, f"{method} {path}")
        return json.loads(response.read())


if MODE == "emulate":

    @step("emulator faults: the SDK retries a 503 twice and then gives up (3 attempts)")
    def _():
        admin = state["admin"]
        user = admin.users.create(connection=REALM, email=f"{TAG}-faults@example.com", password=PASSWORD)
        rule = lambda times: {"rules": [{"method": "GET", "path": "/api/v2/users/*", "status": 503, "times": times}]}  # noqa: E731
        control("PUT", "/faults", rule(2))
        eq(admin.users.get(user.user_id).user_id, user.user_id, "answered after the faults")
        eq(control("GET", "/faults")["rules"][0]["hits"], 2, "two faulted attempts, then the answer")
        control("PUT", "/faults", rule(10))
        try:
            admin.users.get(user.user_id)
        except ApiError as exc:
            eq(exc.status_code, 503, "the SDK gave up on")
        else:
            raise AssertionError("the SDK did not give up")
        eq(control("GET", "/faults")["rules"][0]["hits"], 3, "1 attempt + 2 retries")
        control("DELETE", "/faults")
        admin.users.delete(user.user_id)

@step("jobs: users_imports.create (with idlink's identities), jobs.get, errors.get, users_exports.create")
def _():
    import gzip
    import io
    import json as jsonlib
    import urllib.request

    admin = state["admin"]
    connection_id = list(admin.connections.list(name=REALM, fields="id"))[0].id
    users = [
        {"email": f"{TAG}-job-a@example.com", "email_verified": True, "user_id": f"{RUN}a",
         "identities": [
             {"provider": "auth0", "user_id": f"{RUN}a", "connection": REALM},
             {"provider": "github", "user_id": f"{RUN}77", "connection": "github"}]},
        {"email": f"{TAG}-job-b@example.com", "email_verified": 5},
    ]
    job = admin.jobs.users_imports.create(
        users=("users.json", io.BytesIO(jsonlib.dumps(users).encode()), "application/json"),
        connection_id=connection_id, upsert=False, external_id=f"{TAG}-import",
    )
    eq((job.status, job.type, job.connection_id), ("pending", "users_import", connection_id), "created job")
    for _ in range(200):
        current = admin.jobs.get(job.id)
        if current.status in ("completed", "failed"):
            break
        time.sleep(0.05)
    eq(current.status, "completed", "job status")
    eq((current.summary.inserted, current.summary.failed, current.summary.total), (1, 1, 2), "summary")
    errors = admin.jobs.errors.get(job.id)
    eq(len(errors), 1, "errors")
    eq(errors[0].errors[0].code, "INVALID_TYPE", "error code")
    linked = admin.users.get(f"auth0|{RUN}a")
    eq(ids(linked.identities), [("auth0", f"{RUN}a"), ("github", f"{RUN}77")], "imported linked")

    export = admin.jobs.users_exports.create(format="json", fields=[{"name": "email"}, {"name": "user_id"}])
    eq(export.type, "users_export", "export type")
    for _ in range(200):
        current = admin.jobs.get(export.id)
        if current.status in ("completed", "failed"):
            break
        time.sleep(0.05)
    eq(current.status, "completed", "export status")
    location = current.location
    context = None
    if MODE == "https":
        import ssl
        context = ssl.create_default_context(cafile=os.environ.get("SSL_CERT_FILE"))
    with urllib.request.urlopen(location, context=context) as response:
        lines = gzip.decompress(response.read()).decode().splitlines()
    exported = [jsonlib.loads(line) for line in lines]
    assert {"email": f"{TAG}-job-a@example.com", "user_id": f"auth0|{RUN}a"} in exported, exported[:3]
    admin.users.delete(f"auth0|{RUN}a")


passed = sum(1 for _, ok in results if ok)
failed = len(results) - passed
print(f"python ({MODE}): {passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
