// Emporium's GraphQL API as an unmodified third-party client meets it: graphql-js builds the
// schema from introspection and validates every operation against it before it is sent;
// graphql-ws subscribes. Signed in with the bearer token in EMPORIUM_TOKEN against the gateway
// at EMPORIUM_GRAPHQL_URL, it creates, lists (filter, order, page), updates (a stale version
// included) and deletes categories, products, roles and accounts, and receives productChanged
// after an update. Prints what it did; exits non-zero at the first thing that is not as it
// should be. Run by tests/system/graphql_js.rs.

import assert from "node:assert/strict";
import { buildClientSchema, getIntrospectionQuery, parse, validate } from "graphql";
import { createClient } from "graphql-ws";
import WebSocket from "ws";

const url = process.env.EMPORIUM_GRAPHQL_URL;
const token = process.env.EMPORIUM_TOKEN;
assert.ok(url && token, "EMPORIUM_GRAPHQL_URL and EMPORIUM_TOKEN are required");
const run = Date.now().toString(36);

async function post(query, variables) {
  const response = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
    body: JSON.stringify({ query, variables }),
  });
  assert.equal(response.status, 200, `HTTP ${response.status}`);
  return response.json();
}

// The schema, as any client builds it.
const introspection = await post(getIntrospectionQuery());
assert.equal(introspection.errors, undefined, JSON.stringify(introspection.errors));
const schema = buildClientSchema(introspection.data);
console.log(`schema: ${Object.keys(schema.getTypeMap()).length} types by introspection`);

/// Runs `query` (validated against the schema first): its data, or its error codes when
/// `expectCodes` is given.
async function graphql(query, variables = {}, expectCodes) {
  const problems = validate(schema, parse(query));
  assert.deepEqual(problems.map(String), [], `invalid against the schema: ${query}`);
  const answer = await post(query, variables);
  if (expectCodes) {
    const codes = (answer.errors ?? []).map((error) => error.extensions?.code);
    assert.deepEqual(codes, expectCodes, `${query}: ${JSON.stringify(answer)}`);
    return answer.data;
  }
  assert.equal(answer.errors, undefined, `${query}: ${JSON.stringify(answer.errors)}`);
  return answer.data;
}

// The four resources, each with what makes a record of it, how it is named, a List filter and
// ordering where the List has them, and a change.
const resources = [
  {
    type: "Category",
    key: "id",
    plural: "categories",
    make: (n) => ({ name: `Tea ${run} ${n}`, description: "Leaves" }),
    where: { query: `tea ${run}` },
    orderBy: "name_DESC",
    order: (records) => records.map((record) => record.name).sort().reverse(),
    fields: "id name version",
    change: { description: "Dried leaves" },
  },
  {
    type: "Product",
    key: "id",
    plural: "products",
    setUp: async () => {
      const data = await graphql(
        `mutation ($data: CategoryCreateInput!) { createCategory(data: $data) { id } }`,
        { data: { name: `Products ${run}` } },
      );
      return data.createCategory.id;
    },
    make: (n, categoryId) => ({
      sku: `JS-${run}-${n}`,
      name: `Sencha ${n}`,
      categoryId,
      price: { amountMinor: "1250", currency: "EUR" },
      stockOnHand: 5,
    }),
    where: (categoryId) => ({ categoryId }),
    orderBy: "sku_ASC",
    order: (records) => records.map((record) => record.sku).sort(),
    fields: "id sku name version category { id }",
    change: { name: "Sencha Superior" },
  },
  {
    type: "Role",
    key: "name",
    plural: "roles",
    make: (n) => ({ name: `js-${run}-${n}`, description: "Made by graphql-js" }),
    fields: "name description version",
    change: { description: "Changed by graphql-js" },
  },
  {
    type: "Account",
    key: "id",
    plural: "accounts",
    make: (n) => ({
      email: `js-${run}-${n}@example.com`,
      firstName: "Grace",
      lastName: `Hopper ${n}`,
      country: "US",
      password: "a long enough password",
    }),
    where: { query: `js-${run}` },
    orderBy: "email_ASC",
    order: (records) => records.map((record) => record.email).sort(),
    fields: "id email version",
    change: { nickname: "amazing" },
  },
];

for (const resource of resources) {
  const { type, key, plural } = resource;
  const context = resource.setUp ? await resource.setUp() : undefined;
  const created = [];
  for (const n of [1, 2, 3]) {
    const data = await graphql(
      `mutation ($data: ${type}CreateInput!) { create${type}(data: $data) { ${resource.fields} } }`,
      { data: resource.make(n, context) },
    );
    created.push(data[`create${type}`]);
  }
  const sortKey = resource.orderBy?.split("_")[0];

  // List: filtered and ordered where the List can, two to a page, following the cursor.
  const where = typeof resource.where === "function" ? resource.where(context) : resource.where;
  const args = [where ? `where: $where` : "", resource.orderBy ? `orderBy: ${resource.orderBy}` : ""]
    .filter(Boolean)
    .join(", ");
  const declared = where ? `($where: ${type}WhereInput, $after: String)` : "($after: String)";
  const listed = [];
  let after = null;
  let pages = 0;
  do {
    const data = await graphql(
      `query ${declared} { ${plural}Connection(${args}${args ? ", " : ""}first: 2, after: $after) {
         edges { node { ${resource.fields} ${sortKey && sortKey !== key ? sortKey : ""} } cursor }
         pageInfo { hasNextPage endCursor }
         aggregate { count } } }`,
      { where, after },
    );
    const page = data[`${plural}Connection`];
    listed.push(...page.edges.map((edge) => edge.node));
    after = page.pageInfo.hasNextPage ? page.pageInfo.endCursor : null;
    pages += 1;
    if (where) {
      assert.equal(page.aggregate.count, "3", `${plural}: the count of the filter's matches`);
    }
  } while (after && pages < 100);
  const mine = listed.filter((record) => created.some((made) => made[key] === record[key]));
  assert.equal(mine.length, 3, `${plural}: every created record is listed`);
  if (resource.order) {
    assert.equal(listed.length, 3, `${plural}: the filter keeps exactly the created records`);
    assert.deepEqual(
      listed.map((record) => record[sortKey]),
      resource.order(created),
      `${plural}: in the order asked for`,
    );
    assert.ok(pages >= 2, `${plural}: paged`);
  }

  // Update, then the same stale version again: CONFLICT, and nothing changes.
  const first = created[0];
  const update = `mutation ($where: ${type}WhereUniqueInput!, $data: ${type}UpdateInput!) {
    update${type}(where: $where, data: $data) { ${key} version } }`;
  const whereUnique = { [key]: first[key] };
  const updated = await graphql(update, {
    where: whereUnique,
    data: { expectedVersion: first.version, ...resource.change },
  });
  assert.equal(updated[`update${type}`].version, String(Number(first.version) + 1));
  await graphql(
    update,
    { where: whereUnique, data: { expectedVersion: first.version, ...resource.change } },
    ["CONFLICT"],
  );
  const read = await graphql(
    `query ($where: ${type}WhereUniqueInput!) { ${type[0].toLowerCase()}${type.slice(1)}(where: $where) { version } }`,
    { where: whereUnique },
  );
  assert.equal(read[`${type[0].toLowerCase()}${type.slice(1)}`].version, updated[`update${type}`].version);

  // Delete each; then the record is gone.
  for (const record of created) {
    await graphql(
      `mutation ($where: ${type}WhereUniqueInput!) { delete${type}(where: $where) }`,
      { where: { [key]: record[key] } },
    );
  }
  const gone = await graphql(
    `query ($where: ${type}WhereUniqueInput!) { ${type[0].toLowerCase()}${type.slice(1)}(where: $where) { ${key} } }`,
    { where: whereUnique },
  );
  assert.equal(gone[`${type[0].toLowerCase()}${type.slice(1)}`], null);
  console.log(`${plural}: created 3, listed in ${pages} pages, updated, stale update refused, deleted`);
}

// A subscription: productChanged arrives after an update.
const categoryId = (
  await graphql(`mutation { createCategory(data: { name: "Watched ${run}" }) { id } }`)
).createCategory.id;
const product = (
  await graphql(
    `mutation ($data: ProductCreateInput!) { createProduct(data: $data) { id version } }`,
    {
      data: {
        sku: `WATCH-${run}`,
        name: "Watched",
        categoryId,
        price: { amountMinor: "100", currency: "EUR" },
        stockOnHand: 1,
      },
    },
  )
).createProduct;
const subscription = `subscription ($id: ID!) {
  productChanged(where: { mutation_in: [UPDATED], node: { id: $id } }) { mutation node { id name version } } }`;
assert.deepEqual(validate(schema, parse(subscription)).map(String), []);
const client = createClient({
  url: url.replace(/^http/, "ws"),
  webSocketImpl: WebSocket,
  connectionParams: { Authorization: `Bearer ${token}` },
});
const received = new Promise((resolve, reject) => {
  client.subscribe(
    { query: subscription, variables: { id: product.id } },
    { next: resolve, error: reject, complete: () => reject(new Error("completed early")) },
  );
});
// The subscription is live once the gateway counts it.
const metricsUrl = url.replace(/\/graphql$/, "/metrics");
for (let attempt = 0; ; attempt += 1) {
  const metrics = await (await fetch(metricsUrl)).text();
  if (/^emporium_graphql_subscriptions [1-9]/m.test(metrics)) break;
  assert.ok(attempt < 200, "the subscription started");
  await new Promise((resolve) => setTimeout(resolve, 50));
}
await graphql(
  `mutation ($id: ID!, $version: Int64!) {
     updateProduct(where: { id: $id }, data: { expectedVersion: $version, name: "Watched closely" }) { version } }`,
  { id: product.id, version: product.version },
);
const updatedAt = performance.now();
const change = await Promise.race([
  received,
  new Promise((_, reject) => setTimeout(() => reject(new Error("no productChanged within 10 s")), 10_000)),
]);
const latency = performance.now() - updatedAt;
assert.deepEqual(change.data.productChanged, {
  mutation: "UPDATED",
  node: { id: product.id, name: "Watched closely", version: "2" },
});
await client.dispose();
console.log(`subscription: productChanged arrived ${latency.toFixed(0)} ms after the update`);
console.log("ok");
