// The admin console (web/admin, served by the gateway at /admin/) in Debian's chromium, as a
// member of staff uses it: sign in as the admin through the gateway's session; create a
// category by keyboard alone and a product, the product's bad price refused on its field; a save made stale by a
// save in a second tab, explained with a way to reload; the product's history with both
// versions and what changed; an account made a catalog manager, who signs in and finds the
// catalog theirs and account administration absent, and refused when asked for all the same;
// the list on a phone's screen; an OAuth client whose secret is shown once; a session that ends;
// signing out; the manager's password replaced, then their role revoked and their account
// disabled, after which they cannot sign in. Every screen is checked with axe-core (no serious or critical violation) and
// saved as a screenshot.
//
// EMPORIUM_ORIGIN: the suite's HTTP origin; EMPORIUM_ADMIN_EMAIL, EMPORIUM_ADMIN_PASSWORD: the
// admin's sign-in; EMPORIUM_SCREENSHOTS: a directory for the screenshots. Prints "ok" last when
// every check held.

import { check, finish, launch, pick, screen as saveScreen, submitSignIn, tabTo, watched as watchedOn } from "./console.mjs";

const origin = process.env.EMPORIUM_ORIGIN;
const email = process.env.EMPORIUM_ADMIN_EMAIL;
const password = process.env.EMPORIUM_ADMIN_PASSWORD;
const screenshots = process.env.EMPORIUM_SCREENSHOTS;
if (!origin || !email || !password || !screenshots) {
  throw new Error("EMPORIUM_ORIGIN, EMPORIUM_ADMIN_EMAIL, EMPORIUM_ADMIN_PASSWORD and EMPORIUM_SCREENSHOTS are required");
}
const unique = Date.now().toString(36);
const browser = await launch();
const problems = [];
const watched = (context) => watchedOn(context, origin, problems);
const screen = (page, name) => saveScreen(page, `admin-${name}`, screenshots, problems);

try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  const page = await watched(context);

  // Signing in: the console's own page, then identity's, then back, holding no token.
  await page.goto(`${origin}/admin/`);
  check((await page.title()) === "Emporium admin", `the title is ${await page.title()}`);
  const favicon = await page.request.get(`${origin}/admin/favicon.svg`);
  check(favicon.ok(), `the favicon answered ${favicon.status()}`);
  await page.getByRole("button", { name: "Sign in" }).waitFor();
  await screen(page, "sign-in");
  await page.getByRole("button", { name: "Sign in" }).click();
  await submitSignIn(page, email, password);
  await page.waitForURL(`${origin}/admin/**`);
  const menu = page.getByRole("menu");
  for (const resource of ["Categories", "Products", "Accounts", "Roles", "Clients"]) {
    await menu.getByRole("menuitem", { name: resource }).waitFor();
  }
  check(
    !(await page.evaluate(() => document.cookie)).includes("eyJ") &&
      !JSON.stringify(await page.evaluate(() => ({ ...localStorage, ...sessionStorage }))).includes("eyJ"),
    "no token is within the page's reach",
  );

  // A category, created from its list with the keyboard alone: the menu, the Create link, the
  // form's fields and its Save button are each reached with Tab and used with Enter or typing.
  await page.locator("body").click({ position: { x: 5, y: 5 } });
  await tabTo(page, menu.getByRole("menuitem", { name: "Categories" }));
  await page.keyboard.press("Enter");
  await page.waitForURL(/\/admin\/Category$/);
  await tabTo(page, page.getByRole("link", { name: "Create" }).first());
  await page.keyboard.press("Enter");
  await page.waitForURL(/\/admin\/Category\/create$/);
  const categoryName = `Teas ${unique}`;
  await tabTo(page, page.getByRole("textbox", { name: /^Name/ }));
  await page.keyboard.type(categoryName);
  await tabTo(page, page.getByRole("textbox", { name: /^Description/ }));
  await page.keyboard.type("Leaves, in tins.");
  await screen(page, "category-create");
  await tabTo(page, page.getByRole("button", { name: "Save" }));
  await page.keyboard.press("Enter");
  await page.waitForURL(/\/admin\/Category\/[^/]+\/show$/);
  await page.getByText(categoryName).first().waitFor();
  await screen(page, "category-show");

  // A product in it: a bad price is refused on the price's field, then a good one is taken.
  await page.goto(`${origin}/admin/Product/create`);
  await page.getByRole("textbox", { name: /^Sku/ }).fill(`TEA-${unique}`);
  await page.getByRole("textbox", { name: /^Name/ }).fill("Sencha");
  await pick(page, page.getByRole("combobox", { name: /^Category/ }), categoryName, categoryName);
  const amount = page.getByRole("spinbutton", { name: /^Price/ });
  await amount.fill("-5");
  await page.getByRole("textbox", { name: /^Currency/ }).fill("EUR");
  await page.getByRole("button", { name: "Save" }).click();
  await page.locator('input[aria-invalid="true"][name="price.amountMinor"]').waitFor();
  const described = await page.locator('input[name="price.amountMinor"]').getAttribute("aria-describedby");
  const priceError = await page.locator(`[id="${described}"]`).innerText();
  check(priceError.trim().length > 0, "the price's field shows the server's reason");
  check(page.url().endsWith("/Product/create"), `a refused create stays on its form: ${page.url()}`);
  await screen(page, "product-bad-price");
  await amount.fill("12.50");
  await page.getByRole("button", { name: "Save" }).click();
  await page.waitForURL(/\/admin\/Product\/[^/]+\/show$/);
  const productUrl = page.url().replace(/\/show$/, "");
  await page.getByText("€12.50").waitFor();
  await page.getByRole("link", { name: categoryName }).waitFor();
  await screen(page, "product-show");

  // On a phone: the list fits the screen, one line per record.
  const phone = await watched(context);
  await phone.setViewportSize({ width: 390, height: 800 });
  await phone.goto(`${origin}/admin/Product`);
  await phone.getByText("Sencha", { exact: true }).first().waitFor();
  check(
    await phone.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth),
    "the product list fits a phone's width",
  );
  await screen(phone, "phone-products");
  await phone.close();

  // Two tabs edit the product; the second to save is told, and reloads.
  const first = page;
  const second = await watched(context);
  await first.goto(productUrl);
  await second.goto(productUrl);
  for (const tab of [first, second]) await tab.getByRole("textbox", { name: /^Name/ }).waitFor();
  await second.getByRole("textbox", { name: /^Name/ }).fill("Sencha Superior");
  await second.getByRole("button", { name: "Save" }).click();
  await second.waitForURL(/\/show$/);
  await second.close();
  await first.getByRole("textbox", { name: /^Name/ }).fill("Sencha Ordinary");
  await first.getByRole("button", { name: "Save" }).click();
  await first.getByRole("alert").filter({ hasText: "Someone else saved this product" }).waitFor();
  await screen(first, "product-conflict");
  await first.getByRole("button", { name: "Reload" }).click();
  await first.waitForFunction(
    () => document.querySelector('input[name="name"]')?.value === "Sencha Superior",
  );

  // The history: both versions, who made them, the update's change field by field, and the
  // creation's values as the record's own fields show them (money, the category by its name).
  await first.goto(`${productUrl}/show/history`);
  const history = first.getByRole("list", { name: "History" });
  await history.getByText("Version 2").waitFor();
  await history.getByText("Version 1").waitFor();
  const changes = first.getByRole("table", { name: "Changes in version 2" });
  const nameRow = changes.getByRole("row", { name: /^Name/ });
  await nameRow.getByText("Sencha", { exact: true }).waitFor();
  await nameRow.getByText("Sencha Superior").waitFor();
  check((await changes.getByRole("row").count()) === 2, "version 2 changed the name alone");
  await history.getByRole("link", { name: email }).first().waitFor();
  const created = first.getByRole("table", { name: "Changes in version 1" });
  await created.getByRole("row", { name: /^Price/ }).getByText("€12.50").waitFor();
  await created.getByRole("row", { name: /^Category/ }).getByRole("link", { name: categoryName }).waitFor();
  await screen(first, "product-history");

  // The ops page, through the gateway with the session's token: the suite's services serving.
  await first.getByRole("menu").getByRole("menuitem", { name: "Operations" }).click();
  const services = first.getByRole("table", { name: "Services" });
  for (const service of ["identity", "catalog"]) {
    await services.getByRole("row", { name: new RegExp(`^${service}\\b.*Serving`) }).waitFor();
  }
  // A trace of the product's update, drawn as a timeline of its spans.
  const traces = first.getByRole("table", { name: "Recent traces" });
  await traces.getByRole("button", { name: "POST /graphql" }).first().click();
  const timeline = first.getByRole("list", { name: /^Spans of POST \/graphql/ });
  await timeline.getByRole("listitem").first().waitFor();
  check((await timeline.getByRole("listitem").count()) >= 2, "a GraphQL request's trace has its calls' spans under it");
  await screen(first, "ops");

  // An account for a catalog manager, made and given its role from the console.
  const managerEmail = `manager-${unique}@example.com`;
  const firstPassword = `a catalog manager's password ${unique}`;
  await first.goto(`${origin}/admin/Account/create`);
  await first.getByRole("textbox", { name: /^Email/ }).fill(managerEmail);
  await first.getByRole("textbox", { name: /^First name/ }).fill("Cata");
  await first.getByRole("textbox", { name: /^Last name/ }).fill("Log");
  await first.getByRole("textbox", { name: /^Country/ }).fill("FR");
  await first.getByLabel(/^Password/).fill(firstPassword);
  await first.getByRole("button", { name: "Save" }).click();
  await first.waitForURL(/\/admin\/Account\/[^/]+\/show$/);
  await first.getByRole("button", { name: "Grant role" }).click();
  const grant = first.getByRole("dialog", { name: "Grant role" });
  await pick(first, grant.getByRole("combobox", { name: /^Role/ }), "catalog", "catalog-manager");
  await screen(first, "account-grant-role");
  await grant.getByRole("button", { name: "Grant role" }).click();
  await grant.waitFor({ state: "detached" });
  await first.getByRole("link", { name: "catalog-manager" }).waitFor();
  await screen(first, "account-show");
  const accountUrl = first.url();
  // The password the account was created with is replaced: the manager signs in with the new one.
  const managerPassword = `a catalog manager's new password ${unique}`;
  await first.getByRole("button", { name: "Set password" }).click();
  const setPassword = first.getByRole("dialog", { name: "Set password" });
  await setPassword.getByLabel(/^Password/).fill(managerPassword);
  await setPassword.getByRole("button", { name: "Set password" }).click();
  await setPassword.waitFor({ state: "detached" });

  // An OAuth client for a service: its secret is shown once, with a copy button, and it works.
  await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin });
  const clientId = `svc-${unique}`;
  await first.goto(`${origin}/admin/Client/create`);
  await first.getByRole("textbox", { name: /^Client ID/ }).fill(clientId);
  await first.getByRole("textbox", { name: /^Name/ }).fill("Stock sync");
  await first.getByRole("combobox", { name: /^Type/ }).click();
  await first.getByRole("option", { name: /^Confidential/ }).click();
  await pick(first, first.getByRole("combobox", { name: /^Roles/ }), "catalog", "catalog-manager");
  await first.getByRole("button", { name: "Save" }).click();
  const once = first.getByRole("dialog", { name: /shown only once/ });
  const secret = await once.getByRole("textbox", { name: /^Client secret/ }).inputValue();
  check(secret.length >= 32, `a new client's secret is shown: ${secret.length} characters`);
  await once.getByRole("button", { name: /^Copy the client secret/ }).click();
  await once.getByText("Copied.").waitFor();
  check((await first.evaluate(() => navigator.clipboard.readText())) === secret, "the copy button copies the secret");
  await screen(first, "client-secret");
  await once.getByRole("button", { name: "I have copied it" }).click();
  await first.waitForURL(/\/admin\/Client\/[^/]+\/show$/);
  await first.reload();
  await first.getByText("Stock sync").first().waitFor();
  check(!(await first.content()).includes(secret), "the secret is not shown again");
  const discovery = await (await first.request.get(`${origin}/.well-known/openid-configuration`)).json();
  const granted = await first.request.post(discovery.token_endpoint, {
    form: { grant_type: "client_credentials", client_id: clientId, client_secret: secret },
  });
  check(granted.ok(), `the shown secret gets the client a token: ${granted.status()}`);
  await screen(first, "client-show");

  // Signing out ends the session, and identity's: signing in again asks for the password.
  await first.getByRole("button", { name: /Profile/ }).click();
  await first.getByRole("menuitem", { name: "Logout" }).click();
  await first.waitForURL(`${origin}/admin/login`);
  await first.getByRole("button", { name: "Sign in" }).waitFor();
  const session = await (await first.request.get(`${origin}/auth/session`)).json();
  check(session.signedIn === false, `signed out, the session is ${JSON.stringify(session)}`);
  await first.getByRole("button", { name: "Sign in" }).click();
  await first.locator("#password").waitFor();
  await first.goto(`${origin}/admin/`);

  // The catalog manager, in a browser of their own: the catalog is theirs, account
  // administration is not in their console, and the gateway refuses it if asked all the same.
  const managers = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  const manager = await watched(managers);
  await manager.goto(`${origin}/admin/`);
  await manager.getByRole("button", { name: "Sign in" }).click();
  await submitSignIn(manager, managerEmail, managerPassword);
  await manager.waitForURL(`${origin}/admin/**`);
  const managerMenu = manager.getByRole("menu");
  await managerMenu.getByRole("menuitem", { name: "Products" }).waitFor();
  await managerMenu.getByRole("menuitem", { name: "Categories" }).waitFor();
  for (const hidden of ["Accounts", "Roles", "Clients", "Operations"]) {
    check(
      (await managerMenu.getByRole("menuitem", { name: hidden }).count()) === 0,
      `a catalog manager's menu has no ${hidden}`,
    );
  }
  await manager.goto(productUrl.replace(/\/?$/, "/show"));
  await manager.getByRole("link", { name: "Edit" }).waitFor();
  await screen(manager, "manager-product");
  const refused = await manager.evaluate(async () => {
    const response = await fetch("/graphql", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ query: "{ accounts(first: 1) { email } }" }),
    });
    return response.json();
  });
  check(
    refused.errors?.[0]?.extensions?.code === "FORBIDDEN" && refused.data === null,
    `the gateway refuses a catalog manager the accounts: ${JSON.stringify(refused)}`,
  );
  const opsRefused = await manager.evaluate(async () => (await fetch("/admin/api/ops/suite/v1/status")).status);
  check(opsRefused === 403, `the ops API refuses a catalog manager: ${opsRefused}`);
  await manager.goto(`${origin}/admin/Account`);
  await manager.getByText(/not found|doesn't exist/i).first().waitFor();
  await screen(manager, "manager-no-accounts");

  // A session that ends (here: its cookie gone) sends the browser back to sign in, saying why,
  // when its user comes back to the tab.
  await managers.clearCookies();
  await manager.evaluate(() => window.dispatchEvent(new Event("focus")));
  await manager.getByText("Your session has ended: sign in again.").waitFor();
  await manager.getByRole("button", { name: "Sign in" }).waitFor();
  await screen(manager, "session-ended");

  // The admin, signed in again, revokes the manager's role and disables the account: the
  // manager can no longer sign in.
  await first.getByRole("button", { name: "Sign in" }).click();
  await submitSignIn(first, email, password);
  await first.waitForURL(`${origin}/admin/**`);
  await first.goto(accountUrl);
  await first.getByRole("button", { name: "Revoke role" }).click();
  const revoke = first.getByRole("dialog", { name: "Revoke role" });
  await pick(first, revoke.getByRole("combobox", { name: /^Role/ }), "catalog", "catalog-manager");
  await revoke.getByRole("button", { name: "Revoke role" }).click();
  await revoke.waitFor({ state: "detached" });
  await first.waitForFunction(() => !document.body.innerText.includes("catalog-manager"));
  await first.goto(accountUrl.replace(/\/show$/, ""));
  await first.getByLabel(/^Disabled/).check();
  await first.getByRole("button", { name: "Save" }).click();
  await first.waitForURL(/\/show$/);
  await screen(first, "account-disabled");
  await manager.getByRole("button", { name: "Sign in" }).click();
  await submitSignIn(manager, managerEmail, managerPassword);
  await manager.getByText("The email or password is incorrect.").waitFor();
} catch (error) {
  problems.push(`${error.name}: ${error.message}`);
} finally {
  await browser.close();
}

finish(problems);
