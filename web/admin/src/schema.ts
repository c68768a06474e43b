// The console's model of the API, read from the gateway's schema by introspection and from its
// `accessRules`: every resource with its fields, references, inputs, filters, orderings and
// other actions. Nothing here names a resource: a resource added to a service's contract
// appears in the gateway's schema, and so here.

import { getIntrospectionQuery } from 'graphql';
import type {
  IntrospectionField,
  IntrospectionInputValue,
  IntrospectionQuery,
  IntrospectionSchema,
  IntrospectionType,
  IntrospectionTypeRef,
} from 'graphql';

/** A type reference unwrapped: its named type, and whether it is a list / non-null. */
export interface TypeShape {
  name: string;
  kind: 'SCALAR' | 'ENUM' | 'OBJECT' | 'INPUT_OBJECT' | 'OTHER';
  list: boolean;
  nonNull: boolean;
}

export interface FieldModel {
  name: string;
  description: string;
  type: TypeShape;
  /** The console resource whose key this field holds (`categoryId` → `Category`; each item of
   * a list: `roles` → `Role`), as the gateway's `references` says. */
  reference?: string;
}

export interface InputModel {
  /** The input type's name (`ProductCreateInput`). */
  type: string;
  fields: FieldModel[];
}

/** Another mutation of a resource (`grantRole`, `resetClientSecret`). */
export interface ActionModel {
  field: string;
  description: string;
  /** `input` or `data`: the argument the input goes in. */
  argument: string;
  input: InputModel;
  /** The input field that names the record (`id`, `accountId`, `clientId`). */
  keyInput?: string;
  /** Where the record is in the answer: '' when the answer is the record, else its field. */
  recordPath: string;
  /** The answer's fields beside the record (a secret shown once). */
  extras: FieldModel[];
}

export interface AccessRule {
  type: string;
  field: string;
  rpc: string;
  visitors: boolean;
  anySignedInCaller: boolean;
  roles: string[];
}

/** A field holding another record's key, as the gateway's `references` lists it. */
export interface Reference {
  type: string;
  field: string;
  resource: string;
  key: string;
}

export interface ResourceModel {
  /** The GraphQL type, also react-admin's resource name: `Product`. */
  name: string;
  description: string;
  /** The Get field, `product`. */
  singular: string;
  /** The List field, `products`. */
  plural: string;
  /** The field `where` names a record by: `id`, `name`, `clientId`. */
  key: string;
  fields: FieldModel[];
  /** The field that names a record to people (`name`, `email`), else the key. */
  title: string;
  filters: FieldModel[];
  /** The ids filter (`id_in`), when the resource can be read many at a time. */
  idsFilter?: string;
  /** Fields that `orderBy` can sort by. */
  sortable: string[];
  create?: { field: string; input: InputModel; recordPath: string; extras: FieldModel[] };
  update?: { field: string; input: InputModel };
  delete?: { field: string; hasData: boolean };
  /** The type of the record's history (`events`), when it has one. */
  history?: string;
  actions: ActionModel[];
  /** Lists of other resources that name this one (`Category.products` → `Product` by `categoryId`). */
  children: { resource: string; field: string; target: string }[];
}

export interface Model {
  resources: ResourceModel[];
  byName: Map<string, ResourceModel>;
  enums: Map<string, string[]>;
  inputs: Map<string, InputModel>;
  objects: Map<string, FieldModel[]>;
  rules: AccessRule[];
}

type Schema = IntrospectionSchema;

export function shape(ref: IntrospectionTypeRef): TypeShape {
  let nonNull = false;
  let list = false;
  let current: IntrospectionTypeRef = ref;
  if (current.kind === 'NON_NULL') {
    nonNull = true;
    current = current.ofType;
  }
  if (current.kind === 'LIST') {
    list = true;
    current = current.ofType;
    if (current.kind === 'NON_NULL') current = current.ofType;
  }
  const name = 'name' in current ? current.name : '';
  const kinds = ['SCALAR', 'ENUM', 'OBJECT', 'INPUT_OBJECT'] as const;
  const kind = (kinds as readonly string[]).includes(current.kind)
    ? (current.kind as TypeShape['kind'])
    : 'OTHER';
  return { name, kind, list, nonNull };
}

const TITLE_FIELDS = ['name', 'displayName', 'title', 'email', 'sku', 'clientId'];

/** The query that reads everything the console needs of the API in one request. */
export const MODEL_QUERY = `${getIntrospectionQuery({ descriptions: true })
  .replace(
    /^\s*query IntrospectionQuery \{/,
    'query ConsoleModel {\n  accessRules { type field rpc visitors anySignedInCaller roles }\n  references { type field resource key }',
  )}`;

/** What `MODEL_QUERY` answers. */
export type ModelAnswer = IntrospectionQuery & { accessRules: AccessRule[]; references: Reference[] };

export function buildModel(result: ModelAnswer): Model {
  const schema: Schema = result.__schema;
  const types = new Map<string, IntrospectionType>(schema.types.map((type) => [type.name, type]));
  const query = types.get(schema.queryType.name);
  const mutation = schema.mutationType ? types.get(schema.mutationType.name) : undefined;
  const queryFields = query && 'fields' in query ? [...query.fields] : [];
  const mutationFields = mutation && 'fields' in mutation ? [...mutation.fields] : [];

  const referenced = new Map(result.references.map((reference) => [`${reference.type}.${reference.field}`, reference.resource]));
  const enums = new Map<string, string[]>();
  const inputs = new Map<string, InputModel>();
  const objects = new Map<string, FieldModel[]>();
  for (const type of schema.types) {
    if (type.kind === 'ENUM' && !type.name.startsWith('__')) {
      enums.set(type.name, type.enumValues.map((value) => value.name));
    }
    if (type.kind === 'INPUT_OBJECT') {
      inputs.set(type.name, { type: type.name, fields: type.inputFields.map(inputField) });
    }
  }

  // A resource is a type with a Get (`product(where: ProductWhereUniqueInput!): Product`) and a
  // plain List (`products: [Product!]!`), as the gateway makes them for each contract resource.
  const resources: ResourceModel[] = [];
  for (const get of queryFields) {
    const result = shape(get.type);
    const whereArg = get.args.find((arg) => arg.name === 'where');
    if (result.kind !== 'OBJECT' || result.list || !whereArg) continue;
    const where = shape(whereArg.type);
    if (!where.nonNull || !where.name.endsWith('WhereUniqueInput')) continue;
    const list = queryFields.find((field) => {
      const listed = shape(field.type);
      return listed.list && listed.name === result.name && !field.name.endsWith('Connection');
    });
    if (!list) continue;
    const type = types.get(result.name);
    if (!type || type.kind !== 'OBJECT') continue;
    const unique = inputs.get(where.name);
    const key = unique?.fields[0]?.name ?? 'id';
    resources.push({
      name: result.name,
      description: type.description ?? '',
      singular: get.name,
      plural: list.name,
      key,
      fields: [],
      title: key,
      history: historyOf(type),
      actions: [],
      children: [],
      ...listParts(list, inputs, enums),
    });
  }
  const byName = new Map(resources.map((resource) => [resource.name, resource]));
  // References to the console's resources only: a record it cannot read is shown by its key.
  const referenceOf = (type: string, field: string): string | undefined => {
    const target = referenced.get(`${type}.${field}`);
    return target && byName.has(target) ? target : undefined;
  };
  // (A resource's filters are its `where` input's own fields, so they get theirs here too.)
  for (const input of inputs.values()) {
    for (const field of input.fields) field.reference = referenceOf(input.type, field.name);
  }

  for (const type of schema.types) {
    if (type.kind !== 'OBJECT' || type.name.startsWith('__')) continue;
    objects.set(type.name, objectFields(type.name, type.fields, byName, referenceOf));
  }

  for (const resource of resources) {
    const type = types.get(resource.name);
    if (!type || type.kind !== 'OBJECT') continue;
    resource.fields = objectFields(type.name, type.fields, byName, referenceOf);
    resource.title =
      TITLE_FIELDS.find((name) =>
        resource.fields.some((field) => field.name === name && field.type.kind !== 'OBJECT'),
      ) ?? resource.key;
  }
  // Then the lists of records that name each resource, once every resource has its fields.
  for (const resource of resources) {
    const type = types.get(resource.name);
    if (!type || type.kind !== 'OBJECT') continue;
    for (const field of type.fields) {
      const listed = shape(field.type);
      const child = byName.get(listed.name);
      if (!listed.list || !child || field.name === 'events') continue;
      const target = child.fields.find((candidate) => candidate.reference === resource.name);
      if (target) resource.children.push({ resource: child.name, field: field.name, target: target.name });
    }
  }

  // Mutations: the standard three by OpenCRUD's names; every other one belongs to the resource
  // its answer is or holds.
  for (const field of mutationFields) {
    const answer = shape(field.type);
    const standard = /^(create|update|delete)(.+)$/.exec(field.name);
    const owner = standard ? byName.get(standard[2]) : undefined;
    if (standard && owner) {
      const data = field.args.find((arg) => arg.name === 'data');
      const input = data ? inputs.get(shape(data.type).name) : undefined;
      if (standard[1] === 'create' && input) {
        const { recordPath, extras } = recordIn(answer, owner, types, byName);
        owner.create = { field: field.name, input, recordPath: recordPath ?? '', extras };
      } else if (standard[1] === 'update' && input) {
        owner.update = { field: field.name, input };
      } else if (standard[1] === 'delete') {
        owner.delete = { field: field.name, hasData: Boolean(data) };
      }
      continue;
    }
    const argument = field.args.find((arg) => arg.name === 'input' || arg.name === 'data');
    const input = argument ? inputs.get(shape(argument.type).name) : undefined;
    if (!argument || !input) continue;
    for (const resource of resources) {
      const placed = recordIn(answer, resource, types, byName);
      if (placed.recordPath === undefined) continue;
      const keyInput = input.fields.find((candidate) =>
        [resource.key, 'id', `${resource.singular}Id`].includes(candidate.name),
      )?.name;
      resource.actions.push({
        field: field.name,
        description: field.description ?? '',
        argument: argument.name,
        input,
        keyInput,
        recordPath: placed.recordPath,
        extras: placed.extras,
      });
      break;
    }
  }
  return { resources, byName, enums, inputs, objects, rules: result.accessRules };
}

function historyOf(type: IntrospectionType): string | undefined {
  if (type.kind !== 'OBJECT') return undefined;
  const events = type.fields.find((field) => field.name === 'events');
  return events ? shape(events.type).name : undefined;
}

function listParts(
  list: IntrospectionField,
  inputs: Map<string, InputModel>,
  enums: Map<string, string[]>,
): Pick<ResourceModel, 'filters' | 'idsFilter' | 'sortable'> {
  const where = list.args.find((arg) => arg.name === 'where');
  const whereInput = where ? inputs.get(shape(where.type).name) : undefined;
  const idsFilter = whereInput?.fields.find((field) => field.name.endsWith('_in'))?.name;
  const filters = (whereInput?.fields ?? []).filter((field) => field.name !== idsFilter);
  const orderBy = list.args.find((arg) => arg.name === 'orderBy');
  const values = orderBy ? (enums.get(shape(orderBy.type).name) ?? []) : [];
  const sortable = values.filter((value) => value.endsWith('_ASC')).map((value) => value.slice(0, -4));
  return { filters, idsFilter, sortable };
}

function inputField(value: IntrospectionInputValue): FieldModel {
  return { name: value.name, description: value.description ?? '', type: shape(value.type) };
}

/** A type's fields the console shows: values, not the fields that take arguments or hold records. */
function objectFields(
  type: string,
  fields: readonly IntrospectionField[],
  resources: Map<string, ResourceModel>,
  referenceOf: (type: string, field: string) => string | undefined,
): FieldModel[] {
  return fields
    .filter((field) => field.args.length === 0 && !resources.has(shape(field.type).name))
    .map((field) => ({
      name: field.name,
      description: field.description ?? '',
      type: shape(field.type),
      reference: referenceOf(type, field.name),
    }));
}

/** Where `resource`'s record is in an answer of type `answer`: the answer itself, or one of its fields. */
function recordIn(
  answer: TypeShape,
  resource: ResourceModel,
  types: Map<string, IntrospectionType>,
  resources: Map<string, ResourceModel>,
): { recordPath: string | undefined; extras: FieldModel[] } {
  if (answer.name === resource.name) return { recordPath: '', extras: [] };
  const type = types.get(answer.name);
  if (!type || type.kind !== 'OBJECT') return { recordPath: undefined, extras: [] };
  const holder = type.fields.find((field) => shape(field.type).name === resource.name);
  if (!holder) return { recordPath: undefined, extras: [] };
  const extras = objectFields(
    type.name,
    type.fields.filter((field) => field !== holder),
    resources,
    () => undefined,
  );
  return { recordPath: holder.name, extras };
}
