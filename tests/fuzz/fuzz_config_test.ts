/** The configuration loader under the fuzzer (tests/fuzz/config_target.ts) in the normal run. */
import { fuzzTest } from "./run.ts";

fuzzTest("config", { seed: 0x5eedc0f9, inputs: 100_000 });
