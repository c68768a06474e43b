// The screens of every resource, made from its model: a list with its filters, sorts, pages and
// total; a record's page with its fields, the lists of records that name it and its history;
// create and edit forms whose errors land on the fields the server names; deletion after a
// confirmation; a stale version explained, with a way to reload.

import { useState } from 'react';
import type { ReactElement } from 'react';
import { Alert, Button, useMediaQuery } from '@mui/material';
import type { Theme } from '@mui/material';
import {
  Create,
  Datagrid,
  DeleteButton,
  Edit,
  EditButton,
  List,
  Pagination,
  ReferenceManyField,
  SaveButton,
  SearchInput,
  Show,
  SimpleList,
  SimpleForm,
  TabbedShowLayout,
  Toolbar,
  TopToolbar,
  useEditContext,
  useNotify,
  useRedirect,
} from 'react-admin';
import type { HttpError, RaRecord } from 'react-admin';
import { ActionButton, ShownOnce } from './actions';
import { useMay, useModel } from './console';
import { OWN_ID, SHOWN_ONCE } from './dataProvider';
import { inputField, isMultiline, showField } from './fields';
import { History } from './history';
import { fromCamel } from './labels';
import type { FieldModel, Model, ResourceModel } from './schema';

/** The columns of a list: the record's title first, then its short fields. */
function columns(resource: ResourceModel): FieldModel[] {
  const short = resource.fields.filter(
    (field) => !isMultiline(field) && field.type.kind !== 'OBJECT' || field.type.name === 'Money',
  );
  const title = short.filter((field) => field.name === resource.title);
  const rest = short.filter((field) => field.name !== resource.title && field.name !== 'id' && field.name !== 'createTime');
  return [...title, ...rest].slice(0, 8);
}

function filtersOf(model: Model, resource: ResourceModel): ReactElement[] {
  return resource.filters.map((filter) =>
    filter.name === 'query' ? (
      <SearchInput key="query" source="query" alwaysOn placeholder={`Search ${fromCamel(resource.plural).toLowerCase()}`} />
    ) : (
      inputField(model, resource, filter, { filter: true })
    ),
  );
}

/** A record's one-line summary on a small screen: its title and its next field. */
function summary(resource: ResourceModel, record: RaRecord | undefined, index: number): string {
  const field = columns(resource)[index];
  if (!record || !field || field.type.kind === 'OBJECT' || field.type.list) return '';
  const value = record[field.name === 'id' && resource.key !== 'id' ? OWN_ID : field.name];
  return value === undefined || value === null ? '' : String(value);
}

export function ResourceList({ resource }: { resource: ResourceModel }): ReactElement {
  const model = useModel();
  const small = useMediaQuery((theme: Theme) => theme.breakpoints.down('sm'));
  return (
    <List filters={filtersOf(model, resource)} perPage={25} title={fromCamel(resource.plural)}>
      {small ? (
        <SimpleList
          primaryText={(record) => summary(resource, record, 0)}
          secondaryText={(record) => summary(resource, record, 1)}
          linkType="show"
        />
      ) : (
        <Datagrid rowClick="show" bulkActionButtons={false}>
          {columns(resource).map((field) => showField(model, resource, field, true))}
        </Datagrid>
      )}
    </List>
  );
}

function ShowActions({ resource }: { resource: ResourceModel }): ReactElement {
  const model = useModel();
  const may = useMay();
  return (
    <TopToolbar>
      {resource.actions
        .filter((action) => may('Mutation', action.field))
        .map((action) => (
          <ActionButton key={action.field} model={model} resource={resource} action={action} />
        ))}
      {resource.update && may('Mutation', resource.update.field) && <EditButton />}
      {resource.delete && may('Mutation', resource.delete.field) && (
        <DeleteButton mutationMode="pessimistic" />
      )}
    </TopToolbar>
  );
}

export function ResourceShow({ resource }: { resource: ResourceModel }): ReactElement {
  const model = useModel();
  const may = useMay();
  const tabs = [
    <TabbedShowLayout.Tab key="details" label="Details">
      {resource.fields.map((field) => showField(model, resource, field))}
    </TabbedShowLayout.Tab>,
  ];
  for (const child of resource.children) {
    const childResource = model.byName.get(child.resource);
    if (!childResource || !may(resource.name, child.field)) continue;
    tabs.push(
      <TabbedShowLayout.Tab key={child.field} label={fromCamel(child.field)} path={child.field}>
        <ReferenceManyField reference={child.resource} target={child.target} label={false} pagination={<Pagination />}>
          <Datagrid rowClick="show" bulkActionButtons={false}>
            {columns(childResource)
              .filter((field) => field.name !== child.target)
              .map((field) => showField(model, childResource, field))}
          </Datagrid>
        </ReferenceManyField>
      </TabbedShowLayout.Tab>,
    );
  }
  if (resource.history && may(resource.name, 'events')) {
    tabs.push(
      <TabbedShowLayout.Tab key="history" label="History" path="history">
        <History resource={resource} />
      </TabbedShowLayout.Tab>,
    );
  }
  return (
    <Show actions={<ShowActions resource={resource} />}>
      <TabbedShowLayout>{tabs}</TabbedShowLayout>
    </Show>
  );
}

function EditForm({
  resource,
  conflict,
  onReload,
}: {
  resource: ResourceModel;
  conflict: boolean;
  onReload: () => void;
}): ReactElement | null {
  const model = useModel();
  const may = useMay();
  const { record, refetch } = useEditContext();
  if (!record || !resource.update) return null;
  const fields = resource.update.input.fields.filter((field) => field.name !== 'expectedVersion');
  return (
    <SimpleForm
      key={String(record.version)}
      toolbar={
        <Toolbar sx={{ justifyContent: 'space-between' }}>
          <SaveButton />
          {resource.delete && may('Mutation', resource.delete.field) && <DeleteButton mutationMode="pessimistic" />}
        </Toolbar>
      }
    >
      {conflict && (
        <Alert
          severity="warning"
          role="alert"
          sx={{ width: '100%', mb: 2 }}
          action={
            <Button
              color="inherit"
              onClick={() => {
                void refetch();
                onReload();
              }}
            >
              Reload
            </Button>
          }
        >
          Someone else saved this {resource.singular} after you opened it, so your changes were
          not saved. Reload to see the current version, then make your changes again.
        </Alert>
      )}
      {fields.map((field) => inputField(model, resource, field))}
    </SimpleForm>
  );
}

export function ResourceEdit({ resource }: { resource: ResourceModel }): ReactElement {
  const [conflict, setConflict] = useState(false);
  const notify = useNotify();
  return (
    <Edit
      mutationMode="pessimistic"
      redirect="show"
      mutationOptions={{
        onError: (error: unknown) => {
          const refused = error as HttpError;
          // A field the server named (a taken sku among them) is shown on that field.
          if (refused.body?.errors) return;
          if (refused.status === 409) setConflict(true);
          else notify(refused.message, { type: 'error' });
        },
      }}
    >
      <EditForm resource={resource} conflict={conflict} onReload={() => setConflict(false)} />
    </Edit>
  );
}

export function ResourceCreate({ resource }: { resource: ResourceModel }): ReactElement | null {
  const model = useModel();
  const notify = useNotify();
  const redirect = useRedirect();
  const [created, setCreated] = useState<RaRecord | undefined>();
  const create = resource.create;
  if (!create) return null;
  return (
    <>
      <Create
        mutationOptions={{
          onSuccess: (record: RaRecord) => {
            notify(`${fromCamel(resource.singular)} created`, { type: 'success' });
            if (record[SHOWN_ONCE]) setCreated(record);
            else redirect('show', resource.name, record.id);
          },
        }}
      >
        <SimpleForm>{create.input.fields.map((field) => inputField(model, resource, field))}</SimpleForm>
      </Create>
      {created && (
        <ShownOnce
          values={created[SHOWN_ONCE] as Record<string, unknown>}
          fields={create.extras}
          onClose={() => redirect('show', resource.name, created.id)}
        />
      )}
    </>
  );
}
