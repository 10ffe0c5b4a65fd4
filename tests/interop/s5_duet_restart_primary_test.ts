/** Interop scenario 5 with duet as primary: see tests/interop/duet_restart.ts. */
import { registerDuetRestart } from "./duet_restart.ts";

registerDuetRestart("primary");
