// Linking at sign-in (`[linking] at_sign_in = "prompt"`, docs/linking-at-sign-in.md) in
// headless Chromium (Debian's): the @auth0/auth0-spa-js page of index.html signs in with
// the emulated google-oauth2 provider using the verified email of an existing database
// user; idlink's page "Link your accounts" asks for that account's password, links, and
// the app gets the database user (the older account, the primary) with two identities.
// A second user declines ("Continue without linking") and stays a separate Google user.
// Closes with `link-prompt: N passed, N failed`.
import http from "node:http";
import { readFile } from "node:fs/promises";
import { chromium } from "playwright-core";

const idlink = process.env.IDLINK_BASE_URL;
const appPort = Number(process.env.APP_PORT);
const adminToken = process.env.ADMIN_TOKEN;
const password = process.env.DB_PASSWORD;
const linkUser = { email: process.env.LINK_EMAIL, id: process.env.LINK_USER_ID };
const declineUser = { email: process.env.DECLINE_EMAIL, id: process.env.DECLINE_USER_ID };
const here = new URL(".", import.meta.url).pathname;
const axeSource = await readFile(here + "node_modules/axe-core/axe.min.js", "utf8");

let passed = 0;
let failed = 0;
const check = (name, ok, detail = "") => {
  if (ok) { passed++; console.log(`PASS ${name}`); } else { failed++; console.log(`FAIL ${name} ${detail}`); }
};

const app = http.createServer(async (req, res) => {
  const path = new URL(req.url, "http://x").pathname;
  if (path === "/auth0-spa-js.js") {
    res.writeHead(200, { "content-type": "text/javascript" });
    res.end(await readFile(here + "node_modules/@auth0/auth0-spa-js/dist/auth0-spa-js.production.js"));
  } else if (path === "/") {
    res.writeHead(200, { "content-type": "text/html" });
    res.end(await readFile(here + "index.html"));
  } else {
    res.writeHead(404);
    res.end();
  }
});
await new Promise((ok) => app.listen(appPort, "127.0.0.1", ok));

const admin = async (path) => {
  const response = await fetch(idlink + path, { headers: { authorization: "Bearer " + adminToken } });
  return { status: response.status, body: await response.json() };
};

// One sign-in with the emulated Google provider as `user`'s email, up to idlink's offer.
const googleSignIn = async (page, googleId, user) => {
  await page.goto(`http://localhost:${appPort}/?idlink=${encodeURIComponent(idlink)}`);
  await page.getByRole("button", { name: "Log in with Google" }).click();
  await page.getByLabel("User ID", { exact: true }).fill(googleId);
  await page.getByLabel("Email", { exact: true }).fill(user.email);
  await page.getByLabel("Email verified", { exact: true }).check();
  await page.getByRole("button", { name: "Continue" }).click();
  await page.getByRole("heading", { name: "Link your accounts" }).waitFor();
};

// axe-core on the offer page: no serious or critical accessibility violations.
const axe = async (page, name) => {
  await page.evaluate(axeSource + ";0");
  const result = await page.evaluate(() => window.axe.run(document, { resultTypes: ["violations"] }));
  const bad = result.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  check(`axe: no serious or critical violations on ${name}`, bad.length === 0,
    JSON.stringify(bad.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.map((n) => n.target) }))));
};

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
});
try {
  // Link: the offer, the other account's password, back at the app as the primary.
  const linking = await (await browser.newContext()).newPage();
  linking.setDefaultTimeout(20000);
  await googleSignIn(linking, "20666000111", linkUser);
  const offer = await linking.locator("main").textContent();
  check("the offer names the account's email", offer.includes(linkUser.email), offer);
  await axe(linking, "Link your accounts");
  await linking.getByLabel("Password", { exact: true }).fill("wrong-password-1");
  await linking.getByRole("button", { name: "Link accounts" }).click();
  const alert = await linking.getByRole("alert").textContent();
  check("a wrong password links nothing and says so", alert.includes("not the sign-in"), alert);
  await linking.getByLabel("Password", { exact: true }).fill(password);
  await linking.getByRole("button", { name: "Link accounts" }).click();
  await linking.locator("#social").filter({ hasText: "|" }).waitFor();
  const signedIn = await linking.locator("#social").textContent();
  check("the app signs the primary (the older database account) in", signedIn === linkUser.id, signedIn);
  const primary = await admin(`/api/v2/users/${encodeURIComponent(linkUser.id)}`);
  const identities = (primary.body.identities || []).map((i) => `${i.provider}|${i.user_id}`);
  check(
    "the primary has both identities",
    identities.length === 2 && identities[1] === "google-oauth2|20666000111",
    JSON.stringify(identities),
  );
  const gone = await admin(`/api/v2/users/${encodeURIComponent("google-oauth2|20666000111")}`);
  check("the Google user became a linked identity", gone.status === 404, String(gone.status));

  // Decline: signed in as the Google user, nothing linked.
  const declining = await (await browser.newContext()).newPage();
  declining.setDefaultTimeout(20000);
  await googleSignIn(declining, "20666000222", declineUser);
  await declining.getByRole("button", { name: "Continue without linking" }).click();
  await declining.locator("#social").filter({ hasText: "|" }).waitFor();
  const social = await declining.locator("#social").textContent();
  check("declining signs the Google user in", social === "google-oauth2|20666000222", social);
  const untouched = await admin(`/api/v2/users/${encodeURIComponent(declineUser.id)}`);
  check("declining links nothing", untouched.body.identities?.length === 1, JSON.stringify(untouched.body));

  const steps = await admin("/api/v2/logs?q=type:idlink_link_declined");
  check("the decline is in the audit log", steps.body.length === 1, JSON.stringify(steps.body));
} catch (err) {
  const pages = browser.contexts().flatMap((c) => c.pages());
  const page = pages[pages.length - 1];
  const where = page ? `${page.url()}\n${(await page.content()).slice(0, 1500)}` : "";
  check("the link-prompt flow ran to its end", false, `${err.stack || err}\n${where}`);
} finally {
  await browser.close();
  app.close();
}
console.log(`link-prompt: ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
