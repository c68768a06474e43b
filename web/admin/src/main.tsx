// Reads the API's model from the gateway, then starts the console on it.

import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { App } from './App';
import { readOpsDirectory } from './opsDirectory';
import type { ModelAnswer } from './schema';
import { MODEL_QUERY, buildModel } from './schema';

async function readModel() {
  const response = await fetch('/graphql', {
    method: 'POST',
    credentials: 'same-origin',
    headers: { 'content-type': 'application/json', accept: 'application/json' },
    body: JSON.stringify({ query: MODEL_QUERY }),
  });
  if (!response.ok) throw new Error(`The gateway answered ${response.status}`);
  const answer = (await response.json()) as {
    data?: ModelAnswer;
    errors?: { message: string }[];
  };
  if (!answer.data) throw new Error(answer.errors?.[0]?.message ?? 'The gateway sent no schema');
  return buildModel(answer.data);
}

const root = createRoot(document.getElementById('root') as HTMLElement);

function showFailure(error: Error) {
  const element = document.getElementById('root') as HTMLElement;
  element.innerHTML = '';
  const message = document.createElement('main');
  message.setAttribute('role', 'alert');
  message.style.cssText = 'font-family: system-ui, sans-serif; max-width: 40rem; margin: 4rem auto; padding: 0 1rem';
  const title = document.createElement('h1');
  title.textContent = 'The admin console cannot start';
  const detail = document.createElement('p');
  detail.textContent = `The API could not be read: ${error.message}. Check that the gateway is running, then reload.`;
  const retry = document.createElement('button');
  retry.textContent = 'Reload';
  retry.addEventListener('click', () => window.location.reload());
  message.append(title, detail, retry);
  element.append(message);
}

Promise.all([readModel(), readOpsDirectory()]).then(
  ([model, ops]) =>
    root.render(
      <StrictMode>
        <App model={model} ops={ops} />
      </StrictMode>,
    ),
  (error: Error) => showFailure(error),
);
