// Signing in through the gateway's browser session (code + PKCE against identity, done by the
// gateway): the console never holds a token. `/auth/session` says who is signed in.

import type { AuthProvider } from 'react-admin';
import type { Caller } from './access';

let current: Promise<Caller> | undefined;

/** The session, read once and again after sign-in, sign-out or a refusal. */
export function session(refresh = false): Promise<Caller> {
  if (!current || refresh) {
    current = fetch('/auth/session', { credentials: 'same-origin', cache: 'no-store' })
      .then((response) => {
        if (!response.ok) throw new Error(`The session could not be read (${response.status})`);
        return response.json() as Promise<Partial<Caller>>;
      })
      .then((body) => ({ ...body, signedIn: Boolean(body.signedIn), roles: body.roles ?? [] }));
    current.catch(() => {
      current = undefined;
    });
  }
  return current;
}

/** Sends the browser to sign in, back to `returnTo` (a path under /admin/) afterwards. */
export function signIn(returnTo: string): void {
  const path = returnTo.startsWith('/admin/') ? returnTo : '/admin/';
  window.location.assign(`/auth/login?return_to=${encodeURIComponent(path)}`);
}

function isUnauthenticated(error: unknown): boolean {
  const status = (error as { status?: number } | null)?.status;
  const code = (error as { body?: { code?: string } } | null)?.body?.code;
  return status === 401 || code === 'UNAUTHENTICATED';
}

export const authProvider: AuthProvider = {
  login: async () => {
    signIn(window.location.pathname);
  },
  logout: async () => {
    const caller = await session().catch(() => undefined);
    if (caller?.signedIn) {
      await fetch('/auth/logout', { method: 'POST', credentials: 'same-origin' });
    }
    await session(true).catch(() => undefined);
  },
  checkAuth: async () => {
    const caller = await session();
    if (!caller.signedIn) throw new Error('Not signed in');
  },
  checkError: async (error) => {
    if (isUnauthenticated(error)) {
      const caller = await session(true).catch(() => undefined);
      if (!caller?.signedIn) {
        throw { message: 'Your session has ended: sign in again.', logoutUser: true };
      }
    }
  },
  getIdentity: async () => {
    const caller = await session();
    return {
      id: caller.subject ?? '',
      fullName: caller.roles.length > 0 ? caller.roles.join(', ') : 'Signed in',
    };
  },
  getPermissions: async () => (await session()).roles,
};
