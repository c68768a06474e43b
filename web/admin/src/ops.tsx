// The ops page: what an operator of the running suite needs without Prometheus or Jaeger, read
// from each process's ops API through the gateway (`/admin/api/ops/<process>/v1/…`, with the
// session's token): each service's health, outbox backlog and consumers' lag, the dead letters
// with their content and a re-drive, and the recent traces, each drawn as a timeline of spans.

import { Fragment, useCallback, useEffect, useState } from 'react';
import type { ReactElement } from 'react';
import {
  Alert,
  Box,
  Button,
  Card,
  CardContent,
  Chip,
  Dialog,
  DialogActions,
  DialogContent,
  DialogTitle,
  Stack,
  Tab,
  Table,
  TableBody,
  TableCell,
  TableHead,
  TableRow,
  Tabs,
  Tooltip,
  Typography,
} from '@mui/material';
import { Title, useNotify } from 'react-admin';
import type { OpsDirectory } from './opsDirectory';

interface Consumer {
  name: string;
  stream: string;
  filter_subject: string;
  position: { pending?: number; ack_pending?: number } | null;
  dead_letters: number | null;
  deliveries: Record<string, number>;
}

interface ServiceStatus {
  name: string;
  status: string;
  pool: { idle: number; in_use: number; max: number };
  outbox: { unpublished: number; parked: number; oldest_unpublished_age_seconds: number } | null;
  consumers: Consumer[];
}

interface Status {
  bus: { kind: string; connected: boolean };
  services: ServiceStatus[];
}

interface DeadLetter {
  sequence: number;
  consumer: string;
  original_subject: string | null;
  reason: string;
  dead_lettered_at: string;
  delivery_count: number | null;
  handler_failures: number | null;
  event: { id: string; type: string; subject: string; aggregate_version: number } | null;
  headers: Record<string, string>;
  payload: unknown;
}

interface Span {
  span_id: string;
  parent_span_id: string | null;
  name: string;
  kind: string;
  start_time: string;
  duration_micros: number;
  status: string;
  status_message: string | null;
}

interface Trace {
  trace_id: string;
  root_span_name: string;
  service: string;
  start_time: string;
  duration_micros: number;
  spans: Span[];
  n_spans_dropped: number;
}

async function ops<T>(process: string, path: string, body?: unknown): Promise<T> {
  const response = await fetch(`/admin/api/ops/${encodeURIComponent(process)}/v1/${path}`, {
    method: body === undefined ? 'GET' : 'POST',
    credentials: 'same-origin',
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const answer = (await response.json().catch(() => ({}))) as T & { error?: unknown; message?: string };
  if (!response.ok) {
    const error = answer.error;
    const message =
      typeof error === 'string'
        ? error
        : ((error as { message?: string } | undefined)?.message ?? answer.message ?? `status ${response.status}`);
    throw new Error(message);
  }
  return answer;
}

/** Microseconds since the epoch of an RFC 3339 time (`…T13:00:15.157057Z`). */
function epochMicros(time: string): number {
  const fraction = /\.(\d+)/.exec(time)?.[1] ?? '';
  const belowMillis = Number(fraction.slice(3, 6).padEnd(3, '0'));
  return Date.parse(time) * 1000 + belowMillis;
}

function micros(value: number): string {
  if (value >= 1_000_000) return `${(value / 1_000_000).toFixed(2)} s`;
  if (value >= 1000) return `${(value / 1000).toFixed(1)} ms`;
  return `${value} µs`;
}

function Services({ status }: { status: Status }): ReactElement {
  return (
    <Card variant="outlined">
      <CardContent>
        <Stack direction="row" spacing={1} sx={{ alignItems: 'center', mb: 1 }}>
          <Typography component="h2" variant="h6">
            Services
          </Typography>
          <Chip
            size="small"
            label={`bus: ${status.bus.kind}, ${status.bus.connected ? 'connected' : 'disconnected'}`}
            color={status.bus.connected ? 'success' : 'error'}
          />
        </Stack>
        <Table size="small" aria-label="Services">
          <TableHead>
            <TableRow>
              <TableCell>Service</TableCell>
              <TableCell>Health</TableCell>
              <TableCell align="right">Outbox backlog</TableCell>
              <TableCell align="right">Oldest waiting</TableCell>
              <TableCell align="right">Parked events</TableCell>
              <TableCell align="right">Connections in use</TableCell>
            </TableRow>
          </TableHead>
          <TableBody>
            {status.services.map((service) => (
              <TableRow key={service.name}>
                <TableCell component="th" scope="row">
                  {service.name}
                </TableCell>
                <TableCell>
                  <Chip
                    size="small"
                    label={service.status === 'SERVING' ? 'Serving' : 'Not serving'}
                    color={service.status === 'SERVING' ? 'success' : 'error'}
                  />
                </TableCell>
                <TableCell align="right">{service.outbox?.unpublished ?? '—'}</TableCell>
                <TableCell align="right">
                  {service.outbox ? `${service.outbox.oldest_unpublished_age_seconds.toFixed(1)} s` : '—'}
                </TableCell>
                <TableCell align="right">{service.outbox?.parked ?? '—'}</TableCell>
                <TableCell align="right">
                  {service.pool.in_use} of {service.pool.max}
                </TableCell>
              </TableRow>
            ))}
          </TableBody>
        </Table>
      </CardContent>
    </Card>
  );
}

function Consumers({ status }: { status: Status }): ReactElement | null {
  const consumers = status.services.flatMap((service) => service.consumers.map((consumer) => ({ service: service.name, consumer })));
  return (
    <Card variant="outlined">
      <CardContent>
        <Typography component="h2" variant="h6" sx={{ mb: 1 }}>
          Consumers
        </Typography>
        {consumers.length === 0 ? (
          <Typography color="text.secondary">No consumer runs in this process.</Typography>
        ) : (
          <Table size="small" aria-label="Consumers">
            <TableHead>
              <TableRow>
                <TableCell>Consumer</TableCell>
                <TableCell>Service</TableCell>
                <TableCell align="right">Lag</TableCell>
                <TableCell align="right">Unsettled</TableCell>
                <TableCell align="right">Dead letters</TableCell>
                <TableCell align="right">Applied</TableCell>
                <TableCell align="right">Refused</TableCell>
              </TableRow>
            </TableHead>
            <TableBody>
              {consumers.map(({ service, consumer }) => (
                <TableRow key={consumer.name}>
                  <TableCell component="th" scope="row">
                    {consumer.name}
                  </TableCell>
                  <TableCell>{service}</TableCell>
                  <TableCell align="right">{consumer.position?.pending ?? '—'}</TableCell>
                  <TableCell align="right">{consumer.position?.ack_pending ?? '—'}</TableCell>
                  <TableCell align="right">{consumer.dead_letters ?? '—'}</TableCell>
                  <TableCell align="right">{consumer.deliveries.applied ?? 0}</TableCell>
                  <TableCell align="right">{consumer.deliveries.handler_failures ?? 0}</TableCell>
                </TableRow>
              ))}
            </TableBody>
          </Table>
        )}
      </CardContent>
    </Card>
  );
}

function DeadLetters({
  letters,
  onRedrive,
}: {
  letters: DeadLetter[];
  onRedrive: (letter: DeadLetter) => Promise<void>;
}): ReactElement {
  const [inspected, setInspected] = useState<DeadLetter | undefined>();
  const [busy, setBusy] = useState<number | undefined>();
  return (
    <Card variant="outlined">
      <CardContent>
        <Typography component="h2" variant="h6" sx={{ mb: 1 }}>
          Dead letters
        </Typography>
        {letters.length === 0 ? (
          <Typography color="text.secondary">No dead letters: every event was handled.</Typography>
        ) : (
          <Table size="small" aria-label="Dead letters">
            <TableHead>
              <TableRow>
                <TableCell>Consumer</TableCell>
                <TableCell>Event</TableCell>
                <TableCell>Reason</TableCell>
                <TableCell>Dead-lettered</TableCell>
                <TableCell align="right">Actions</TableCell>
              </TableRow>
            </TableHead>
            <TableBody>
              {letters.map((letter) => (
                <TableRow key={letter.sequence} data-sequence={letter.sequence}>
                  <TableCell component="th" scope="row">
                    {letter.consumer}
                  </TableCell>
                  <TableCell>
                    {letter.event ? `${letter.event.type} (version ${letter.event.aggregate_version})` : 'not a CloudEvent'}
                  </TableCell>
                  <TableCell>{letter.reason}</TableCell>
                  <TableCell>{new Date(letter.dead_lettered_at).toLocaleString()}</TableCell>
                  <TableCell align="right" sx={{ whiteSpace: 'nowrap' }}>
                    <Button size="small" onClick={() => setInspected(letter)}>
                      Inspect
                    </Button>
                    <Button
                      size="small"
                      variant="outlined"
                      disabled={busy === letter.sequence}
                      onClick={() => {
                        setBusy(letter.sequence);
                        void onRedrive(letter).finally(() => setBusy(undefined));
                      }}
                    >
                      Re-drive
                    </Button>
                  </TableCell>
                </TableRow>
              ))}
            </TableBody>
          </Table>
        )}
      </CardContent>
      {inspected && (
        <Dialog open onClose={() => setInspected(undefined)} aria-labelledby="dead-letter-title" fullWidth maxWidth="md">
          <DialogTitle id="dead-letter-title">Dead letter {inspected.sequence}</DialogTitle>
          <DialogContent>
            <Typography variant="body2" sx={{ mb: 1 }}>
              Parked by <strong>{inspected.consumer}</strong> from <code>{inspected.original_subject ?? 'an unknown subject'}</code>{' '}
              after {inspected.handler_failures ?? 0} refusals: {inspected.reason}
            </Typography>
            <Box
              component="pre"
              tabIndex={0}
              aria-label="The dead letter's message"
              sx={{ bgcolor: 'grey.100', p: 2, borderRadius: 1, overflow: 'auto', maxHeight: 420, fontSize: 13 }}
            >
              {JSON.stringify({ headers: inspected.headers, payload: inspected.payload }, null, 2)}
            </Box>
          </DialogContent>
          <DialogActions>
            <Button onClick={() => setInspected(undefined)}>Close</Button>
          </DialogActions>
        </Dialog>
      )}
    </Card>
  );
}

/** One trace as a timeline: each span a bar from its start for its duration, under its parent. */
export function Timeline({ trace }: { trace: Trace }): ReactElement {
  const start = Math.min(...trace.spans.map((span) => epochMicros(span.start_time)));
  const offset = (span: Span) => epochMicros(span.start_time) - start;
  const total = Math.max(trace.duration_micros, 1);
  const byParent = new Map<string | null, Span[]>();
  const ids = new Set(trace.spans.map((span) => span.span_id));
  for (const span of trace.spans) {
    const parent = span.parent_span_id && ids.has(span.parent_span_id) ? span.parent_span_id : null;
    byParent.set(parent, [...(byParent.get(parent) ?? []), span]);
  }
  const rows: { span: Span; depth: number }[] = [];
  const walk = (parent: string | null, depth: number) => {
    for (const span of (byParent.get(parent) ?? []).sort((a, b) => offset(a) - offset(b))) {
      rows.push({ span, depth });
      walk(span.span_id, depth + 1);
    }
  };
  walk(null, 0);
  return (
    <Box role="list" aria-label={`Spans of ${trace.root_span_name}`} sx={{ display: 'grid', gap: 0.5 }}>
      {rows.map(({ span, depth }) => {
        const left = (offset(span) / total) * 100;
        const width = Math.max((span.duration_micros / total) * 100, 0.5);
        return (
          <Box role="listitem" key={span.span_id} sx={{ display: 'grid', gridTemplateColumns: 'minmax(12rem, 2fr) 5fr', gap: 1, alignItems: 'center' }}>
            <Typography variant="body2" noWrap sx={{ pl: depth * 2 }} title={span.name}>
              {span.name}
            </Typography>
            <Tooltip title={`${span.kind}, ${micros(span.duration_micros)}${span.status_message ? `: ${span.status_message}` : ''}`}>
              <Box sx={{ position: 'relative', height: 18, bgcolor: 'grey.100', borderRadius: 0.5 }}>
                <Box
                  role="img"
                  aria-label={`${span.name}: ${micros(span.duration_micros)} from ${micros(offset(span))}`}
                  sx={{
                    position: 'absolute',
                    left: `${Math.min(left, 99.5)}%`,
                    width: `${Math.min(width, 100 - Math.min(left, 99.5))}%`,
                    top: 2,
                    bottom: 2,
                    borderRadius: 0.5,
                    bgcolor: span.status === 'error' ? 'error.main' : 'primary.main',
                  }}
                />
              </Box>
            </Tooltip>
          </Box>
        );
      })}
    </Box>
  );
}

function Traces({ traces, keptInMemory }: { traces: Trace[]; keptInMemory: boolean }): ReactElement {
  const [open, setOpen] = useState<string | undefined>();
  return (
    <Card variant="outlined">
      <CardContent>
        <Typography component="h2" variant="h6" sx={{ mb: 1 }}>
          Recent traces
        </Typography>
        {!keptInMemory ? (
          <Typography color="text.secondary">
            This process exports its traces over OTLP: look for them in your collector.
          </Typography>
        ) : traces.length === 0 ? (
          <Typography color="text.secondary">No traces yet.</Typography>
        ) : (
          <Table size="small" aria-label="Recent traces">
            <TableHead>
              <TableRow>
                <TableCell>Operation</TableCell>
                <TableCell>Service</TableCell>
                <TableCell>Started</TableCell>
                <TableCell align="right">Duration</TableCell>
                <TableCell align="right">Spans</TableCell>
              </TableRow>
            </TableHead>
            <TableBody>
              {traces.map((trace) => (
                <Fragment key={trace.trace_id}>
                  <TableRow hover selected={open === trace.trace_id}>
                    <TableCell component="th" scope="row">
                      <Button size="small" onClick={() => setOpen(open === trace.trace_id ? undefined : trace.trace_id)} aria-expanded={open === trace.trace_id} sx={{ textTransform: 'none', textAlign: 'left' }}>
                        {trace.root_span_name}
                      </Button>
                    </TableCell>
                    <TableCell>{trace.service}</TableCell>
                    <TableCell>{new Date(trace.start_time).toLocaleTimeString()}</TableCell>
                    <TableCell align="right">{micros(trace.duration_micros)}</TableCell>
                    <TableCell align="right">{trace.spans.length}</TableCell>
                  </TableRow>
                  {open === trace.trace_id && (
                    <TableRow>
                      <TableCell colSpan={5}>
                        <Timeline trace={trace} />
                      </TableCell>
                    </TableRow>
                  )}
                </Fragment>
              ))}
            </TableBody>
          </Table>
        )}
      </CardContent>
    </Card>
  );
}

function Process({ process }: { process: string }): ReactElement {
  const notify = useNotify();
  const [status, setStatus] = useState<Status | undefined>();
  const [letters, setLetters] = useState<DeadLetter[]>([]);
  const [traces, setTraces] = useState<{ kept_in_memory: boolean; traces: Trace[] } | undefined>();
  const [error, setError] = useState<string | undefined>();

  const read = useCallback(async () => {
    try {
      const [nextStatus, nextLetters, nextTraces] = await Promise.all([
        ops<Status>(process, 'status'),
        ops<DeadLetter[]>(process, 'dead-letters').catch(() => []),
        ops<{ kept_in_memory: boolean; traces: Trace[] }>(process, 'traces?limit=20'),
      ]);
      setStatus(nextStatus);
      setLetters(nextLetters);
      setTraces(nextTraces);
      setError(undefined);
    } catch (failure) {
      setError((failure as Error).message);
    }
  }, [process]);

  useEffect(() => {
    void read();
    const timer = window.setInterval(() => void read(), 5000);
    return () => window.clearInterval(timer);
  }, [read]);

  const redrive = async (letter: DeadLetter) => {
    try {
      const redriven = await ops<unknown[]>(process, 'dead-letters/redrive', { sequence: letter.sequence });
      notify(`Re-drove ${redriven.length} dead letter${redriven.length === 1 ? '' : 's'} to ${letter.original_subject ?? 'its subject'}`, { type: 'success' });
      await read();
    } catch (failure) {
      notify((failure as Error).message, { type: 'error' });
    }
  };

  if (error && !status) return <Alert severity="error">The ops API of {process} answered: {error}</Alert>;
  if (!status) return <Typography>Reading…</Typography>;
  return (
    <Stack spacing={2}>
      {error && <Alert severity="warning">The last refresh failed: {error}</Alert>}
      <Services status={status} />
      <Consumers status={status} />
      <DeadLetters letters={letters} onRedrive={redrive} />
      {traces && <Traces traces={traces.traces} keptInMemory={traces.kept_in_memory} />}
    </Stack>
  );
}

export function OpsPage({ directory }: { directory: OpsDirectory }): ReactElement {
  const [selected, setSelected] = useState(0);
  const process = directory.processes[selected];
  return (
    <Box sx={{ py: 2 }}>
      <Title title="Operations" />
      <Stack direction="row" spacing={2} sx={{ alignItems: 'center', mb: 2 }}>
        <Typography component="h1" variant="h5">
          Operations
        </Typography>
        {directory.processes.length > 1 && (
          <Tabs value={selected} onChange={(_, value: number) => setSelected(value)} aria-label="Processes">
            {directory.processes.map((name) => (
              <Tab key={name} label={name} />
            ))}
          </Tabs>
        )}
      </Stack>
      {process ? <Process key={process} process={process} /> : <Alert severity="info">No process's ops API is reachable from here.</Alert>}
    </Box>
  );
}
