// The admin console behind `serve gateway`, with identity, the catalog and the gateway as three
// processes on PostgreSQL and NATS (tests/system/admin_split.rs): sign in on identity's own
// origin; create a category and a product in it, then change the product; its history with
// who made each version; the Operations page reading both processes' ops APIs through the
// gateway; sign out through identity. Every screen is checked with axe-core and saved.
//
// EMPORIUM_ORIGIN: the gateway's public origin; EMPORIUM_IDENTITY_ORIGIN: identity's;
// EMPORIUM_ADMIN_EMAIL, EMPORIUM_ADMIN_PASSWORD: the admin's sign-in; EMPORIUM_SCREENSHOTS: a
// directory for the screenshots. Prints "ok" last when every check held.

import { check, finish, launch, pick, screen as saveScreen, submitSignIn, watched as watchedOn } from "./console.mjs";

const origin = process.env.EMPORIUM_ORIGIN;
const identity = process.env.EMPORIUM_IDENTITY_ORIGIN;
const email = process.env.EMPORIUM_ADMIN_EMAIL;
const password = process.env.EMPORIUM_ADMIN_PASSWORD;
const screenshots = process.env.EMPORIUM_SCREENSHOTS;
if (!origin || !identity || !email || !password || !screenshots) {
  throw new Error(
    "EMPORIUM_ORIGIN, EMPORIUM_IDENTITY_ORIGIN, EMPORIUM_ADMIN_EMAIL, EMPORIUM_ADMIN_PASSWORD and EMPORIUM_SCREENSHOTS are required",
  );
}
const browser = await launch();
const problems = [];
const screen = (page, name) => saveScreen(page, `admin-split-${name}`, screenshots, problems);
let page;

try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  page = await watchedOn(context, origin, problems, [identity]);

  // Signing in: the gateway sends the browser to identity's origin, and identity back.
  await page.goto(`${origin}/admin/`);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForURL(`${identity}/**`);
  await submitSignIn(page, email, password);
  await page.waitForURL(`${origin}/admin/**`);
  const menu = page.getByRole("menu");
  for (const resource of ["Categories", "Products", "Accounts", "Roles", "Clients", "Operations"]) {
    await menu.getByRole("menuitem", { name: resource }).waitFor();
  }

  // A category and a product in it, on PostgreSQL.
  await page.goto(`${origin}/admin/Category/create`);
  await page.getByRole("textbox", { name: /^Name/ }).fill("Coffees");
  await page.getByRole("button", { name: "Save" }).click();
  await page.waitForURL(/\/admin\/Category\/[^/]+\/show$/);
  await page.goto(`${origin}/admin/Product/create`);
  await page.getByRole("textbox", { name: /^Sku/ }).fill("COF-1");
  await page.getByRole("textbox", { name: /^Name/ }).fill("Mocha");
  await pick(page, page.getByRole("combobox", { name: /^Category/ }), "Coffees", "Coffees");
  await page.getByRole("spinbutton", { name: /^Price/ }).fill("3.20");
  await page.getByRole("textbox", { name: /^Currency/ }).fill("EUR");
  await page.getByRole("button", { name: "Save" }).click();
  await page.waitForURL(/\/admin\/Product\/[^/]+\/show$/);
  await page.getByText("€3.20").waitFor();
  await screen(page, "product-show");
  const productUrl = page.url().replace(/\/show$/, "");

  // A change, and the history of both versions with who made them.
  await page.goto(productUrl);
  await page.getByRole("textbox", { name: /^Name/ }).fill("Mocha Java");
  await page.getByRole("button", { name: "Save" }).click();
  await page.waitForURL(/\/show$/);
  await page.goto(`${productUrl}/show/history`);
  const history = page.getByRole("list", { name: "History" });
  await history.getByText("Version 2").waitFor();
  await history.getByText("Version 1").waitFor();
  await page.getByRole("table", { name: "Changes in version 2" }).getByText("Mocha Java").waitFor();
  await history.getByRole("link", { name: email }).first().waitFor();
  await screen(page, "product-history");

  // The Operations page: each process's ops API, read by the gateway with the session's token.
  await menu.getByRole("menuitem", { name: "Operations" }).click();
  // One tab per process EMPORIUM_OPS_ORIGINS names, each with the service it hosts.
  for (const service of ["identity", "catalog"]) {
    await page.getByRole("tab", { name: service }).click();
    const services = page.getByRole("table", { name: "Services" });
    await services.getByRole("row", { name: new RegExp(`^${service}\\b.*Serving`) }).waitFor();
    await screen(page, `ops-${service}`);
  }

  // Signing out ends the gateway's session and identity's, and comes back to the console.
  await page.getByRole("button", { name: /Profile/ }).click();
  await page.getByRole("menuitem", { name: "Logout" }).click();
  await page.waitForURL(`${origin}/admin/login`);
  const session = await (await page.request.get(`${origin}/auth/session`)).json();
  check(session.signedIn === false, `signed out, the session is ${JSON.stringify(session)}`);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForURL(`${identity}/**`);
  await page.locator("#password").waitFor();
} catch (error) {
  problems.push(`${error.name}: ${error.message}`);
  // The page as it was, for whoever reads the failure.
  await page?.screenshot({ path: `${screenshots}/admin-split-failure.png`, fullPage: true }).catch(() => {});
} finally {
  await browser.close();
}

finish(problems);
