/**
 * Scheduled image GC: runs ImageStore.gc on a cron expression (node-cron),
 * never two runs at once, errors logged rather than thrown.
 */
import cron from 'node-cron';
import { InvalidInput } from '../../common/errors.js';
import { createLogger, type Logger } from '../../common/log.js';
import type { ImageGcOptions, ImageGcResult, ImagePullApi } from './types.js';

export interface ScheduledImageGc {
  /** Run once now (the same as a scheduled run; waits for a running one first). */
  runNow(): Promise<ImageGcResult | undefined>;
  stop(): Promise<void>;
}

export type ImageGcSettings = Omit<ImageGcOptions, 'inUse'>;

/**
 * @param cronExpr e.g. `*\/5 * * * *` (every 5 minutes; node-cron also takes a leading seconds field)
 * @param getInUse image ids (or names) that pods on this node use, asked at every run
 */
export function scheduleImageGc(
  store: Pick<ImagePullApi, 'gc'>,
  cronExpr: string,
  getInUse: () => Set<string> | Promise<Set<string>>,
  settings: ImageGcSettings & { log?: Logger; onResult?: (r: ImageGcResult) => void } = {},
): ScheduledImageGc {
  if (!cron.validate(cronExpr)) throw new InvalidInput(`invalid cron expression ${JSON.stringify(cronExpr)} for image GC`, 'five or six fields, e.g. "*/5 * * * *"');
  const { log = createLogger('image-gc'), onResult, ...gcOpts } = settings;
  let running: Promise<ImageGcResult | undefined> | undefined;
  const once = (): Promise<ImageGcResult | undefined> => {
    running ??= (async () => {
      try {
        const result = await store.gc({ ...gcOpts, inUse: await getInUse() });
        if (result.removed.length > 0) log.info({ removed: result.removed.map((r) => r.id), usage: result.usageAfter }, 'image GC removed images');
        onResult?.(result);
        return result;
      } catch (err) {
        log.error({ err }, 'image GC failed');
        return undefined;
      } finally {
        running = undefined;
      }
    })();
    return running;
  };
  const task = cron.schedule(cronExpr, async () => {
    await once();
  }, { name: 'stevedore-image-gc', noOverlap: true });
  return {
    runNow: async () => {
      if (running) await running;
      return once();
    },
    stop: async () => {
      await task.stop();
      await task.destroy();
      if (running) await running;
    },
  };
}
