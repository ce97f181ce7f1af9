// Drives a running idlink with the official Auth0 Node SDK (`auth0` on npm), using only
// its public API: the whole account-linking story and the error mapping.
//
// Environment (set by ../run.sh):
//   IDLINK_MODE         http | https | emulate (idlink emulate over HTTP: retries counted)
//   IDLINK_DOMAIN       host:port, e.g. 127.0.0.1:8443
//   IDLINK_BASE_URL     http://host:port (HTTP mode: the explicit base URL)
//   IDLINK_ADMIN_CLIENT_ID / IDLINK_ADMIN_CLIENT_SECRET
//   IDLINK_RUN_ID       makes emails and social ids unique per run
// HTTPS mode trusts the server's certificate through NODE_EXTRA_CA_CERTS.
//
// Prints one PASS/FAIL/SKIP line per step and closes with
// `node (MODE): N passed, N failed, N skipped`.

import assert from "node:assert/strict";
import { ManagementClient, ManagementError, Management } from "auth0";
import { UsersClient } from "auth0/users";
import { AuthenticationClient } from "auth0/legacy";

const MODE = process.env.IDLINK_MODE ?? "http";
const DOMAIN = process.env.IDLINK_DOMAIN;
const BASE_URL = process.env.IDLINK_BASE_URL ?? `${MODE}://${DOMAIN}`;
const CLIENT_ID = process.env.IDLINK_ADMIN_CLIENT_ID;
const CLIENT_SECRET = process.env.IDLINK_ADMIN_CLIENT_SECRET;
const RUN = process.env.IDLINK_RUN_ID ?? String(Date.now());
const TAG = `node-${MODE}-${RUN}`;
const AUDIENCE = `https://${DOMAIN}/api/v2/`;
const REALM = "Username-Password-Authentication";
const PASSWORD = "Compat-Passw0rd!-long-enough";

const results = [];
const state = {};

class Skip extends Error {}

async function step(name, fn) {
  try {
    await fn();
    results.push("pass");
    console.log(`PASS ${name}`);
  } catch (err) {
    if (err instanceof Skip) {
      results.push("skip");
      console.log(`SKIP ${name}: ${err.message}`);
      return;
    }
    results.push("fail");
    console.log(`FAIL ${name}: ${err?.stack ?? err}`);
    if (err?.body) console.log(`  body: ${JSON.stringify(err.body)}`);
  }
}

/** Asserts the Auth0 error body and returns its errorCode. */
function errorCode(err) {
  const body = err.body;
  assert.equal(typeof body, "object", `error body is not an object: ${body}`);
  for (const key of ["statusCode", "error", "message", "errorCode"]) {
    assert.ok(key in body, `error body lacks ${key}: ${JSON.stringify(body)}`);
  }
  assert.equal(body.statusCode, err.statusCode, "statusCode in body");
  return body.errorCode;
}

async function expectError(ErrorType, code, call) {
  let caught;
  try {
    await call();
  } catch (err) {
    caught = err;
  }
  assert.ok(caught, `expected ${ErrorType.name} (${code}), got no error`);
  assert.ok(caught instanceof ErrorType, `expected ${ErrorType.name}, got ${caught?.constructor?.name}: ${caught}`);
  assert.equal(errorCode(caught), code, `${ErrorType.name} errorCode`);
  return caught;
}

// The authentication client takes only a domain and always calls https://{domain}.
// Over plain HTTP it is given its documented `fetch` option, which sends the same
// request to the http:// URL instead.
function authClient() {
  const options = { domain: DOMAIN, clientId: CLIENT_ID, clientSecret: CLIENT_SECRET };
  if (MODE !== "https") {
    options.fetch = (url, init) => fetch(String(url).replace(`https://${DOMAIN}`, `http://${DOMAIN}`), init);
  }
  return new AuthenticationClient(options);
}

/** The `users` Management API acting with `token`. */
function usersAs(token) {
  if (MODE === "https") return new ManagementClient({ domain: DOMAIN, token }).users;
  return new UsersClient({ baseUrl: `${BASE_URL}/api/v2`, token });
}

const ids = (identities) => identities.map((i) => [i.provider, i.user_id]);
const providers = (identities) => identities.map((i) => i.provider);
const mainId = (user) => user.user_id.split("|").slice(1).join("|");

await step("AuthenticationClient.oauth.clientCredentialsGrant returns a Management API token", async () => {
  const { data } = await authClient().oauth.clientCredentialsGrant({ audience: AUDIENCE });
  state.adminToken = data.access_token;
  assert.equal(data.token_type, "Bearer");
  assert.equal(data.expires_in, 86400);
  assert.ok(data.scope.split(" ").includes("update:users"), data.scope);
});

await step("Management client (SDK client-credentials path over HTTPS, else explicit base URL)", async () => {
  if (MODE === "https") {
    // Only a domain: the SDK fetches and caches the token itself.
    state.users = new ManagementClient({ domain: DOMAIN, clientId: CLIENT_ID, clientSecret: CLIENT_SECRET }).users;
  } else {
    state.users = usersAs(state.adminToken);
  }
  const page = await state.users.list({ per_page: 5, include_totals: true });
  assert.ok(Array.isArray(page.data), "page.data");
});

await step("users.create: database users (primary and mode-A secondary)", async () => {
  const primary = await state.users.create({
    connection: REALM,
    email: `${TAG}-primary@example.com`,
    password: PASSWORD,
    email_verified: true,
    name: "Primary Person",
    given_name: "Primary",
    user_metadata: { plan: "pro", prefs: { theme: "dark" } },
    app_metadata: { roles: ["admin"] },
  });
  assert.match(primary.user_id, /^auth0\|[0-9a-f]{24}$/);
  assert.equal(primary.email, `${TAG}-primary@example.com`);
  assert.deepEqual(primary.user_metadata, { plan: "pro", prefs: { theme: "dark" } });
  assert.equal(primary.identities.length, 1);
  const main = primary.identities[0];
  assert.deepEqual([main.provider, main.connection, main.isSocial, main.user_id], ["auth0", REALM, false, mainId(primary)]);
  state.primary = primary;
  state.secondary = await state.users.create({
    connection: REALM,
    email: `${TAG}-secondary@example.com`,
    password: PASSWORD,
    email_verified: false,
    name: "Secondary Person",
    nickname: "second",
    user_metadata: { lost: true },
  });
  assert.match(state.secondary.user_id, /^auth0\|/);
});

await step("users.create: social users (google-oauth2; github with a numeric id)", async () => {
  const googleId = `20${Date.now()}${process.pid}`;
  const google = await state.users.create({
    connection: "google-oauth2",
    user_id: googleId,
    email: state.primary.email, // same address as the primary
    email_verified: true,
    name: "Google Person",
    given_name: "Goo",
    picture: "https://example.com/g.png",
    user_metadata: { discarded: true },
  });
  assert.equal(google.user_id, `google-oauth2|${googleId}`);
  assert.deepEqual(ids(google.identities), [["google-oauth2", googleId]]);
  assert.equal(google.identities[0].isSocial, true);
  state.googleId = googleId;

  const githubId = (Date.now() % 1_000_000_000) + process.pid + 7;
  // The SDK types user_id as a string but sends what it is given: a GitHub id is a number.
  const github = await state.users.create({ connection: "github", user_id: githubId, nickname: "octocat", name: "Octo Cat" });
  assert.equal(github.user_id, `github|${githubId}`);
  const identity = github.identities[0];
  assert.deepEqual([identity.provider, identity.connection, identity.isSocial], ["github", "github", true]);
  assert.equal(String(identity.user_id), String(githubId));
  state.githubId = githubId;
});

await step("users.identities.link by provider + user_id (mode B, update:users)", async () => {
  const identities = await state.users.identities.link(state.primary.user_id, {
    provider: "google-oauth2",
    user_id: state.googleId,
  });
  assert.deepEqual(ids(identities), [
    ["auth0", mainId(state.primary)],
    ["google-oauth2", state.googleId],
  ]);
  const linked = identities[1];
  assert.deepEqual([linked.connection, linked.isSocial], ["google-oauth2", true]);
  assert.equal(linked.profileData.email, state.primary.email);
  assert.equal(linked.profileData.name, "Google Person");
  assert.equal(linked.profileData.given_name, "Goo");
  assert.equal(linked.profileData.email_verified, true);
  assert.equal(linked.profileData.picture, "https://example.com/g.png");
});

await step("users.identities.link with an integer user_id (github)", async () => {
  const identities = await state.users.identities.link(state.primary.user_id, {
    provider: "github",
    user_id: state.githubId,
  });
  assert.deepEqual(providers(identities), ["auth0", "google-oauth2", "github"]);
  assert.equal(String(identities[2].user_id), String(state.githubId));
  assert.equal(identities[2].profileData.name, "Octo Cat");
});

await step("AuthenticationClient.oauth.passwordGrant (realm): mode-A access token", async () => {
  const { data } = await authClient().oauth.passwordGrant({
    username: state.primary.email,
    password: PASSWORD,
    realm: REALM,
    audience: AUDIENCE,
    scope: "update:current_user_identities",
  });
  assert.equal(data.token_type, "Bearer");
  assert.ok(data.scope.split(" ").includes("update:current_user_identities"), data.scope);
  state.primaryToken = data.access_token;
  const bare = await authClient().oauth.passwordGrant({
    username: state.secondary.email,
    password: PASSWORD,
    realm: REALM,
    audience: AUDIENCE,
  });
  state.scopelessToken = bare.data.access_token;
});

await step("AuthenticationClient.oauth.passwordGrant: secondary ID token, validated by the SDK", async () => {
  if (MODE !== "https") {
    // The SDK checks every ID token against iss https://{domain}/ and keys fetched from
    // https://{domain}/.well-known/jwks.json; a plain-HTTP server cannot satisfy that.
    throw new Skip("the Node SDK validates ID tokens only against https://{domain}/ (covered by the HTTPS run)");
  }
  const { data } = await authClient().oauth.passwordGrant({
    username: state.secondary.email,
    password: PASSWORD,
    realm: REALM,
    scope: "openid profile email",
  });
  assert.ok(data.id_token, "id_token");
  state.secondaryIdToken = data.id_token;
});

await step("AuthenticationClient.oauth.passwordGrant with a wrong password raises invalid_grant", async () => {
  let caught;
  try {
    await authClient().oauth.passwordGrant({ username: state.primary.email, password: "wrong", realm: REALM });
  } catch (err) {
    caught = err;
  }
  assert.ok(caught, "no error");
  assert.equal(caught.error, "invalid_grant");
  assert.equal(caught.statusCode, 403);
});

await step("users.identities.link with link_with (mode A, the user's own token)", async () => {
  if (!state.secondaryIdToken) throw new Skip("needs the secondary ID token (HTTPS run)");
  const identities = await usersAs(state.primaryToken).identities.link(state.primary.user_id, {
    link_with: state.secondaryIdToken,
  });
  assert.deepEqual(providers(identities), ["auth0", "google-oauth2", "github", "auth0"]);
  const last = identities[3];
  assert.deepEqual([last.user_id, last.connection, last.isSocial], [mainId(state.secondary), REALM, false]);
  assert.equal(last.profileData.email, state.secondary.email);
  assert.equal(last.profileData.email_verified, false);
  assert.equal(last.profileData.name, "Secondary Person");
  state.modeALinked = true;
});

const expectedProviders = () =>
  state.modeALinked ? ["auth0", "google-oauth2", "github", "auth0"] : ["auth0", "google-oauth2", "github"];

await step("users.get: the primary keeps its profile and metadata, identities in order", async () => {
  const user = await state.users.get(state.primary.user_id);
  assert.equal(user.user_id, state.primary.user_id);
  assert.equal(user.email, state.primary.email);
  assert.equal(user.name, "Primary Person");
  assert.deepEqual(user.user_metadata, { plan: "pro", prefs: { theme: "dark" } });
  assert.deepEqual(user.app_metadata, { roles: ["admin"] });
  assert.deepEqual(providers(user.identities), expectedProviders());
  assert.deepEqual(
    user.identities.map((i) => i.isSocial),
    expectedProviders().map((p) => p !== "auth0"),
  );
  assert.ok(user.logins_count >= 1, `logins_count ${user.logins_count}`);
  assert.ok(user.created_at && user.updated_at);
});

await step("linked secondaries disappear: users.get raises NotFoundError inexistent_user", async () => {
  await expectError(Management.NotFoundError, "inexistent_user", () => state.users.get(`google-oauth2|${state.googleId}`));
  if (state.modeALinked) {
    await expectError(Management.NotFoundError, "inexistent_user", () => state.users.get(state.secondary.user_id));
  }
});

await step("users.listUsersByEmail and users.list(q=email) find only the primary", async () => {
  const found = await state.users.listUsersByEmail({ email: state.primary.email });
  assert.deepEqual(
    found.map((u) => u.user_id),
    [state.primary.user_id],
  );
  assert.equal(found[0].identities.length, expectedProviders().length);
  const page = await state.users.list({ q: `email:"${state.primary.email}"`, include_totals: true, per_page: 10 });
  const all = [];
  for await (const user of page) all.push(user.user_id);
  assert.deepEqual(all, [state.primary.user_id]);
});

await step("linking an identity that is already there raises ConflictError identity_conflict", async () => {
  await expectError(Management.ConflictError, "identity_conflict", () =>
    state.users.identities.link(state.primary.user_id, { provider: "google-oauth2", user_id: state.googleId }),
  );
});

await step("unlinking the main identity raises BadRequestError invalid_uri", async () => {
  await expectError(Management.BadRequestError, "invalid_uri", () =>
    state.users.identities.delete(state.primary.user_id, "auth0", mainId(state.primary)),
  );
});

await step("a token without the scope raises ForbiddenError insufficient_scope", async () => {
  await expectError(Management.ForbiddenError, "insufficient_scope", () =>
    usersAs(state.scopelessToken).identities.link(state.primary.user_id, { provider: "github", user_id: 1 }),
  );
});

await step("a user token acting on another user raises ForbiddenError unowned_resource", async () => {
  await expectError(Management.ForbiddenError, "unowned_resource", () =>
    usersAs(state.primaryToken).identities.link(`google-oauth2|${state.googleId}`, { link_with: "x.y.z" }),
  );
});

await step("a bad token raises UnauthorizedError invalid_token", async () => {
  await expectError(Management.UnauthorizedError, "invalid_token", () => usersAs("not-a-jwt").get(state.primary.user_id));
});

await step("link_with a garbage token raises BadRequestError invalid_link_with", async () => {
  await expectError(Management.BadRequestError, "invalid_link_with", () =>
    usersAs(state.primaryToken).identities.link(state.primary.user_id, { link_with: "not.a.token" }),
  );
});

await step("users.identities.delete (unlink google) returns the remaining identities", async () => {
  const remaining = await state.users.identities.delete(state.primary.user_id, "google-oauth2", state.googleId);
  assert.deepEqual(
    providers(remaining),
    expectedProviders().filter((p) => p !== "google-oauth2"),
  );
  assert.equal(remaining[0].isSocial, false);
});

await step("users.get: the unlinked identity is a new standalone user without metadata", async () => {
  const user = await state.users.get(`google-oauth2|${state.googleId}`);
  assert.deepEqual(ids(user.identities), [["google-oauth2", state.googleId]]);
  assert.equal(user.identities[0].isSocial, true);
  assert.equal(user.email, state.primary.email);
  assert.equal(user.name, "Google Person");
  assert.ok(!user.user_metadata || Object.keys(user.user_metadata).length === 0, JSON.stringify(user.user_metadata));
  assert.ok(!user.app_metadata || Object.keys(user.app_metadata).length === 0, JSON.stringify(user.app_metadata));
});

await step("users.identities.delete (unlink github by its string id) and read it back", async () => {
  const remaining = await state.users.identities.delete(state.primary.user_id, "github", String(state.githubId));
  assert.ok(!providers(remaining).includes("github"));
  const user = await state.users.get(`github|${state.githubId}`);
  assert.equal(user.nickname, "octocat");
  assert.equal(user.name, "Octo Cat");
  assert.equal(String(user.identities[0].user_id), String(state.githubId));
});

await step("unlinking an identity that is not there is a 200 no-op (as recorded on Auth0)", async () => {
  // Auth0 answers 200 with the identities unchanged (recorded: ruby-auth0's unlink).
  const before = (await state.users.get(state.primary.user_id)).identities;
  const remaining = await state.users.identities.delete(state.primary.user_id, "google-oauth2", state.googleId);
  assert.deepEqual(providers(remaining), providers(before));
});

await step("users.listUsersByEmail now finds the primary and the recreated user", async () => {
  const found = await state.users.listUsersByEmail({ email: state.primary.email });
  assert.deepEqual(found.map((u) => u.user_id).sort(), [state.primary.user_id, `google-oauth2|${state.googleId}`].sort());
});

await step("users.delete: the primary and its linked identities go; the others too", async () => {
  await state.users.delete(state.primary.user_id);
  await expectError(Management.NotFoundError, "inexistent_user", () => state.users.get(state.primary.user_id));
  if (state.modeALinked) {
    await expectError(Management.NotFoundError, "inexistent_user", () => state.users.get(state.secondary.user_id));
  } else {
    await state.users.delete(state.secondary.user_id);
  }
  await state.users.delete(`google-oauth2|${state.googleId}`);
  await state.users.delete(`github|${state.githubId}`);
  assert.deepEqual(await state.users.listUsersByEmail({ email: state.primary.email }), []);
});

// Emulator mode: the SDK's retries, counted by the emulator's fault injection.
async function control(method, path, body) {
  const response = await fetch(`${BASE_URL}/idlink/v1${path}`, {
    method,
    headers: { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  assert.equal(response.status, 200, `${method} ${path}`);
  return response.json();
}

await step("emulator faults: the SDK retries a 503 twice and then gives up (3 attempts)", async () => {
  if (MODE !== "emulate") throw new Skip("only against idlink emulate");
  const user = await state.users.create({ connection: REALM, email: `${TAG}-faults@example.com`, password: PASSWORD });
  const rule = (times) => ({ rules: [{ method: "GET", path: "/api/v2/users/*", status: 503, times }] });
  await control("PUT", "/faults", rule(2));
  const got = await state.users.get(user.user_id);
  assert.equal(got.user_id, user.user_id);
  assert.equal((await control("GET", "/faults")).rules[0].hits, 2, "two faulted attempts, then the answer");
  await control("PUT", "/faults", rule(10));
  let caught;
  try {
    await state.users.get(user.user_id);
  } catch (err) {
    caught = err;
  }
  assert.ok(caught, "the SDK gave up");
  assert.equal(caught.statusCode, 503);
  assert.equal((await control("GET", "/faults")).rules[0].hits, 3, "1 attempt + 2 retries");
  await control("DELETE", "/faults");
  await state.users.delete(user.user_id);
});

const count = (kind) => results.filter((r) => r === kind).length;
console.log(`node (${MODE}): ${count("pass")} passed, ${count("fail")} failed, ${count("skip")} skipped`);
process.exit(count("fail") ? 1 : 0);
