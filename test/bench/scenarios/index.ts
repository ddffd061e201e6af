import type { Scenario } from '../lib/scenario.ts';
import { backlogDrain } from './backlog-drain.ts';
import { batching } from './batching.ts';
import { bundleInstall } from './bundle-install.ts';
import { healthUnderLoad } from './health-under-load.ts';
import { hotSwapRss } from './hot-swap-rss.ts';
import { idleRss } from './idle-rss.ts';
import { outboxEnqueue } from './outbox-enqueue.ts';
import { pipelineLatency } from './pipeline-latency.ts';
import { pipelineThroughput } from './pipeline-throughput.ts';
import { sessionRun } from './session-run.ts';
import { startup } from './startup.ts';
import { v2Infer } from './v2-infer.ts';

/** Every scenario `npm run bench` runs, in order. A new scenario is a file here and one line in this list. */
export const scenarios: readonly Scenario[] = [
  sessionRun,
  idleRss,
  hotSwapRss,
  startup,
  v2Infer,
  batching,
  healthUnderLoad,
  pipelineThroughput,
  pipelineLatency,
  outboxEnqueue,
  backlogDrain,
  bundleInstall,
];
