/** Interop scenario 4 with duet as secondary: see tests/interop/isc_down.ts. */
import { registerIscDown } from "./isc_down.ts";

registerIscDown("secondary");
