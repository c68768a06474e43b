// A resource's other mutations (`grantRole`, `setPassword`, `resetClientSecret`) as buttons on
// its record, each a dialog with a form made from the mutation's input, the record's key and
// version filled in; and the dialog that shows, once, what an answer carries beside the record
// (a new client secret).

import { useState } from 'react';
import type { ReactElement } from 'react';
import {
  Alert,
  Button,
  Dialog,
  DialogActions,
  DialogContent,
  DialogContentText,
  DialogTitle,
  IconButton,
  InputAdornment,
  TextField as MuiTextField,
} from '@mui/material';
import ContentCopy from '@mui/icons-material/ContentCopy';
import { Form, SaveButton, useDataProvider, useNotify, useRecordContext, useRefresh } from 'react-admin';
import type { ConsoleDataProvider } from './dataProvider';
import { asHttpError, selection } from './dataProvider';
import { inputField } from './fields';
import { fieldLabel, firstSentence, fromCamel } from './labels';
import type { ActionModel, FieldModel, Model, ResourceModel } from './schema';

export function ShownOnce({
  values,
  fields,
  onClose,
}: {
  values: Record<string, unknown>;
  fields: FieldModel[];
  onClose: () => void;
}): ReactElement {
  const [copied, setCopied] = useState<string | undefined>();
  return (
    <Dialog open onClose={onClose} aria-labelledby="shown-once-title">
      <DialogTitle id="shown-once-title">Copy it now: it is shown only once</DialogTitle>
      <DialogContent>
        <DialogContentText sx={{ mb: 2 }}>
          The server keeps only a hash of it. Once this dialog is closed nobody can show it again;
          a lost one can only be replaced.
        </DialogContentText>
        {fields.map((field) => {
          const value = String(values[field.name] ?? '');
          return (
            <MuiTextField
              key={field.name}
              label={fieldLabel(field.name, false)}
              value={value}
              fullWidth
              slotProps={{
                input: {
                  readOnly: true,
                  endAdornment: (
                    <InputAdornment position="end">
                      <IconButton
                        aria-label={`Copy the ${fieldLabel(field.name, false).toLowerCase()}`}
                        onClick={() => {
                          void navigator.clipboard?.writeText(value).then(() => setCopied(field.name));
                        }}
                      >
                        <ContentCopy />
                      </IconButton>
                    </InputAdornment>
                  ),
                },
              }}
            />
          );
        })}
        {copied && <Alert severity="success" sx={{ mt: 2 }}>Copied.</Alert>}
      </DialogContent>
      <DialogActions>
        <Button onClick={onClose} variant="contained">
          I have copied it
        </Button>
      </DialogActions>
    </Dialog>
  );
}

function ActionDialog({
  model,
  resource,
  action,
  onClose,
}: {
  model: Model;
  resource: ResourceModel;
  action: ActionModel;
  onClose: () => void;
}): ReactElement {
  const record = useRecordContext();
  const dataProvider = useDataProvider<ConsoleDataProvider>();
  const notify = useNotify();
  const refresh = useRefresh();
  const [shownOnce, setShownOnce] = useState<Record<string, unknown> | undefined>();
  const filled = new Set([action.keyInput, 'expectedVersion']);
  const fields = action.input.fields.filter((field) => !filled.has(field.name));
  const answer = action.recordPath
    ? `${action.recordPath} { ${selection(model, resource.fields)} } ${selection(model, action.extras)}`
    : selection(model, resource.fields);
  const title = fromCamel(action.field);

  if (shownOnce) {
    return (
      <ShownOnce
        values={shownOnce}
        fields={action.extras}
        onClose={() => {
          setShownOnce(undefined);
          onClose();
        }}
      />
    );
  }
  const submit = async (values: Record<string, unknown>) => {
    // Only the input's own fields: the form starts from nothing of the record.
    const input: Record<string, unknown> = Object.fromEntries(
      fields.filter((field) => values[field.name] !== undefined).map((field) => [field.name, values[field.name]]),
    );
    if (action.keyInput) input[action.keyInput] = record?.id;
    if (action.input.fields.some((field) => field.name === 'expectedVersion')) input.expectedVersion = record?.version;
    try {
      const data = await dataProvider.graphql<{ answer: Record<string, unknown> }>(
        `mutation ($input: ${action.input.type}!) { answer: ${action.field}(${action.argument}: $input) { ${answer} } }`,
        { input },
      );
      refresh();
      if (action.extras.length > 0) {
        setShownOnce(data.answer);
      } else {
        notify(`${title}: done`, { type: 'success' });
        onClose();
      }
    } catch (error) {
      const refused = asHttpError(error);
      if (refused.body?.errors) return refused.body.errors as Record<string, string>;
      notify(refused.message, { type: 'error' });
    }
    return undefined;
  };
  return (
    <Dialog open onClose={onClose} aria-labelledby={`${action.field}-title`} fullWidth maxWidth="sm">
      <Form onSubmit={submit} record={{}}>
        <DialogTitle id={`${action.field}-title`}>{title}</DialogTitle>
        <DialogContent>
          <DialogContentText sx={{ mb: 2 }}>{firstSentence(action.description)}</DialogContentText>
          {fields.map((field) => inputField(model, resource, field))}
        </DialogContent>
        <DialogActions>
          <Button onClick={onClose}>Cancel</Button>
          <SaveButton label={title} alwaysEnable={fields.length === 0} />
        </DialogActions>
      </Form>
    </Dialog>
  );
}

export function ActionButton({ model, resource, action }: { model: Model; resource: ResourceModel; action: ActionModel }): ReactElement {
  const [open, setOpen] = useState(false);
  return (
    <>
      <Button size="small" onClick={() => setOpen(true)}>
        {fromCamel(action.field)}
      </Button>
      {open && <ActionDialog model={model} resource={resource} action={action} onClose={() => setOpen(false)} />}
    </>
  );
}
