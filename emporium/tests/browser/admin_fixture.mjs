// A resource the console has no code for, in Debian's chromium: the fixture contract's
// Supplier (tests/fixtures/emporium/suppliers/v1/suppliers.proto, served from memory behind
// the real gateway, tests/system/admin_fixture.rs) is in the menu, and is listed, created,
// shown and edited through the console's screens. Then the ops page, on a real ops API whose
// consumer dead-lettered an event: the dead letter is listed, inspected and re-driven. Signing
// in is not this check's subject: the fixture checks no token, `/auth/session` is answered
// here as an admin's session, and the admin's token is added here to the ops API's requests,
// as the gateway adds a session's.
//
// EMPORIUM_ORIGIN: the fixture gateway's origin; EMPORIUM_SCREENSHOTS: a directory for the
// screenshots; EMPORIUM_OPS_ORIGIN, EMPORIUM_OPS_TOKEN: the ops API and an admin's token for it;
// EMPORIUM_DEAD_EVENT_ID: the dead-lettered event. Prints "ok" last when every check held.

import { check, finish, launch, screen as saveScreen, watched } from "./console.mjs";

const origin = process.env.EMPORIUM_ORIGIN;
const screenshots = process.env.EMPORIUM_SCREENSHOTS;
const opsOrigin = process.env.EMPORIUM_OPS_ORIGIN;
const opsToken = process.env.EMPORIUM_OPS_TOKEN;
const deadEventId = process.env.EMPORIUM_DEAD_EVENT_ID;
if (!origin || !screenshots || !opsOrigin || !opsToken || !deadEventId) {
  throw new Error("EMPORIUM_ORIGIN, EMPORIUM_SCREENSHOTS, EMPORIUM_OPS_ORIGIN, EMPORIUM_OPS_TOKEN and EMPORIUM_DEAD_EVENT_ID are required");
}

const browser = await launch();
const problems = [];
const screen = (page, name) => saveScreen(page, `admin-fixture-${name}`, screenshots, problems);
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  const page = await watched(context, origin, problems);
  await page.route(`${origin}/auth/session`, (route) =>
    route.fulfill({ json: { signedIn: true, subject: "fixture-admin", roles: ["admin"] } }),
  );
  // The gateway's part for a session, done here: name the process, and add the admin's token
  // to what the page asks of its ops API.
  await page.route(`${origin}/admin/api/ops`, (route) =>
    route.fulfill({ json: { processes: ["suite"], roles: ["admin"] } }),
  );
  await page.route(`${origin}/admin/api/ops/suite/v1/**`, async (route) => {
    const asked = new URL(route.request().url());
    const response = await route.fetch({
      url: `${opsOrigin}/ops/v1/${asked.pathname.split("/v1/")[1]}${asked.search}`,
      headers: { ...route.request().headers(), authorization: `Bearer ${opsToken}` },
    });
    await route.fulfill({ response });
  });
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

  // The ops page: the consumer with its dead letter, inspected, then re-driven.
  await menu.getByRole("menuitem", { name: "Operations" }).click();
  const consumers = page.getByRole("table", { name: "Consumers" });
  await consumers.getByRole("row", { name: /ops-projection/ }).waitFor();
  const letters = page.getByRole("table", { name: "Dead letters" });
  const letter = letters.getByRole("row", { name: /emporium\.catalog\.product\.created/ });
  await letter.getByText("the handler refused on purpose").waitFor();
  await screen(page, "ops");
  await letter.getByRole("button", { name: "Inspect" }).click();
  const inspected = page.getByRole("dialog", { name: /^Dead letter/ });
  await inspected.getByText(deadEventId).first().waitFor();
  await screen(page, "ops-dead-letter");
  await inspected.getByRole("button", { name: "Close" }).click();
  await letter.getByRole("button", { name: "Re-drive" }).click();
  await page.getByText(/Re-drove 1 dead letter/).waitFor();
  await page.getByText("No dead letters: every event was handled.").waitFor();
  await screen(page, "ops-redriven");
} catch (error) {
  problems.push(`${error.name}: ${error.message}`);
} finally {
  await browser.close();
}
finish(problems);
