/**
 * A strict reader of the Prometheus text exposition format 0.0.4, for tests: every line is
 * checked, and anything the format does not allow (or that a scraper would choke on) throws.
 *
 * Checked: a family is announced by `# HELP name text` then `# TYPE name type`, once, before
 * its samples, and its samples are contiguous; metric and label names match the format's
 * patterns; label values are quoted with only \\, \" and \n escapes, no label repeats, no
 * sample (name and label set) repeats; values are Go floats (NaN, +Inf, -Inf allowed);
 * an optional integer timestamp; counters are not negative; a histogram has `_bucket` samples
 * with an `le` label in increasing order with non-decreasing (cumulative) counts per label
 * set, ending at `le="+Inf"`, whose count equals `_count`, and one `_sum` and `_count`.
 */
import assert from "node:assert/strict";

/** One sample line. */
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** One metric family. */
export interface Family {
  help: string;
  type: "counter" | "gauge" | "histogram" | "summary" | "untyped";
  samples: Sample[];
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
/** What Go's strconv.ParseFloat accepts that the format uses (no hex floats, no underscores). */
const FLOAT = /^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$/;

function fail(lineNo: number, line: string, why: string): never {
  assert.fail(`line ${lineNo}: ${why}: ${JSON.stringify(line)}`);
}

/** Reads `{a="x",b="y"}` starting at `i` (just after `{`); returns the labels and the index after `}`. */
function readLabels(
  line: string,
  i: number,
  lineNo: number,
): { labels: Record<string, string>; end: number } {
  const labels: Record<string, string> = {};
  if (line[i] === "}") return { labels, end: i + 1 };
  while (true) {
    const eq = line.indexOf("=", i);
    if (eq < 0) fail(lineNo, line, "label without =");
    const name = line.slice(i, eq);
    if (!LABEL_NAME.test(name)) fail(lineNo, line, `bad label name ${JSON.stringify(name)}`);
    if (name.startsWith("__")) fail(lineNo, line, "label names starting __ are reserved");
    if (name in labels) fail(lineNo, line, `label ${name} repeated`);
    if (line[eq + 1] !== '"') fail(lineNo, line, "label value not quoted");
    let value = "";
    let j = eq + 2;
    for (;; j++) {
      const c = line[j];
      if (c === undefined) fail(lineNo, line, "unterminated label value");
      if (c === '"') break;
      if (c === "\\") {
        const e = line[++j];
        if (e === "\\") value += "\\";
        else if (e === '"') value += '"';
        else if (e === "n") value += "\n";
        else fail(lineNo, line, `bad escape \\${e}`);
      } else {
        value += c;
      }
    }
    labels[name] = value;
    j++;
    if (line[j] === "}") return { labels, end: j + 1 };
    if (line[j] !== ",") fail(lineNo, line, "expected , or } after a label");
    i = j + 1;
    // The format allows a trailing comma before }.
    if (line[i] === "}") return { labels, end: i + 1 };
  }
}

function readValue(text: string, lineNo: number, line: string): number {
  if (text === "NaN") return NaN;
  if (text === "+Inf") return Infinity;
  if (text === "-Inf") return -Infinity;
  if (!FLOAT.test(text)) fail(lineNo, line, `bad value ${JSON.stringify(text)}`);
  return Number(text);
}

/** Which family a sample name belongs to, given the family whose TYPE came last. */
function familyOfSample(name: string, current: string | undefined, type: string): boolean {
  if (current === undefined) return false;
  if (type === "histogram") {
    return [`${current}_bucket`, `${current}_sum`, `${current}_count`].includes(name);
  }
  if (type === "summary") return [current, `${current}_sum`, `${current}_count`].includes(name);
  return name === current;
}

/** Parses and checks a whole exposition; throws an AssertionError naming the bad line. */
export function parseExposition(text: string): Map<string, Family> {
  assert.ok(text.length > 0, "empty exposition");
  assert.ok(text.endsWith("\n"), "the exposition ends with a line feed");
  const families = new Map<string, Family>();
  const seen = new Set<string>();
  let current: string | undefined;
  let help: { name: string; text: string } | undefined;
  const lines = text.slice(0, -1).split("\n");
  lines.forEach((line, index) => {
    const lineNo = index + 1;
    if (line === "") fail(lineNo, line, "empty line");
    if (line !== line.trimEnd()) fail(lineNo, line, "trailing white space");
    if (line.startsWith("#")) {
      const m = /^# (HELP|TYPE) (\S+)(?: (.*))?$/.exec(line);
      if (!m) fail(lineNo, line, "a comment other than HELP or TYPE");
      const [, kind, name, rest] = m as unknown as [string, string, string, string | undefined];
      if (!METRIC_NAME.test(name)) fail(lineNo, line, "bad metric name");
      if (families.has(name)) fail(lineNo, line, `family ${name} announced twice`);
      if (kind === "HELP") {
        if (help !== undefined) fail(lineNo, line, `HELP ${help.name} without a TYPE`);
        const t = rest ?? "";
        if (/\\(?![\\n])/.test(t)) fail(lineNo, line, "bad escape in HELP");
        help = { name, text: t.replaceAll("\\n", "\n").replaceAll("\\\\", "\\") };
        return;
      }
      if (help?.name !== name) fail(lineNo, line, "TYPE not right after its HELP");
      const type = rest as Family["type"];
      if (!["counter", "gauge", "histogram", "summary", "untyped"].includes(type)) {
        fail(lineNo, line, "unknown type");
      }
      families.set(name, { help: help.text, type, samples: [] });
      current = name;
      help = undefined;
      return;
    }
    if (help !== undefined) fail(lineNo, line, `HELP ${help.name} without a TYPE`);
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)/.exec(line);
    if (!m) fail(lineNo, line, "not a sample");
    const name = m[1] as string;
    let i = name.length;
    let labels: Record<string, string> = {};
    if (line[i] === "{") ({ labels, end: i } = readLabels(line, i + 1, lineNo));
    if (line[i] !== " ") fail(lineNo, line, "one space before the value");
    const parts = line.slice(i + 1).split(" ");
    if (parts.length > 2 || parts.some((p) => p === "")) fail(lineNo, line, "bad value field");
    const value = readValue(parts[0] as string, lineNo, line);
    if (parts[1] !== undefined && !/^-?\d+$/.test(parts[1])) fail(lineNo, line, "bad timestamp");
    const family = current === undefined ? undefined : families.get(current);
    if (!family || !familyOfSample(name, current, family.type)) {
      fail(lineNo, line, `sample outside its family (last TYPE: ${current ?? "none"})`);
    }
    const key = `${name}${JSON.stringify(Object.entries(labels).sort())}`;
    if (seen.has(key)) fail(lineNo, line, "sample repeated");
    seen.add(key);
    if (family.type === "counter" && !(value >= 0)) fail(lineNo, line, "negative counter");
    family.samples.push({ name, labels, value });
  });
  assert.equal(help, undefined, `HELP ${help?.name} without a TYPE at the end`);
  for (const [name, f] of families) if (f.type === "histogram") checkHistogram(name, f);
  return families;
}

function checkHistogram(name: string, f: Family): void {
  // Per label set without `le`: buckets in increasing le, cumulative, +Inf last = _count.
  const groups = new Map<string, { le: number; count: number }[]>();
  const sums = new Map<string, number>();
  const counts = new Map<string, number>();
  for (const s of f.samples) {
    const { le, ...rest } = s.labels;
    const key = JSON.stringify(Object.entries(rest).sort());
    if (s.name === `${name}_bucket`) {
      assert.ok(le !== undefined, `${name}_bucket without le`);
      const bound = le === "+Inf" ? Infinity : Number(le);
      assert.ok(le === "+Inf" || FLOAT.test(le), `${name}: bad le ${le}`);
      groups.set(key, [...(groups.get(key) ?? []), { le: bound, count: s.value }]);
    } else {
      assert.equal(le, undefined, `${s.name} carries le`);
      (s.name.endsWith("_sum") ? sums : counts).set(key, s.value);
    }
  }
  assert.ok(groups.size > 0, `histogram ${name} has no buckets`);
  for (const [key, buckets] of groups) {
    for (let i = 1; i < buckets.length; i++) {
      const [a, b] = [buckets[i - 1], buckets[i]] as [typeof buckets[0], typeof buckets[0]];
      assert.ok(a.le < b.le, `${name}: le not increasing at ${b.le}`);
      assert.ok(a.count <= b.count, `${name}: bucket counts not cumulative at le=${b.le}`);
    }
    const last = buckets[buckets.length - 1];
    assert.equal(last?.le, Infinity, `${name}: the last bucket is le="+Inf"`);
    assert.ok(counts.has(key), `${name}_count missing`);
    assert.ok(sums.has(key), `${name}_sum missing`);
    assert.equal(last?.count, counts.get(key), `${name}: +Inf bucket equals _count`);
  }
}

/** The value of the sample of `family` with exactly these labels; throws when absent. */
export function sampleValue(
  families: Map<string, Family>,
  family: string,
  labels: Record<string, string> = {},
  name = family,
): number {
  const f = families.get(family);
  assert.ok(f, `no family ${family}`);
  const want = JSON.stringify(Object.entries(labels).sort());
  const s = f.samples.find((x) =>
    x.name === name && JSON.stringify(Object.entries(x.labels).sort()) === want
  );
  assert.ok(s, `no sample ${name}${JSON.stringify(labels)}`);
  return s.value;
}
