// GraphiQL, as the gateway serves it to a browser at /graphql, in Debian's chromium: the page
// loads its pinned scripts (checked against the page's integrity hashes), builds the schema by
// introspection, shows it in the documentation explorer, and runs a query as a visitor.
//
// The page loads GraphiQL, React and ReactDOM from unpkg.com. That CDN is not reachable from
// here, so its requests are answered from this package's node_modules, the same npm packages at
// the versions the page pins: the browser still checks every file against the page's hashes.
//
// EMPORIUM_GRAPHQL_URL: the gateway's /graphql; EMPORIUM_SCREENSHOT: where to save a picture of
// the page with the query's answer. Prints "ok" last when every check held.

import { readFile } from "node:fs/promises";
import { chromium } from "playwright-core";

const url = process.env.EMPORIUM_GRAPHQL_URL;
const screenshot = process.env.EMPORIUM_SCREENSHOT;
if (!url || !screenshot) throw new Error("EMPORIUM_GRAPHQL_URL and EMPORIUM_SCREENSHOT are required");

const CONTENT_TYPES = { ".js": "application/javascript", ".css": "text/css" };

const browser = await chromium.launch({
  executablePath: process.env.EMPORIUM_CHROMIUM ?? "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
});
const problems = [];
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
  page.on("console", (message) => {
    if (message.type() === "error") problems.push(`console error: ${message.text()}`);
  });
  page.on("requestfailed", (request) =>
    problems.push(`request failed: ${request.url()}: ${request.failure()?.errorText}`),
  );
  // Any other origin than the gateway's and unpkg's is a page asking for what it should not.
  const origin = new URL(url).origin;
  await page.route("**/*", (route) => {
    const requested = new URL(route.request().url());
    if (requested.origin === origin) return route.continue();
    if (requested.origin !== "https://unpkg.com") {
      problems.push(`the page asked another origin: ${requested.href}`);
      return route.abort();
    }
    return fromPackages(route, requested);
  });

  const response = await page.goto(url);
  check(response.ok(), `GET ${url} answered ${response.status()}`);
  check(
    (response.headers()["content-type"] ?? "").startsWith("text/html"),
    `a browser is served a page, not ${response.headers()["content-type"]}`,
  );
  check((await page.title()) === "Emporium GraphQL", `the page's title is ${await page.title()}`);

  // The schema, by introspection, in the documentation explorer.
  await page.locator(".graphiql-container").waitFor({ timeout: 30_000 });
  await page.getByRole("button", { name: "Show Documentation Explorer" }).click();
  const explorer = page.locator(".graphiql-doc-explorer");
  await explorer.getByText("Query", { exact: true }).click({ timeout: 30_000 });
  await explorer.getByText("productsConnection", { exact: true }).first().waitFor({ timeout: 30_000 });

  // A query typed in the editor and run, answered as a visitor (no sign-in).
  await page.locator(".graphiql-query-editor .CodeMirror").click();
  await page.evaluate(() =>
    document
      .querySelector(".graphiql-query-editor .CodeMirror")
      .CodeMirror.setValue("{ categoriesConnection { aggregate { count } } }"),
  );
  await page.getByRole("button", { name: /Execute query/ }).click();
  const result = page.locator(".result-window");
  await result.getByText('"count"').waitFor({ timeout: 30_000 });
  const answer = await result.innerText();
  check(!answer.includes('"errors"'), `the query was answered without errors: ${answer}`);
  check(answer.includes('"aggregate"'), `the answer holds the count: ${answer}`);
  await page.screenshot({ path: screenshot, fullPage: true });
} catch (error) {
  problems.push(`${error.name}: ${error.message}`);
} finally {
  await browser.close();
}

if (problems.length > 0) {
  console.error(problems.join("\n"));
  process.exit(1);
}
console.log("ok");

function check(condition, what) {
  if (!condition) problems.push(`not so: ${what}`);
}

// Answers https://unpkg.com/<package>@<version>/<file> from node_modules, only at the pinned
// version, with the CORS header a `crossorigin` script needs for its integrity check.
async function fromPackages(route, requested) {
  const parts = requested.pathname.match(/^\/((?:@[^/]+\/)?[^@/]+)@([^/]+)\/(.+)$/);
  if (!parts) {
    problems.push(`not a pinned package file: ${requested.href}`);
    return route.abort();
  }
  const [, name, version, file] = parts;
  const installed = JSON.parse(await readFile(`node_modules/${name}/package.json`, "utf8")).version;
  if (installed !== version) {
    problems.push(`${name}: the page pins ${version}, the lockfile has ${installed}`);
    return route.abort();
  }
  const extension = file.slice(file.lastIndexOf("."));
  return route.fulfill({
    status: 200,
    contentType: CONTENT_TYPES[extension] ?? "application/octet-stream",
    headers: { "access-control-allow-origin": "*" },
    body: await readFile(`node_modules/${name}/${file}`),
  });
}
