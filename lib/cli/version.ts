/** `duet version`: the version of this build and of the Deno runtime under it. */
import denoJson from "../../deno.json" with { type: "json" };
import type { CliIo } from "./io.ts";

/** This build's version, from deno.json. */
export const VERSION: string = denoJson.version;

/** Prints `duet X.Y.Z` and the runtime versions. */
export function versionCommand(_args: string[], io: CliIo): number {
  io.stdout(`duet ${VERSION}\n`);
  io.stdout(
    `deno ${Deno.version.deno} (v8 ${Deno.version.v8}, typescript ${Deno.version.typescript})\n`,
  );
  return 0;
}
