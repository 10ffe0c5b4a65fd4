/** Interop scenario 4 with duet as primary: see tests/interop/isc_down.ts. */
import { registerIscDown } from "./isc_down.ts";

registerIscDown("primary");
