// react-admin's data provider over the gateway: ra-data-graphql with our own query builder for
// OpenCRUD's names (`products`, `productsConnection`, `product(where:)`, `createProduct(data:)`,
// `updateProduct(where:, data:)`, `deleteProduct(where:, data:)`), driven by the model read from
// the schema. The services page forward with cursors, so page N is reached by following the
// cursors of the pages before it (kept per listing); the total is `aggregate { count }`.

import { parse } from 'graphql';
import { HttpError } from 'react-admin';
import type { DataProvider, RaRecord } from 'react-admin';
import { ApolloClient, HttpLink, InMemoryCache } from '@apollo/client';
import buildGraphQLProvider from 'ra-data-graphql';
import type { BuildQueryResult } from 'ra-data-graphql';
import type { FieldModel, Model, ResourceModel } from './schema';

/** The record's own id under react-admin's `id`, when the key is another field (`clientId`). */
export const OWN_ID = '_recordId';

/** The selection of `fields` (nested objects by their own fields). */
export function selection(model: Model, fields: FieldModel[], depth = 0): string {
  return fields
    .map((field) => {
      if (field.type.kind !== 'OBJECT') return field.name;
      const inner = model.objects.get(field.type.name);
      if (!inner || depth > 2) return '';
      return `${field.name} { ${selection(model, inner, depth + 1)} }`;
    })
    .filter(Boolean)
    .join(' ');
}

/** A GraphQL record as react-admin holds it: `id` is the key `where` names it by. */
export function toRecord(resource: ResourceModel, node: Record<string, unknown>): RaRecord {
  if (resource.key === 'id') return node as RaRecord;
  return { ...node, [OWN_ID]: node.id, id: node[resource.key] as string };
}

function fromRecord(resource: ResourceModel, record: Record<string, unknown>): Record<string, unknown> {
  if (resource.key === 'id') return record;
  const { [OWN_ID]: own, ...rest } = record;
  return { ...rest, id: own };
}

function equal(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** The input's fields of `data`, with empty optional values left out (absent keeps a value). */
function inputOf(
  fields: FieldModel[],
  data: Record<string, unknown>,
  previous?: Record<string, unknown>,
): Record<string, unknown> {
  const input: Record<string, unknown> = {};
  for (const field of fields) {
    if (!(field.name in data)) continue;
    const value = data[field.name];
    if (previous && equal(value, previous[field.name])) continue;
    if ((value === null || value === undefined) && !field.type.nonNull) continue;
    input[field.name] = value;
  }
  return input;
}

function filterOf(resource: ResourceModel, filter: Record<string, unknown> = {}): Record<string, unknown> {
  const where: Record<string, unknown> = {};
  for (const field of resource.filters) {
    const value = filter[field.name];
    if (value !== undefined && value !== null && value !== '') where[field.name] = value;
  }
  return where;
}

function orderOf(resource: ResourceModel, sort?: { field: string; order: string }): string | undefined {
  if (!sort || !resource.sortable.includes(sort.field)) return undefined;
  return `${sort.field}_${sort.order === 'DESC' ? 'DESC' : 'ASC'}`;
}

type Params = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

function resourceOf(model: Model, name: string): ResourceModel {
  const resource = model.byName.get(name);
  if (!resource) throw new Error(`No resource ${name} in the API`);
  return resource;
}

/** The query for one react-admin call. */
function buildQuery(model: Model) {
  return (fetchType: string, name: string, params: Params): BuildQueryResult => {
    const resource = resourceOf(model, name);
    const fields = selection(model, resource.fields);
    const whereType = `${resource.name}WhereInput`;
    const orderType = `${resource.name}OrderByInput`;
    const connection = (where: Record<string, unknown>, after: string | undefined, first: number, orderBy?: string) => ({
      query: parse(`query ($where: ${whereType}, ${resource.sortable.length ? `$orderBy: ${orderType}, ` : ''}$first: Int, $after: String) {
        page: ${resource.plural}Connection(where: $where, ${resource.sortable.length ? 'orderBy: $orderBy, ' : ''}first: $first, after: $after) {
          edges { node { ${fields} } } pageInfo { hasNextPage endCursor } aggregate { count }
        }
      }`),
      variables: { where, first, after, ...(resource.sortable.length ? { orderBy } : {}) },
      parseResponse: ({ data }: { data: { page: Connection } }) => ({
        data: data.page.edges.map((edge) => toRecord(resource, edge.node)),
        total: Number(data.page.aggregate.count),
        pageInfo: { hasNextPage: data.page.pageInfo.hasNextPage, hasPreviousPage: false },
        meta: { endCursor: data.page.pageInfo.endCursor },
      }),
    });
    const key = (id: unknown) => ({ [resource.key]: id });
    switch (fetchType) {
      case 'GET_LIST': {
        const where = filterOf(resource, params.filter);
        return connection(where, params.meta?.after, params.pagination?.perPage ?? 25, orderOf(resource, params.sort));
      }
      case 'GET_MANY_REFERENCE': {
        const where = { ...filterOf(resource, params.filter), [params.target]: params.id };
        return connection(where, params.meta?.after, params.pagination?.perPage ?? 25, orderOf(resource, params.sort));
      }
      case 'GET_MANY': {
        if (!resource.idsFilter) throw new Error(`${resource.name} cannot be read by ids`);
        const ids: unknown[] = params.ids;
        return {
          query: parse(`query ($where: ${whereType}, $first: Int) { records: ${resource.plural}(where: $where, first: $first) { ${fields} } }`),
          variables: { where: { [resource.idsFilter]: ids }, first: Math.max(ids.length, 1) },
          parseResponse: ({ data }: { data: { records: Record<string, unknown>[] } }) => ({
            data: data.records.map((node) => toRecord(resource, node)),
          }),
        };
      }
      case 'GET_ONE':
        return {
          query: parse(`query ($where: ${resource.name}WhereUniqueInput!) { record: ${resource.singular}(where: $where) { ${fields} } }`),
          variables: { where: key(params.id) },
          parseResponse: ({ data }: { data: { record: Record<string, unknown> | null } }) => {
            if (!data.record) throw new HttpError(`This ${resource.singular} does not exist (any more).`, 404, { code: 'NOT_FOUND' });
            return { data: toRecord(resource, data.record) };
          },
        };
      case 'CREATE': {
        const create = resource.create;
        if (!create) throw new Error(`${resource.name} cannot be created`);
        const answer = create.recordPath
          ? `${create.recordPath} { ${fields} } ${selection(model, create.extras)}`
          : fields;
        return {
          query: parse(`mutation ($data: ${create.input.type}!) { answer: ${create.field}(data: $data) { ${answer} } }`),
          variables: { data: inputOf(create.input.fields, fromRecord(resource, params.data)) },
          parseResponse: ({ data }: { data: { answer: Record<string, unknown> } }) => {
            const { answer: created } = data;
            const node = create.recordPath ? (created[create.recordPath] as Record<string, unknown>) : created;
            const extras = Object.fromEntries(create.extras.map((field) => [field.name, created[field.name]]));
            return { data: { ...toRecord(resource, node), ...(create.extras.length ? { [SHOWN_ONCE]: extras } : {}) } };
          },
        };
      }
      case 'UPDATE': {
        const update = resource.update;
        if (!update) throw new Error(`${resource.name} cannot be changed`);
        const previous = params.previousData ?? {};
        const changes = inputOf(
          update.input.fields.filter((field) => field.name !== 'expectedVersion'),
          fromRecord(resource, params.data),
          fromRecord(resource, previous),
        );
        return {
          query: parse(`mutation ($where: ${resource.name}WhereUniqueInput!, $data: ${update.input.type}!) { record: ${update.field}(where: $where, data: $data) { ${fields} } }`),
          variables: { where: key(params.id), data: { ...changes, expectedVersion: previous.version } },
          parseResponse: ({ data }: { data: { record: Record<string, unknown> } }) => ({ data: toRecord(resource, data.record) }),
        };
      }
      case 'DELETE': {
        const deletion = resource.delete;
        if (!deletion) throw new Error(`${resource.name} cannot be deleted`);
        const version = params.previousData?.version;
        return {
          query: parse(deletion.hasData
            ? `mutation ($where: ${resource.name}WhereUniqueInput!, $data: ${resource.name}DeleteInput) { id: ${deletion.field}(where: $where, data: $data) }`
            : `mutation ($where: ${resource.name}WhereUniqueInput!) { id: ${deletion.field}(where: $where) }`),
          variables: { where: key(params.id), ...(deletion.hasData ? { data: { expectedVersion: version ?? 0 } } : {}) },
          parseResponse: () => ({ data: params.previousData ?? { id: params.id } }),
        };
      }
      default:
        throw new Error(`${fetchType} is not supported`);
    }
  };
}

/** Where a created record carries what its answer showed once (a new client secret). */
export const SHOWN_ONCE = '_shownOnce';

interface Connection {
  edges: { node: Record<string, unknown> }[];
  pageInfo: { hasNextPage: boolean; endCursor: string | null };
  aggregate: { count: string };
}

interface GraphqlError {
  message: string;
  path?: readonly (string | number)[];
  extensions?: { code?: string; fields?: { field: string; reason: string }[] };
}

const STATUS: Record<string, number> = {
  BAD_USER_INPUT: 400,
  GRAPHQL_VALIDATION_FAILED: 400,
  UNAUTHENTICATED: 401,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  CONFLICT: 409,
  FAILED_PRECONDITION: 412,
  UNAVAILABLE: 503,
};

/** `price.amount_minor` → `price.amountMinor`: a service's field path as the form names it. */
export function formPath(path: string): string {
  return path
    .split('.')
    .map((part) => part.replace(/_([a-z0-9])/g, (_, letter: string) => letter.toUpperCase()))
    .join('.');
}

/** The error of a refused call, as react-admin shows it: field errors on their fields. */
export function asHttpError(error: unknown): HttpError {
  if (error instanceof HttpError && error.body?.code) return error;
  const body = (error as { body?: { graphQLErrors?: GraphqlError[]; networkError?: { statusCode?: number } } })?.body;
  const first = body?.graphQLErrors?.[0];
  if (!first) {
    const status = (error as { status?: number })?.status ?? 0;
    const message = (error as Error)?.message || 'The gateway could not be reached.';
    return new HttpError(message, status >= 400 ? status : 503, { code: 'UNAVAILABLE' });
  }
  // An error without a code is GraphQL's own: the request does not fit the schema.
  const code = first.extensions?.code ?? 'GRAPHQL_VALIDATION_FAILED';
  const errors: Record<string, unknown> = {};
  for (const violation of first.extensions?.fields ?? []) {
    const parts = formPath(violation.field).split('.').filter((part) => !['data', 'input', 'where'].includes(part));
    let target = errors;
    parts.forEach((part, index) => {
      if (index === parts.length - 1) {
        target[part] = violation.reason;
      } else {
        target[part] = (target[part] as Record<string, unknown>) ?? {};
        target = target[part] as Record<string, unknown>;
      }
    });
  }
  const message = code === 'INTERNAL' ? 'The server failed; try again.' : first.message;
  return new HttpError(message, STATUS[code] ?? 500, {
    code,
    ...(Object.keys(errors).length ? { errors } : {}),
  });
}

/** The data provider, with the console's own GraphQL requests (a history, an action). */
export type ConsoleDataProvider = DataProvider & {
  graphql<T>(query: string, variables: Record<string, unknown>): Promise<T>;
};

export function buildDataProvider(model: Model): ConsoleDataProvider {
  const client = new ApolloClient({
    link: new HttpLink({ uri: '/graphql', credentials: 'same-origin' }),
    cache: new InMemoryCache(),
  });
  const inner = buildGraphQLProvider({
    client,
    introspection: false,
    buildQuery: () => buildQuery(model),
  } as Parameters<typeof buildGraphQLProvider>[0]);

  const cursors = new Map<string, (string | undefined)[]>();
  const call = async <T,>(run: () => Promise<T>): Promise<T> => {
    try {
      return await run();
    } catch (error) {
      throw asHttpError(error);
    }
  };
  const paged = async (method: 'getList' | 'getManyReference', name: string, params: Params) => {
    const perPage = params.pagination?.perPage ?? 25;
    const page = params.pagination?.page ?? 1;
    const listing = JSON.stringify([method, name, params.filter, params.sort, params.target, params.id, perPage]);
    const known = cursors.get(listing) ?? [undefined];
    cursors.set(listing, known);
    // known[i] is the cursor after page i: page i + 1 starts there.
    while (known.length < page) {
      const before = known.length;
      const result = await inner[method](name, { ...params, pagination: { page: before, perPage }, meta: { after: known[before - 1] } } as never);
      const next = (result.meta as { endCursor?: string } | undefined)?.endCursor;
      if (!result.pageInfo?.hasNextPage || !next) {
        return { data: [], total: result.total, pageInfo: { hasNextPage: false, hasPreviousPage: page > 1 } };
      }
      known[before] = next;
    }
    const result = await inner[method](name, { ...params, meta: { after: known[page - 1] } } as never);
    const next = (result.meta as { endCursor?: string } | undefined)?.endCursor;
    if (result.pageInfo?.hasNextPage && next) known[page] = next;
    return { ...result, pageInfo: { hasNextPage: Boolean(result.pageInfo?.hasNextPage), hasPreviousPage: page > 1 } };
  };

  return {
    getList: (name, params) => call(() => paged('getList', name, params)),
    getManyReference: (name, params) => call(() => paged('getManyReference', name, params)),
    getOne: (name, params) => call(() => inner.getOne(name, params)),
    getMany: (name, params) => call(() => inner.getMany(name, params)),
    create: (name, params) => call(() => inner.create(name, params)),
    update: (name, params) => {
      cursors.clear();
      return call(() => inner.update(name, params));
    },
    delete: (name, params) => {
      cursors.clear();
      return call(() => inner.delete(name, params));
    },
    updateMany: () => Promise.reject(new HttpError('Change records one at a time.', 400)),
    deleteMany: () => Promise.reject(new HttpError('Delete records one at a time.', 400)),
    /** A GraphQL request of the console's own (a record's history, an action). */
    graphql: <T,>(query: string, variables: Record<string, unknown>): Promise<T> =>
      call(async () => {
        const document = parse(query);
        const result = query.trimStart().startsWith('mutation')
          ? await client.mutate<T>({ mutation: document, variables })
          : await client.query<T>({ query: document, variables, fetchPolicy: 'network-only' });
        return result.data as T;
      }),
  };
}
