// Headless Chromium (Debian's) drives the admin web UI at /ui/ of a live idlink: sign in
// with the admin client, search a user, open it, link an account through the preview
// and "Confirm link" (checked through the API), "Unlink" + "Confirm unlink" (the
// recreated user checked through the API), the suggested-links page shows a seeded
// duplicate, a CSRF-less POST is refused, a read-only client sees no action buttons, the
// same link and unlink work with JavaScript off, the User page fits a phone, the Emulator
// page (EMULATOR_URL) moves the clock; axe-core on every page (no serious or critical
// violations). Screenshots go to tests/browser/screenshots/ (not committed);
// UI_USER_SCREENSHOT names where the user page's goes (docs/ui-user.png).
// Closes with `ui: N passed, N failed`.
import { mkdir, readFile } from "node:fs/promises";
import { chromium } from "playwright-core";

const base = process.env.IDLINK_BASE_URL;
const adminId = process.env.ADMIN_CLIENT_ID;
const adminSecret = process.env.ADMIN_CLIENT_SECRET;
const token = process.env.ADMIN_TOKEN;
const here = new URL(".", import.meta.url).pathname;
const shots = here + "screenshots/";
await mkdir(shots, { recursive: true });
const axeSource = await readFile(here + "node_modules/axe-core/axe.min.js", "utf8");

let passed = 0;
let failed = 0;
const check = (name, ok, detail = "") => {
  if (ok) { passed++; console.log(`PASS ${name}`); } else { failed++; console.log(`FAIL ${name} ${detail}`); }
};

const api = async (method, path, body) => {
  const response = await fetch(base + path, {
    method,
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null };
};
const created = async (body) => {
  const reply = await api("POST", "/api/v2/users", body);
  if (reply.status !== 201) throw new Error(`cannot create ${JSON.stringify(body)}: ${JSON.stringify(reply.body)}`);
  return reply.body.user_id;
};
const db = "Username-Password-Authentication";
const password = "correct-Horse-battery-9";
const primary = await created({ connection: db, email: "ui-primary@example.com", password, email_verified: true, name: "Primary Person", user_metadata: { theme: "dark" } });
await created({ connection: "google-oauth2", user_id: "ui-secondary-1", email: "ui-secondary@example.com", email_verified: true, name: "Secondary Person" });
await created({ connection: db, email: "dup@example.com", password, email_verified: true });
const plainPrimary = await created({ connection: db, email: "nojs-primary@example.com", password, email_verified: true });
await created({ connection: "google-oauth2", user_id: "nojs-secondary-1", email: "nojs-secondary@example.com", email_verified: true });
await created({ connection: "google-oauth2", user_id: "dup-1", email: "dup@example.com", email_verified: true });

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
});

const axe = async (page, name) => {
  await page.evaluate(axeSource + ";0");
  const result = await page.evaluate(() => window.axe.run(document, { resultTypes: ["violations"] }));
  const bad = result.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  check(`axe: no serious or critical violations on ${name}`, bad.length === 0,
    JSON.stringify(bad.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.map((n) => n.target) }))));
};
const shot = async (page, name) => page.screenshot({ path: `${shots}${name}.png`, fullPage: true });
const signIn = async (page, id, secret) => {
  await page.goto(`${base}/ui/login`);
  await page.getByLabel("Client ID").fill(id);
  await page.getByLabel("Client secret").fill(secret);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { name: "Users", exact: true }).waitFor();
};

try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  const page = await context.newPage();
  page.setDefaultTimeout(20000);
  const cspErrors = [];
  page.on("console", (m) => { if (/Content Security Policy/i.test(m.text())) cspErrors.push(m.text()); });

  await page.goto(`${base}/ui/`);
  await page.getByRole("heading", { name: "Sign in" }).waitFor();
  await axe(page, "Sign in");
  await shot(page, "sign-in");
  await page.getByLabel("Client ID").fill(adminId);
  await page.getByLabel("Client secret").fill(adminSecret);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { name: "Users", exact: true }).waitFor();
  check("signed in: the Users page", true);

  await page.getByLabel("Search users").fill("ui-primary@example.com");
  await page.getByRole("button", { name: "Search", exact: true }).click();
  const row = page.getByRole("link", { name: "ui-primary@example.com" });
  await row.waitFor();
  check("search finds the seeded user", await row.count() === 1);
  await axe(page, "Users");
  await shot(page, "users");
  await row.click();
  await page.getByRole("heading", { name: "ui-primary@example.com" }).waitFor();
  check("the User page opens with the email as heading", true);
  check("the User page has an Identities section", await page.getByRole("heading", { name: "Identities" }).count() === 1);
  await axe(page, "User");

  await page.getByRole("link", { name: "Link an account" }).click();
  await page.getByLabel("Search for the account to link").fill("ui-secondary@example.com");
  await page.getByRole("button", { name: "Search", exact: true }).click();
  await page.getByRole("button", { name: "Preview link of ui-secondary@example.com" }).click();
  await page.getByRole("heading", { name: "Link preview" }).waitFor();
  await axe(page, "Link preview");
  await shot(page, "link-preview");
  await page.getByRole("button", { name: "Confirm link" }).click();
  await page.getByRole("status").filter({ hasText: "Linked." }).waitFor();
  const linked = await api("GET", `/api/v2/users/${encodeURIComponent(primary)}`);
  check("the API shows the link", linked.body.identities.length === 2 &&
    linked.body.identities[1].user_id === "ui-secondary-1", JSON.stringify(linked.body));
  check("the secondary user is gone", (await api("GET", `/api/v2/users/${encodeURIComponent("google-oauth2|ui-secondary-1")}`)).status === 404);
  await page.setViewportSize({ width: 1100, height: 760 });
  await page.screenshot({ path: process.env.UI_USER_SCREENSHOT || `${shots}user.png`, fullPage: true });
  await page.setViewportSize({ width: 1280, height: 860 });

  // A CSRF-less POST with the session cookie: refused.
  const forged = await context.request.post(`${base}/ui/users/${encodeURIComponent(primary)}/unlink`, {
    form: { provider: "google-oauth2", user_id: "ui-secondary-1" }, maxRedirects: 0,
  });
  check("a POST without the CSRF token is refused with 403", forged.status() === 403, String(forged.status()));

  await page.getByRole("row").filter({ hasText: "ui-secondary-1" })
    .getByRole("button", { name: "Unlink", exact: true }).click();
  await page.getByRole("heading", { name: "Unlink preview" }).waitFor();
  await axe(page, "Unlink preview");
  await shot(page, "unlink-preview");
  await page.getByRole("button", { name: "Confirm unlink" }).click();
  await page.getByRole("status").filter({ hasText: "Unlinked" }).waitFor();
  const recreated = await api("GET", `/api/v2/users/${encodeURIComponent("google-oauth2|ui-secondary-1")}`);
  check("unlink recreated the standalone user", recreated.status === 200 &&
    recreated.body.email === "ui-secondary@example.com", JSON.stringify(recreated.body));
  const after = await api("GET", `/api/v2/users/${encodeURIComponent(primary)}`);
  check("the primary has one identity again", after.body.identities.length === 1);

  await page.goto(`${base}/ui/suggested`);
  await page.getByRole("heading", { name: "Suggested links" }).waitFor();
  check("suggested links show the seeded duplicate", (await page.getByText("dup@example.com").count()) > 0);
  await axe(page, "Suggested links");
  await shot(page, "suggested");

  await page.getByRole("link", { name: "Audit log" }).click();
  await page.getByRole("heading", { name: "Audit log" }).waitFor();
  check("the audit log shows the unlink", (await page.getByText("Unlink a User Identity").count()) > 0);
  await axe(page, "Audit log");
  await shot(page, "audit");

  // The Emulator page of an emulator on loopback: signed in automatically.
  const emulator = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  const epage = await emulator.newPage();
  epage.setDefaultTimeout(20000);
  await epage.goto(`${process.env.EMULATOR_URL}/ui/emulator`);
  await epage.getByRole("heading", { name: "Emulator" }).waitFor();
  check("the emulator signs a loopback browser in: the Emulator page", true);
  await axe(epage, "Emulator");
  await epage.getByLabel("Advance the clock by seconds").fill("7200");
  await epage.getByRole("button", { name: "Advance the clock" }).click();
  await epage.getByRole("status").filter({ hasText: "Clock advanced." }).waitFor();
  const clock = await (await fetch(`${process.env.EMULATOR_URL}/idlink/v1/clock`)).json();
  check("Advance the clock moved the emulator's clock", clock.offset_seconds === 7200, JSON.stringify(clock));
  await shot(epage, "emulator");
  await emulator.close();

  await page.setViewportSize({ width: 390, height: 844 });
  await page.goto(`${base}/ui/users/${encodeURIComponent(primary)}`);
  await shot(page, "user-phone");
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check("the User page fits a phone's width (no sideways scrolling)", overflow <= 0, `${overflow}px too wide`);

  // A client holding read:users only: it sees users but no button that changes anything.
  const reader = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  const rpage = await reader.newPage();
  rpage.setDefaultTimeout(20000);
  await signIn(rpage, process.env.READER_CLIENT_ID, process.env.READER_CLIENT_SECRET);
  await rpage.goto(`${base}/ui/users/${encodeURIComponent(primary)}`);
  await rpage.getByRole("heading", { name: "Identities" }).waitFor();
  const actions = await rpage.getByRole("button", { name: /^(Link an account|Unlink|Confirm link|Confirm unlink)$/ }).count()
    + await rpage.getByRole("link", { name: "Link an account" }).count();
  check("a read-only client sees no action buttons", actions === 0, `${actions} found`);
  await reader.close();

  // Without JavaScript: every read and action is a plain link or form.
  const plain = await browser.newContext({ viewport: { width: 1280, height: 860 }, javaScriptEnabled: false });
  const ppage = await plain.newPage();
  ppage.setDefaultTimeout(20000);
  await signIn(ppage, adminId, adminSecret);
  await ppage.getByLabel("Search users").fill("nojs-primary@example.com");
  await ppage.getByRole("button", { name: "Search", exact: true }).click();
  await ppage.getByRole("link", { name: "nojs-primary@example.com" }).click();
  await ppage.getByRole("link", { name: "Link an account" }).click();
  await ppage.getByLabel("Search for the account to link").fill("nojs-secondary@example.com");
  await ppage.getByRole("button", { name: "Search", exact: true }).click();
  await ppage.getByRole("button", { name: "Preview link of nojs-secondary@example.com" }).click();
  await ppage.getByRole("heading", { name: "Link preview" }).waitFor();
  await ppage.getByRole("button", { name: "Confirm link" }).click();
  await ppage.getByRole("status").filter({ hasText: "Linked." }).waitFor();
  const plainLinked = await api("GET", `/api/v2/users/${encodeURIComponent(plainPrimary)}`);
  check("without JavaScript: link through preview and confirm", plainLinked.body.identities.length === 2, JSON.stringify(plainLinked.body));
  await ppage.getByRole("row").filter({ hasText: "nojs-secondary-1" })
    .getByRole("button", { name: "Unlink", exact: true }).click();
  await ppage.getByRole("button", { name: "Confirm unlink" }).click();
  await ppage.getByRole("status").filter({ hasText: "Unlinked" }).waitFor();
  const plainAfter = await api("GET", `/api/v2/users/${encodeURIComponent(plainPrimary)}`);
  check("without JavaScript: unlink through preview and confirm", plainAfter.body.identities.length === 1, JSON.stringify(plainAfter.body));
  await plain.close();
  check("no CSP violations", cspErrors.length === 0, cspErrors.join(" | "));
} catch (err) {
  failed++;
  console.log(`FAIL ui test: ${err.stack || err}`);
} finally {
  await browser.close();
  console.log(`ui: ${passed} passed, ${failed} failed`);
  process.exit(failed === 0 ? 0 : 1);
}
