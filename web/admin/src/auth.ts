// Signing in through the gateway's browser session (code + PKCE against identity, done by the
// gateway): the console never holds a token. `/auth/session` says who is signed in.

import type { AuthProvider } from 'react-admin';
import type { Caller } from './access';

let current: Promise<Caller> | undefined;
let readAt = 0;
/** Whether this page has seen the browser signed in: then a session gone has ended. */
let wasSignedIn = false;

/** How long a read of the session stands for the next checks (a page's burst of them). */
const SESSION_FRESH_MS = 2000;

/** The session, read again after a couple of seconds, or at once when `refresh`. */
export function session(refresh = false): Promise<Caller> {
  if (!current || refresh || Date.now() - readAt > SESSION_FRESH_MS) {
    readAt = Date.now();
    current = fetch('/auth/session', { credentials: 'same-origin', cache: 'no-store' })
      .then((response) => {
        if (!response.ok) throw new Error(`The session could not be read (${response.status})`);
        return response.json() as Promise<Partial<Caller>>;
      })
      .then((body) => {
        const caller = { ...body, signedIn: Boolean(body.signedIn), roles: body.roles ?? [] };
        wasSignedIn ||= caller.signedIn;
        return caller;
      });
    current.catch(() => {
      current = undefined;
    });
  }
  return current;
}

export const SESSION_ENDED = 'Your session has ended: sign in again.';

/** Sends the browser to sign in, back to `returnTo` (a path under /admin/) afterwards. */
export function signIn(returnTo: string): void {
  const path = returnTo.startsWith('/admin/') ? returnTo : '/admin/';
  window.location.assign(`/auth/login?return_to=${encodeURIComponent(path)}`);
}

/** A refusal that may mean the session has ended: without one, the gateway asks as a visitor
 * (FORBIDDEN for what visitors may not read) or not at all (UNAUTHENTICATED). */
function mayBeSignedOut(error: unknown): boolean {
  const status = (error as { status?: number } | null)?.status;
  const code = (error as { body?: { code?: string } } | null)?.body?.code;
  return status === 401 || status === 403 || code === 'UNAUTHENTICATED' || code === 'FORBIDDEN';
}

export const authProvider: AuthProvider = {
  login: async () => {
    signIn(window.location.pathname);
  },
  logout: async () => {
    // Signed out on purpose: nothing has ended behind the caller's back.
    wasSignedIn = false;
    const caller = await session(true).catch(() => undefined);
    if (!caller?.signedIn) return undefined;
    // A form's POST, the browser navigating: the gateway ends the session and sends the browser
    // on to identity, to be signed out there too, then back to the sign-in page.
    const form = document.createElement('form');
    form.method = 'POST';
    form.action = '/auth/logout';
    document.body.append(form);
    form.submit();
    return false;
  },
  checkAuth: async () => {
    const caller = await session();
    if (!caller.signedIn) throw { message: wasSignedIn ? SESSION_ENDED : false };
  },
  checkError: async (error) => {
    if (mayBeSignedOut(error)) {
      const caller = await session(true).catch(() => undefined);
      if (caller && !caller.signedIn) {
        throw { message: SESSION_ENDED, logoutUser: true };
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
