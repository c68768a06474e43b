// Which processes' ops API the gateway forwards to for this browser's session, read once at
// start-up (the Operations page itself is loaded only when opened).

/** The processes whose ops API the gateway forwards to, and the roles it admits. */
export interface OpsDirectory {
  processes: string[];
  roles: string[];
}

export async function readOpsDirectory(): Promise<OpsDirectory> {
  // A gateway that forwards to no ops API has no such route: then there is no ops page.
  const none: OpsDirectory = { processes: [], roles: [] };
  const response = await fetch('/admin/api/ops', { credentials: 'same-origin' }).catch(() => undefined);
  if (!response?.ok) return none;
  return ((await response.json().catch(() => none)) as OpsDirectory) ?? none;
}
