// Headless Chromium (Debian's, never a downloaded build) drives index.html, a page using
// @auth0/auth0-spa-js, against a live idlink: a database user signs in through idlink's
// login page, then an emulated google-oauth2 user through the identity-provider page;
// the page links them with mode A (link_with = the social user's ID token, the primary's
// own token as bearer) and shows the primary's two identities.
// Closes with `browser: N passed, N failed`.
import http from "node:http";
import { readFile } from "node:fs/promises";
import { chromium } from "playwright-core";

const idlink = process.env.IDLINK_BASE_URL;
const appPort = Number(process.env.APP_PORT);
const email = process.env.DB_EMAIL;
const password = process.env.DB_PASSWORD;
const here = new URL(".", import.meta.url).pathname;

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

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
});
try {
  const page = await browser.newPage();
  page.setDefaultTimeout(20000);
  if (process.env.BROWSER_DEBUG) {
    page.on("console", (m) => console.log("console:", m.text()));
    page.on("request", (r) => console.log("request:", r.method(), r.url().slice(0, 160)));
    page.on("response", (r) => console.log("response:", r.status(), r.url().slice(0, 100)));
  }
  const origin = `http://localhost:${appPort}`;
  await page.goto(`${origin}/?idlink=${encodeURIComponent(idlink)}`);

  await page.getByRole("button", { name: "Log in with the database" }).click();
  await page.getByLabel("Email", { exact: true }).fill(email);
  await page.getByLabel("Password", { exact: true }).fill(password);
  await page.getByRole("button", { name: "Continue" }).click();
  await page.locator("#primary").filter({ hasText: "auth0|" }).waitFor();
  const primary = await page.locator("#primary").textContent();
  check("database user signed in through the login page", primary.startsWith("auth0|"), primary);

  await page.getByRole("button", { name: "Log in with Google" }).click();
  await page.getByLabel("User ID", { exact: true }).fill("10555000111");
  await page.getByLabel("Email", { exact: true }).fill("browser-social@example.com");
  await page.getByLabel("Email verified", { exact: true }).check();
  await page.getByLabel("Name", { exact: true }).fill("Social Browser");
  await page.getByRole("button", { name: "Continue" }).click();
  await page.locator("#social").filter({ hasText: "google-oauth2|" }).waitFor().catch(async (err) => {
    throw new Error(`${err.message}; page error: ${await page.locator("#error").textContent()}`);
  });
  const social = await page.locator("#social").textContent();
  check("emulated google-oauth2 user signed in", social === "google-oauth2|10555000111", social);

  await page.getByRole("button", { name: "Link the Google account" }).click();
  await page.locator("#identities li").nth(1).waitFor().catch(() => {});
  const identities = await page.locator("#identities li").allTextContents();
  const error = await page.locator("#error").textContent();
  check(
    "mode A link shows the primary's two identities",
    identities.length === 2 && identities[0] === primary && identities[1] === social,
    JSON.stringify({ identities, error }),
  );
} catch (err) {
  const page = browser.contexts()[0]?.pages()[0];
  const where = page ? `${page.url()}\n${(await page.content()).slice(0, 1500)}` : "";
  check("the browser flow ran to its end", false, `${err.stack || err}\n${where}`);
} finally {
  await browser.close();
  app.close();
}
console.log(`browser: ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
