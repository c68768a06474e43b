import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';

// The gateway serves the build at /admin/ (EMPORIUM_ADMIN_DIR=web/admin/dist), the origin whose
// session the console signs in with: after a change, `npm run build` and reload the page.

export default defineConfig({
  base: '/admin/',
  plugins: [react()],
  build: {
    // Each chunk stays well under 500 kB gzipped: the libraries are split by family.
    chunkSizeWarningLimit: 1200,
    rolldownOptions: {
      output: {
        codeSplitting: {
          groups: [
            { name: 'react', test: /node_modules[\\/](react|react-dom|scheduler|react-router|react-router-dom)[\\/]/ },
            { name: 'mui', test: /node_modules[\\/](@mui|@emotion|@popperjs)[\\/]/ },
            { name: 'graphql', test: /node_modules[\\/](graphql|@apollo|graphql-tag|@wry|optimism|zen-observable.*)[\\/]/ },
            { name: 'react-admin', test: /node_modules[\\/]/ },
          ],
        },
      },
    },
  },
});
