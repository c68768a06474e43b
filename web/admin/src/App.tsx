// The console: react-admin over the gateway, one resource per resource of the API, each screen
// shown only to callers whose roles the contracts admit to it.

import { Suspense, lazy, useEffect } from 'react';
import type { ReactElement } from 'react';
import { Box, Button, Card, CardContent, Typography } from '@mui/material';
import { Admin, CustomRoutes, Layout, Loading, Menu, Resource, defaultTheme, useLogout, useNotify, usePermissions } from 'react-admin';
import type { LayoutProps } from 'react-admin';
import MonitorHeart from '@mui/icons-material/MonitorHeart';
import type { RaThemeOptions } from 'react-admin';
import { BrowserRouter, Route, useLocation } from 'react-router-dom';
import { admits } from './access';
import { SESSION_ENDED, authProvider, session, signIn } from './auth';
import { ModelContext } from './console';
import { buildDataProvider } from './dataProvider';
import { ResourceCreate, ResourceEdit, ResourceList, ResourceShow } from './resources';
import type { OpsDirectory } from './opsDirectory';
import type { Model } from './schema';

const theme: RaThemeOptions = {
  ...defaultTheme,
  // Status colours dark enough for white text, and error red for text on the form toolbar's
  // grey (WCAG AA).
  palette: {
    primary: { main: '#1d4e89' },
    secondary: { main: '#25324a' },
    error: { main: '#b3261e' },
    warning: { main: '#9a4a00' },
    info: { main: '#01579b' },
    success: { main: '#2e7d32' },
  },
  sidebar: { width: 220, closedWidth: 55 },
  // react-admin's empty-list and not-found messages are too faint to read (WCAG AA), and its
  // app bar's loading spinner has no name for a screen reader to announce.
  components: {
    ...defaultTheme.components,
    MuiCircularProgress: { defaultProps: { 'aria-label': 'Loading' } },
    RaEmpty: { styleOverrides: { root: { '& .RaEmpty-message': { color: 'rgba(0, 0, 0, 0.6)' } } } },
    RaNotFound: { styleOverrides: { root: { '& .RaNotFound-message': { opacity: 0.75 } } } },
  },
};

function SignIn(): ReactElement {
  const location = useLocation();
  const next = (location.state as { nextPathname?: string } | null)?.nextPathname ?? '/';
  return (
    <Box component="main" sx={{ minHeight: '100vh', display: 'grid', placeItems: 'center', bgcolor: 'grey.100', p: 2 }}>
      <Card sx={{ maxWidth: 420, width: '100%' }}>
        <CardContent sx={{ display: 'grid', gap: 2, p: 4 }}>
          <Typography component="h1" variant="h5">
            Emporium admin
          </Typography>
          <Typography color="text.secondary">
            Sign in with your Emporium account to manage the catalog, accounts and the rest of the
            business.
          </Typography>
          <Button variant="contained" size="large" onClick={() => signIn(`/admin${next}`)}>
            Sign in
          </Button>
        </CardContent>
      </Card>
    </Box>
  );
}

/** Notices a session that ended (idle, revoked, signed out elsewhere) when the caller comes
 * back to the tab and every minute, and sends them to sign in again, saying why. */
function SessionWatch(): null {
  const logout = useLogout();
  const notify = useNotify();
  useEffect(() => {
    const check = () => {
      if (document.visibilityState === 'hidden') return;
      void session(true)
        .then((caller) => {
          if (caller.signedIn) return;
          notify(SESSION_ENDED, { type: 'warning' });
          void logout();
        })
        .catch(() => undefined);
    };
    const timer = window.setInterval(check, 60_000);
    window.addEventListener('focus', check);
    document.addEventListener('visibilitychange', check);
    return () => {
      window.clearInterval(timer);
      window.removeEventListener('focus', check);
      document.removeEventListener('visibilitychange', check);
    };
  }, [logout, notify]);
  return null;
}

// The Operations page is loaded when it is opened: most visits never need it.
const OpsPage = lazy(() => import('./ops').then((module) => ({ default: module.OpsPage })));

/** Whether `roles` may use the ops API of `directory`. */
function opsAdmits(directory: OpsDirectory, roles: string[] | undefined): boolean {
  return directory.processes.length > 0 && directory.roles.some((role) => roles?.includes(role));
}

function consoleLayout(directory: OpsDirectory) {
  function ConsoleMenu(): ReactElement {
    const { permissions } = usePermissions<string[]>();
    return (
      <Menu>
        <Menu.ResourceItems />
        {opsAdmits(directory, permissions) && <Menu.Item to="/ops" primaryText="Operations" leftIcon={<MonitorHeart />} />}
      </Menu>
    );
  }
  return function ConsoleLayout(props: LayoutProps): ReactElement {
    return (
      <>
        <SessionWatch />
        <Layout {...props} menu={ConsoleMenu} />
      </>
    );
  };
}

export function App({ model, ops }: { model: Model; ops: OpsDirectory }): ReactElement {
  const layout = consoleLayout(ops);
  const dataProvider = buildDataProvider(model);
  return (
    <ModelContext.Provider value={model}>
      <BrowserRouter basename="/admin">
      <Admin
        title="Emporium admin"
        dataProvider={dataProvider}
        authProvider={authProvider}
        loginPage={SignIn}
        disableTelemetry
        theme={theme}
        layout={layout}
      >
        {(permissions: string[] | undefined) => {
          const caller = { signedIn: true, roles: permissions ?? [] };
          const admitted = (type: string, field: string | undefined) =>
            field !== undefined &&
            admits(
              model.rules.find((rule) => rule.type === type && rule.field === field),
              caller,
            );
          return [
            ...model.resources
              .filter((resource) => admitted('Query', resource.plural))
              .map((resource) => (
                <Resource
                  key={resource.name}
                  name={resource.name}
                  recordRepresentation={resource.title}
                  list={<ResourceList resource={resource} />}
                  show={admitted('Query', resource.singular) ? <ResourceShow resource={resource} /> : undefined}
                  edit={admitted('Mutation', resource.update?.field) ? <ResourceEdit resource={resource} /> : undefined}
                  create={admitted('Mutation', resource.create?.field) ? <ResourceCreate resource={resource} /> : undefined}
                />
              )),
            <CustomRoutes key="ops">
              {opsAdmits(ops, permissions) ? [<Route
                      key="ops"
                      path="/ops"
                      element={
                        <Suspense fallback={<Loading />}>
                          <OpsPage directory={ops} />
                        </Suspense>
                      }
                    />] : []}
            </CustomRoutes>,
          ];
        }}
      </Admin>
      </BrowserRouter>
    </ModelContext.Provider>
  );
}
