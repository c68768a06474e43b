// The model the console was built from, for its components.

import { createContext, useContext } from 'react';
import { usePermissions } from 'react-admin';
import type { Caller } from './access';
import { may } from './access';
import type { Model } from './schema';

export const ModelContext = createContext<Model | undefined>(undefined);

export function useModel(): Model {
  const model = useContext(ModelContext);
  if (!model) throw new Error('useModel outside the console');
  return model;
}

/** The signed-in caller, as react-admin's permissions (the session's roles) have it. */
export function useCaller(): Caller {
  const { permissions } = usePermissions<string[]>();
  return { signedIn: true, roles: permissions ?? [] };
}

/** Whether the caller may use `type.field`, by the contracts' rules. */
export function useMay(): (type: string, field: string) => boolean {
  const model = useModel();
  const caller = useCaller();
  return (type, field) => may(model, caller, type, field);
}
