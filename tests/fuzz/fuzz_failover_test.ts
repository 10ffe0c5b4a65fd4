/**
 * The failover codec (tests/fuzz/failover_target.ts, 100,000 inputs) and the partner link's
 * receive path behind it (link target, beyond the three targets of #8: 20,000 inputs keep the
 * run short; `deno task fuzz link` runs it for longer) under the fuzzer in the normal test run.
 */
import { fuzzTest } from "./run.ts";

fuzzTest("failover", { seed: 0x5eed0647, inputs: 100_000, workers: 2 });
fuzzTest("link", { seed: 0x5eed11c4, inputs: 20_000, minFeatures: 150 });
