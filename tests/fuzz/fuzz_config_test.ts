/** The configuration loader under the fuzzer (tests/fuzz/config_target.ts) in the normal run. */
import { fuzzTest } from "./run.ts";

// Two loops of 50,000: the YAML parser costs ~100 µs a document, so both cores help.
fuzzTest("config", { seed: 0x5eedc0f9, inputs: 100_000, workers: 2 });
