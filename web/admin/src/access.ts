// What the signed-in caller may do, from the contracts' access rules (the gateway's
// `accessRules`) and the roles of the browser's session. It only hides what would be refused:
// the services decide every call, and their refusals are shown as they come.

import type { AccessRule, Model } from './schema';

/** The caller, as `/auth/session` describes it. */
export interface Caller {
  signedIn: boolean;
  subject?: string;
  roles: string[];
  expiresAt?: number;
}

export function admits(rule: AccessRule | undefined, caller: Caller): boolean {
  if (!rule) return false;
  if (rule.visitors) return true;
  if (!caller.signedIn) return false;
  if (rule.anySignedInCaller) return true;
  return rule.roles.some((role) => caller.roles.includes(role));
}

/** Whether `caller` may use the field `field` of type `type`. */
export function may(model: Model, caller: Caller, type: string, field: string): boolean {
  return admits(
    model.rules.find((rule) => rule.type === type && rule.field === field),
    caller,
  );
}
