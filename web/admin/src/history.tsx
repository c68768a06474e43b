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
import { useDataProvider, useRecordContext } from 'react-admin';
import { fieldLabel } from './labels';
import type { ConsoleDataProvider } from './dataProvider';
import type { ResourceModel } from './schema';

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

function shown(value: unknown): string {
  if (value === undefined || value === null || value === '') return '—';
  if (typeof value === 'object') return JSON.stringify(value);
  return String(value);
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
              {event.time ? new Date(event.time).toLocaleString() : ''} by {event.actor || 'the system'}
              {event.actorClientId ? ` (through ${event.actorClientId})` : ''}
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
                      {fieldLabel(change.field)}
                    </TableCell>
                    <TableCell sx={{ color: 'text.secondary', textDecoration: change.before === undefined ? 'none' : 'line-through' }}>
                      {shown(change.before)}
                    </TableCell>
                    <TableCell>{shown(change.after)}</TableCell>
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
