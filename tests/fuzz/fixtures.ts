/** Reading and writing fuzz inputs as fixtures: hex text with `#` comments, or plain text. */

/** The bytes of a hex fixture: `#` starts a comment, whitespace is ignored. */
export function readHexFixture(url: URL): Uint8Array {
  return parseHexText(Deno.readTextFileSync(url));
}

/** Hex digits (with `#` comments and whitespace) as bytes; throws TypeError when malformed. */
export function parseHexText(text: string): Uint8Array {
  const digits = text.replace(/#.*$/gm, "").replace(/\s+/g, "");
  if (!/^([0-9a-fA-F]{2})*$/.test(digits)) {
    throw new TypeError("Cannot read hex fixture: odd length or a non-hex character");
  }
  const out = new Uint8Array(digits.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(digits.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/** Bytes as hex text, 16 per line, after `#` comment lines. */
export function formatHexFixture(bytes: Uint8Array, comments: readonly string[]): string {
  const lines = comments.map((c) => `# ${c}`);
  for (let i = 0; i < bytes.length; i += 16) {
    lines.push(
      Array.from(bytes.subarray(i, i + 16), (b) => b.toString(16).padStart(2, "0")).join(" "),
    );
  }
  return lines.join("\n") + "\n";
}
