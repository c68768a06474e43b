import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { join } from "node:path";
import { chromium } from "playwright-core";

// What the admin console's browser checks share: Debian's chromium, pages that report their
// errors and any request to another origin, and each screen checked with axe-core and saved.

const axeSource = await readFile(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");

export const TIMEOUT = 30_000;

export function launch() {
  return chromium.launch({
    executablePath: process.env.EMPORIUM_CHROMIUM ?? "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
  });
}

/**
 * A page of `context` on `origin` that adds its errors, and any request to an origin neither
 * `origin` nor one of `others` (identity's, where it is another), to `problems`.
 */
export async function watched(context, origin, problems, others = []) {
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
  page.on("console", (message) => {
    // A refused request is logged by the browser as an error; the checks expect refusals (a
    // wrong sign-in is a 401 from identity's page).
    if (message.type() === "error" && !/status of (400|401|403|409)/.test(message.text())) {
      problems.push(`console error: ${message.text()}`);
    }
  });
  await page.route("**/*", (route) => {
    const requested = new URL(route.request().url());
    if (requested.origin === origin || others.includes(requested.origin)) return route.fallback();
    problems.push(`the page asked another origin: ${requested.href}`);
    return route.abort();
  });
  return page;
}

/** Adds axe-core's serious and critical violations on the page as it is now to `problems`, and saves a screenshot. */
export async function screen(page, name, directory, problems) {
  // Transitions end at once, so colours are checked as they settle, not half-way.
  await page.addStyleTag({ content: "*, *::before, *::after { transition: none !important; animation: none !important; }" });
  await page.evaluate(() => new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve))));
  await page.evaluate(axeSource);
  const violations = await page.evaluate(async () => {
    const results = await window.axe.run(document, { resultTypes: ["violations"] });
    return results.violations
      .filter((violation) => ["serious", "critical"].includes(violation.impact))
      .map((violation) => `${violation.id}: ${violation.help} (${violation.nodes.map((node) => `${node.target.join(" ")}: ${node.failureSummary} ${node.html}`).join(", ")})`);
  });
  for (const violation of violations) problems.push(`${name}: accessibility: ${violation}`);
  await page.screenshot({ path: join(directory, `${name}.png`), fullPage: true });
}

/**
 * Presses Tab (Shift+Tab when `backwards`) until the focused element is `locator`'s, as someone
 * with a keyboard alone gets there, and checks that the browser shows where the focus is
 * (`:focus-visible`). Fails after `limit` presses.
 */
export async function tabTo(page, locator, { backwards = false, limit = 60 } = {}) {
  const target = await locator.elementHandle();
  for (let presses = 0; presses < limit; presses += 1) {
    await page.keyboard.press(backwards ? "Shift+Tab" : "Tab");
    const reached = await target.evaluate((element) => element === document.activeElement || element.contains(document.activeElement));
    if (reached) {
      const visible = await page.evaluate(() => document.activeElement?.matches(":focus-visible") ?? false);
      check(visible, `${locator} has the focus but does not show it`);
      return;
    }
  }
  throw new Error(`${locator} was not reached in ${limit} presses of Tab`);
}

/** Fills identity's sign-in form, open on `page`, with `email` and `password`, and submits it. */
export async function submitSignIn(page, email, password) {
  await page.locator("#email").fill(email);
  await page.locator("#password").fill(password);
  await page.locator("#password").press("Enter");
}

/** Types `text` into the autocomplete `combobox` of `page` and picks the option `option`. */
export async function pick(page, combobox, text, option) {
  await combobox.click();
  await combobox.fill(text);
  await page.getByRole("option", { name: option }).click();
}

export function check(condition, message) {
  if (!condition) throw new Error(message);
}

/** Prints the problems and fails, or prints "ok". */
export function finish(problems) {
  if (problems.length > 0) {
    console.log(problems.join("\n"));
    process.exit(1);
  }
  console.log("ok");
}
