// How a field of the model is shown and entered, by its GraphQL type: references as the named
// record with an autocomplete, enums as choices, dates, booleans, numbers and lists with their
// own inputs; the types in `overrides.tsx` with their own components.

import { Fragment } from 'react';
import type { ReactElement } from 'react';
import { Chip, Stack } from '@mui/material';
import {
  AutocompleteArrayInput,
  AutocompleteInput,
  BooleanField,
  BooleanInput,
  ChipField,
  DateField,
  DateTimeInput,
  FunctionField,
  NumberInput,
  PasswordInput,
  ReferenceArrayField,
  ReferenceArrayInput,
  ReferenceField,
  ReferenceInput,
  SelectInput,
  SingleFieldList,
  TextArrayInput,
  TextField,
  TextInput,
  required,
} from 'react-admin';
import { enumLabel, fieldLabel, firstSentence } from './labels';
import { fieldOverrides, inputOverrides } from './overrides';
import type { FieldModel, Model, ResourceModel } from './schema';
import { OWN_ID } from './dataProvider';

const NUMBERS = ['Int', 'Int64', 'Float'];

/** A multi-line text, as the contract's description of it says. */
export function isMultiline(field: FieldModel): boolean {
  return /span lines/i.test(field.description);
}

/** The search filter of a resource (a free-text `query`), for autocompletes. */
export function searchFilter(resource: ResourceModel | undefined): string | undefined {
  return resource?.filters.find((filter) => filter.type.name === 'String' && filter.name === 'query')?.name;
}

function ValueList({ values }: { values: unknown }): ReactElement | null {
  if (!Array.isArray(values) || values.length === 0) return null;
  return (
    <Stack direction="row" spacing={0.5} useFlexGap sx={{ flexWrap: 'wrap' }}>
      {values.map((value) => (
        <Chip key={String(value)} label={String(value)} size="small" />
      ))}
    </Stack>
  );
}

/** The component that shows `field` of a record of `resource`. */
export function showField(model: Model, resource: ResourceModel, field: FieldModel, sortable = false): ReactElement {
  const source = field.name === 'id' && resource.key !== 'id' ? OWN_ID : field.name;
  const label = fieldLabel(field.name, field.reference !== undefined);
  const common = { source, label, sortable: sortable && resource.sortable.includes(field.name) };
  const key = field.name;
  const Override = fieldOverrides[field.type.name];
  if (Override) return <Override key={key} {...common} />;
  if (field.reference && field.type.list) {
    const target = model.byName.get(field.reference);
    return (
      <ReferenceArrayField key={key} {...common} reference={field.reference}>
        <SingleFieldList linkType="show">
          <ChipField source={target?.title ?? 'id'} size="small" />
        </SingleFieldList>
      </ReferenceArrayField>
    );
  }
  if (field.reference) {
    return <ReferenceField key={key} {...common} reference={field.reference} link="show" emptyText="—" />;
  }
  if (field.type.list) {
    return <FunctionField key={key} {...common} render={(record: Record<string, unknown>) => <ValueList values={record[source]} />} />;
  }
  if (field.type.kind === 'ENUM') {
    return <FunctionField key={key} {...common} render={(record: Record<string, unknown>) => (record[source] ? enumLabel(String(record[source]), field.type.name) : '')} />;
  }
  if (field.type.name === 'DateTime') return <DateField key={key} {...common} showTime />;
  if (field.type.name === 'Boolean') return <BooleanField key={key} {...common} />;
  if (field.type.kind === 'OBJECT') {
    const inner = model.objects.get(field.type.name) ?? [];
    return (
      <FunctionField
        key={key}
        {...common}
        render={(record: Record<string, unknown>) => {
          const value = record[source] as Record<string, unknown> | undefined;
          return value ? inner.map((part) => `${fieldLabel(part.name)}: ${String(value[part.name] ?? '')}`).join(', ') : '';
        }}
      />
    );
  }
  return <TextField key={key} {...common} />;
}

/** The component that enters `field` of an input, `prefix` the path of the input it is in. */
export function inputField(
  model: Model,
  resource: ResourceModel,
  field: FieldModel,
  options: { prefix?: string; filter?: boolean } = {},
): ReactElement {
  const source = `${options.prefix ?? ''}${field.name}`;
  const reference = field.reference ?? resource.fields.find((candidate) => candidate.name === field.name)?.reference;
  const label = fieldLabel(field.name, reference !== undefined);
  const helperText = options.filter ? false : firstSentence(field.description) || false;
  const isRequired = field.type.nonNull && !options.filter;
  const validate = isRequired ? required() : undefined;
  const common = { source, label, helperText, validate };
  const key = source;
  const Override = inputOverrides[field.type.name];
  if (Override) {
    return <Override key={key} source={source} label={label} helperText={helperText || undefined} isRequired={isRequired} />;
  }
  if (reference) {
    // A search of the named resource, by its free-text filter where it has one.
    const target = model.byName.get(reference);
    const search = searchFilter(target);
    const picker = {
      label,
      helperText,
      validate,
      filterToQuery: (text: string) => (search && text ? { [search]: text } : {}),
      optionText: target?.title,
    };
    const reach = { source, reference, alwaysOn: options.filter };
    return field.type.list ? (
      <ReferenceArrayInput key={source} {...reach}>
        <AutocompleteArrayInput {...picker} />
      </ReferenceArrayInput>
    ) : (
      <ReferenceInput key={source} {...reach}>
        <AutocompleteInput {...picker} />
      </ReferenceInput>
    );
  }
  if (field.type.kind === 'ENUM') {
    const choices = (model.enums.get(field.type.name) ?? [])
      .filter((value) => !value.endsWith('_UNSPECIFIED'))
      .map((value) => ({ id: value, name: enumLabel(value, field.type.name) }));
    return <SelectInput key={key} {...common} choices={choices} />;
  }
  if (field.type.list) return <TextArrayInput key={key} {...common} />;
  if (field.type.name === 'Boolean') return <BooleanInput key={key} {...common} validate={undefined} />;
  if (NUMBERS.includes(field.type.name)) return <NumberInput key={key} {...common} />;
  if (field.type.name === 'DateTime') return <DateTimeInput key={key} {...common} />;
  if (field.type.kind === 'INPUT_OBJECT') {
    const inner = model.inputs.get(field.type.name)?.fields ?? [];
    return <Fragment key={key}>{inner.map((part) => inputField(model, resource, part, { prefix: `${source}.` }))}</Fragment>;
  }
  if (/password/i.test(field.name)) return <PasswordInput key={key} {...common} autoComplete="new-password" />;
  return <TextInput key={key} {...common} multiline={isMultiline(field)} minRows={isMultiline(field) ? 3 : undefined} />;
}
