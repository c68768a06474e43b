// A resource the console has no code for, in Debian's chromium: the fixture contract's
// Supplier (tests/fixtures/emporium/suppliers/v1/suppliers.proto, served from memory behind
// the real gateway, tests/system/admin_fixture.rs) is in the menu, and is listed, created,
// shown and edited through the console's screens. Signing in is not this check's subject: the
// fixture checks no token, and `/auth/session` is answered here as an admin's session.
//
// EMPORIUM_ORIGIN: the fixture gateway's origin; EMPORIUM_SCREENSHOTS: a directory for the
// screenshots. Prints "ok" last when every check held.

import { check, finish, launch, screen as saveScreen, watched } from "./console.mjs";

const origin = process.env.EMPORIUM_ORIGIN;
const screenshots = process.env.EMPORIUM_SCREENSHOTS;
if (!origin || !screenshots) throw new Error("EMPORIUM_ORIGIN and EMPORIUM_SCREENSHOTS are required");

const browser = await launch();
const problems = [];
const screen = (page, name) => saveScreen(page, `admin-fixture-${name}`, screenshots, problems);
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  const page = await watched(context, origin, problems);
  await page.route(`${origin}/auth/session`, (route) =>
    route.fulfill({ json: { signedIn: true, subject: "fixture-admin", roles: ["admin"] } }),
  );
  const mutations = [];
  page.on("request", (request) => {
    const body = request.postData() ?? "";
    if (request.url() === `${origin}/graphql` && body.includes("mutation")) mutations.push(JSON.parse(body));
  });

  // In the menu, and listed: empty at first.
  await page.goto(`${origin}/admin/`);
  const menu = page.getByRole("menu");
  await menu.getByRole("menuitem", { name: "Suppliers" }).click();
  await page.getByText("No Suppliers yet.").waitFor();
  await screen(page, "empty-list");

  // Created from the contract's create request: its fields, required ones marked.
  await page.getByRole("link", { name: "Create" }).click();
  await page.getByRole("textbox", { name: /^Name/ }).fill("Kyoto Leaf Co.");
  await page.getByRole("textbox", { name: /^Email/ }).fill("orders@kyoto-leaf.example");
  await page.getByRole("spinbutton", { name: /^Lead time days/ }).fill("12");
  await page.getByLabel(/^Active/).check();
  await screen(page, "create");
  await page.getByRole("button", { name: "Save" }).click();
  await page.waitForURL(/\/admin\/Supplier\/[^/]+\/show$/);
  await page.getByText("orders@kyoto-leaf.example").waitFor();
  const created = mutations.find((mutation) => mutation.query.includes("createSupplier"));
  check(
    JSON.stringify(created?.variables?.data) ===
      JSON.stringify({ name: "Kyoto Leaf Co.", email: "orders@kyoto-leaf.example", leadTimeDays: 12, active: true }),
    `createSupplier got the form's fields: ${JSON.stringify(created)}`,
  );
  await screen(page, "show");

  // Edited from the update request: only the change goes, with the version read.
  await page.getByRole("link", { name: "Edit" }).click();
  await page.getByRole("spinbutton", { name: /^Lead time days/ }).fill("9");
  await page.getByRole("button", { name: "Save" }).click();
  await page.waitForURL(/\/show$/);
  await page.getByText("9", { exact: true }).waitFor();
  const updated = mutations.find((mutation) => mutation.query.includes("updateSupplier"));
  check(
    JSON.stringify(updated?.variables?.data) === JSON.stringify({ leadTimeDays: 9, expectedVersion: "1" }),
    `updateSupplier sent the change alone: ${JSON.stringify(updated)}`,
  );

  // And in the list, with its total.
  await menu.getByRole("menuitem", { name: "Suppliers" }).click();
  await page.getByRole("cell", { name: "Kyoto Leaf Co." }).waitFor();
  await page.getByText("1-1 of 1").waitFor();
  await screen(page, "list");
} catch (error) {
  problems.push(`${error.name}: ${error.message}`);
} finally {
  await browser.close();
}
finish(problems);
