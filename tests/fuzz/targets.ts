/** The fuzz targets by name (the names are also the fixture directories). */
import { configTarget } from "./config_target.ts";
import { dhcpTarget } from "./dhcp_target.ts";
import type { FuzzTarget } from "./engine.ts";
import { failoverTarget, linkTarget } from "./failover_target.ts";

/** Every target, in the order `deno task fuzz` runs them. */
export const TARGETS: Record<string, FuzzTarget> = {
  dhcp: dhcpTarget,
  failover: failoverTarget,
  link: linkTarget,
  config: configTarget,
};
