import type { Scenario } from '../lib/scenario.ts';
import { hotSwapRss } from './hot-swap-rss.ts';
import { idleRss } from './idle-rss.ts';
import { sessionRun } from './session-run.ts';

/** Every scenario `npm run bench` runs, in order. A new scenario is a file here and one line in this list. */
export const scenarios: readonly Scenario[] = [sessionRun, idleRss, hotSwapRss];
