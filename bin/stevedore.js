#!/usr/bin/env node
// Thin launcher: the CLI is written in TypeScript and compiled to dist/.
import('../dist/cli/main.js').catch((err) => {
  if (err && err.code === 'ERR_MODULE_NOT_FOUND' && String(err.message).includes('dist/cli/main.js')) {
    console.error('stevedore: not built yet — run `npm run build` (or scripts/setup.sh) in the repository first');
    process.exit(1);
  }
  throw err;
});
