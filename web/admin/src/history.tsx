// A record's history: its events in order (`events` on its type, the service's ListEvents),
// each with who made the change, when, and what changed between its version and the one before.

import { useEffect, useState } from 'react';
import type { ReactElement } from 'react';
import {
  Alert,
  Box,
  Chip,
  CircularProgress,
  Paper,
  Table,
  TableBody,
  TableCell,
  TableHead,
  TableRow,
  Typography,
} from '@mui/material';
import { Link, RecordContextProvider, useCreatePath, useDataProvider, useGetManyAggregate, useRecordContext } from 'react-admin';
import { fieldLabel } from './labels';
import { useMay, useModel } from './console';
import { OWN_ID } from './dataProvider';
import type { ConsoleDataProvider } from './dataProvider';
import { showField } from './fields';
import type { FieldModel, Model, ResourceModel } from './schema';

interface Event {
  id: string;
  type: string;
  aggregateVersion: string;
  time?: string;
  actor: string;
  actorClientId: string;
  dataJson: string;
}

/** The most events read: the services' largest page. */
const EVENTS_READ = 500;

/** Fields that change with every version and say nothing of their own. */
const BOOKKEEPING = new Set(['version', 'updateTime']);

export interface Change {
  field: string;
  before: unknown;
  after: unknown;
}

/** The fields whose values differ between two versions of a record, in the record's order. */
export function diff(before: Record<string, unknown> | undefined, after: Record<string, unknown>): Change[] {
  const fields = [...new Set([...Object.keys(after), ...Object.keys(before ?? {})])];
  return fields
    .filter((field) => !BOOKKEEPING.has(field))
    .filter((field) => JSON.stringify(before?.[field]) !== JSON.stringify(after[field]))
    .map((field) => ({ field, before: before?.[field], after: after[field] }));
}

function isEmpty(value: unknown): boolean {
  return value === undefined || value === null || value === '' || (Array.isArray(value) && value.length === 0);
}

/** The record `id` of `reference` by its title, linked to it; by its key when the caller may not
 * read that resource or there is no such record (any more). */
function ReferenceName({ reference, id }: { reference: string; id: string }): ReactElement {
  const model = useModel();
  const may = useMay();
  const target = model.byName.get(reference);
  const readable = Boolean(target && target.idsFilter && may('Query', target.plural));
  const { data } = useGetManyAggregate(reference, { ids: [id] }, { enabled: readable });
  const createPath = useCreatePath();
  const record = data?.find((candidate) => String(candidate.id) === id);
  if (!target || !record) return <>{id}</>;
  const title = String(record[target.title] ?? id);
  return <Link to={createPath({ resource: reference, id, type: 'show' })}>{title}</Link>;
}

/** A value of the record's history shown as the record's own field is (money, enums, dates,
 * references by name), or as text when the contract no longer has that field. */
function Shown({
  model,
  resource,
  field,
  value,
}: {
  model: Model;
  resource: ResourceModel;
  field: FieldModel | undefined;
  value: unknown;
}): ReactElement {
  if (isEmpty(value)) return <>—</>;
  if (!field) return <>{typeof value === 'object' ? JSON.stringify(value) : String(value)}</>;
  if (field.reference) {
    const reference = field.reference;
    const ids = Array.isArray(value) ? value.map(String) : [String(value)];
    return (
      <>
        {ids.map((id, index) => (
          <span key={id}>
            {index > 0 && ', '}
            <ReferenceName reference={reference} id={id} />
          </span>
        ))}
      </>
    );
  }
  return (
    <RecordContextProvider value={{ id: '', [OWN_ID]: value, [field.name]: value }}>
      {showField(model, resource, field)}
    </RecordContextProvider>
  );
}

/** Who made a change: the account by its title, and the client it came through. */
function Who({ model, event, history }: { model: Model; event: Event; history: string }): ReactElement {
  const fields = model.objects.get(history) ?? [];
  const actor = fields.find((field) => field.name === 'actor')?.reference;
  const client = fields.find((field) => field.name === 'actorClientId')?.reference;
  return (
    <>
      {' by '}
      {!event.actor ? 'the system' : actor ? <ReferenceName reference={actor} id={event.actor} /> : event.actor}
      {event.actorClientId && (
        <>
          {' (through '}
          {client ? <ReferenceName reference={client} id={event.actorClientId} /> : event.actorClientId}
          {')'}
        </>
      )}
    </>
  );
}

/** `emporium.catalog.product.updated` → `updated`. */
function action(type: string): string {
  return type.split('.').pop() ?? type;
}

function parsed(event: Event): Record<string, unknown> {
  try {
    return JSON.parse(event.dataJson) as Record<string, unknown>;
  } catch {
    return {};
  }
}

export function History({ resource }: { resource: ResourceModel }): ReactElement {
  const model = useModel();
  const record = useRecordContext();
  const dataProvider = useDataProvider<ConsoleDataProvider>();
  const [events, setEvents] = useState<Event[] | undefined>();
  const [error, setError] = useState<string | undefined>();
  const id = record?.id;
  const version = record?.version;

  useEffect(() => {
    if (id === undefined) return;
    let live = true;
    dataProvider
      .graphql<{ record: { events: Event[] | null } | null }>(
        `query ($where: ${resource.name}WhereUniqueInput!, $first: Int) {
          record: ${resource.singular}(where: $where) {
            events(first: $first) { id type aggregateVersion time actor actorClientId dataJson }
          }
        }`,
        { where: { [resource.key]: id }, first: EVENTS_READ },
      )
      .then((data: { record: { events: Event[] | null } | null }) => {
        if (!live) return;
        if (!data.record?.events) setError('You may not read this history.');
        else setEvents(data.record.events);
      })
      .catch((failure: Error) => live && setError(failure.message));
    return () => {
      live = false;
    };
  }, [dataProvider, resource, id, version]);

  if (error) return <Alert severity="error">{error}</Alert>;
  if (!events) return <CircularProgress aria-label="Loading the history" />;
  if (events.length === 0) return <Typography>No changes recorded.</Typography>;

  const fieldOf = (name: string) => resource.fields.find((field) => field.name === name);
  // Change events carry the record's whole state; audit events (a read) repeat a version.
  let previous: Record<string, unknown> | undefined;
  const entries = events.map((event) => {
    const data = parsed(event);
    const audit = event.type.includes('.audit.');
    const changes = audit ? [] : diff(previous, data);
    if (!audit) previous = data;
    return { event, changes, audit };
  });

  return (
    <Box component="ol" aria-label="History" sx={{ listStyle: 'none', p: 0, m: 0, display: 'grid', gap: 2 }}>
      {entries.reverse().map(({ event, changes, audit }) => (
        <Paper component="li" key={event.id} variant="outlined" sx={{ p: 2 }} data-version={event.aggregateVersion}>
          <Box sx={{ display: 'flex', gap: 1, alignItems: 'center', flexWrap: 'wrap', mb: changes.length ? 1 : 0 }}>
            <Typography component="h3" variant="subtitle1">
              Version {event.aggregateVersion}
            </Typography>
            <Chip size="small" label={action(event.type)} color={audit ? 'default' : 'primary'} variant="outlined" />
            <Typography variant="body2" color="text.secondary">
              {event.time ? new Date(event.time).toLocaleString() : ''}
              <Who model={model} event={event} history={resource.history ?? ''} />
            </Typography>
          </Box>
          {changes.length > 0 && (
            <Table size="small" aria-label={`Changes in version ${event.aggregateVersion}`}>
              <TableHead>
                <TableRow>
                  <TableCell>Field</TableCell>
                  <TableCell>Before</TableCell>
                  <TableCell>After</TableCell>
                </TableRow>
              </TableHead>
              <TableBody>
                {changes.map((change) => (
                  <TableRow key={change.field}>
                    <TableCell component="th" scope="row">
                      {fieldLabel(change.field, fieldOf(change.field)?.reference !== undefined)}
                    </TableCell>
                    <TableCell sx={{ color: 'text.secondary', textDecoration: change.before === undefined ? 'none' : 'line-through' }}>
                      <Shown model={model} resource={resource} field={fieldOf(change.field)} value={change.before} />
                    </TableCell>
                    <TableCell>
                      <Shown model={model} resource={resource} field={fieldOf(change.field)} value={change.after} />
                    </TableCell>
                  </TableRow>
                ))}
              </TableBody>
            </Table>
          )}
        </Paper>
      ))}
      {events.length === EVENTS_READ && (
        <Alert severity="info">Only the first {EVENTS_READ} changes are shown.</Alert>
      )}
    </Box>
  );
}
