import * as path from 'node:path';

/**
 * Where a node's state lives under its data directory (default
 * /var/lib/stevedore). The runtime, the CLI and the api-service all open these
 * through here, so they agree; a module of its own so that opening one of them
 * does not load the code of the others.
 */
export const podStoreDir = (dataDir: string): string => path.join(dataDir, 'pods');
export const imageStoreDir = (dataDir: string): string => path.join(dataDir, 'images');
