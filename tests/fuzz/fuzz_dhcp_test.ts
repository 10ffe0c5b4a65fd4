/** decodeDhcp under the fuzzer (tests/fuzz/dhcp_target.ts) in the normal test run. */
import { fuzzTest } from "./run.ts";

fuzzTest("dhcp", { seed: 0x5eed2131, inputs: 100_000 });
