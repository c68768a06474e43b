// The console: react-admin over the gateway, one resource per resource of the API, each screen
// shown only to callers whose roles the contracts admit to it.

import type { ReactElement } from 'react';
import { Box, Button, Card, CardContent, Typography } from '@mui/material';
import { Admin, CustomRoutes, Resource, defaultTheme } from 'react-admin';
import type { RaThemeOptions } from 'react-admin';
import { BrowserRouter, useLocation } from 'react-router-dom';
import { admits } from './access';
import { authProvider, signIn } from './auth';
import { ModelContext } from './console';
import { buildDataProvider } from './dataProvider';
import { ResourceCreate, ResourceEdit, ResourceList, ResourceShow } from './resources';
import type { Model } from './schema';

const theme: RaThemeOptions = {
  ...defaultTheme,
  // Error red dark enough for text on the form toolbar's grey (WCAG AA).
  palette: { primary: { main: '#1d4e89' }, secondary: { main: '#25324a' }, error: { main: '#b3261e' } },
  sidebar: { width: 220, closedWidth: 55 },
  // react-admin's empty-list and not-found messages are too faint to read (WCAG AA).
  components: {
    ...defaultTheme.components,
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

export function App({ model }: { model: Model }): ReactElement {
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
            <CustomRoutes key="custom">{[]}</CustomRoutes>,
          ];
        }}
      </Admin>
      </BrowserRouter>
    </ModelContext.Provider>
  );
}
