/**
 * The failover codec (tests/fuzz/failover_target.ts, 100,000 inputs) and the partner link's
 * receive path behind it (link target: ten times the work per input, so 20,000) under the
 * fuzzer in the normal test run.
 */
import { fuzzTest } from "./run.ts";

fuzzTest("failover", { seed: 0x5eed0647, inputs: 100_000, workers: 2 });
fuzzTest("link", { seed: 0x5eed11c4, inputs: 20_000, minFeatures: 150 });
