/**
 * A reader for ISC dhcpd 4.4's lease file (dhcpd.leases(5)), for comparing ISC's bindings with
 * `duet leases --json` in the interop tests. The file is a journal: every change appends a
 * whole `lease` block, so the last block for an address is its current binding. Pure: text in,
 * records out; a malformed file throws a SyntaxError naming the line.
 */

/** One `lease A.B.C.D { ... }` block. Times are epoch seconds (UTC), null when absent. */
export interface IscLease {
  address: string;
  /** `binding state`: free, active, expired, released, abandoned, reset, backup (§12.3 names). */
  bindingState: string;
  /** `next binding state`, what the lease becomes when it ends. */
  nextBindingState: string | null;
  /** `rewind binding state`, the state to return to if the change is undone. */
  rewindBindingState: string | null;
  starts: number | null;
  /** lease-expiration-time; Infinity for `ends never`. */
  ends: number | null;
  /** sent-potential-expiration-time (draft-12 §7.1.5). */
  tstp: number | null;
  /** acked-potential-expiration-time. */
  tsfp: number | null;
  /** received-potential-expiration-time. */
  atsfp: number | null;
  /** client-last-transaction-time. */
  cltt: number | null;
  /** `hardware ethernet` as lower-case colon hex, or null. */
  hardware: string | null;
  /** `uid` (the client identifier, option 61) as lower-case colon hex, or null. */
  uid: string | null;
  clientHostname: string | null;
  /** The line of the block's `lease` keyword. */
  line: number;
}

/** One `failover peer "NAME" state { ... }` block. */
export interface IscFailoverState {
  peer: string;
  myState: string | null;
  myStateAt: number | null;
  partnerState: string | null;
  partnerStateAt: number | null;
  mclt: number | null;
  line: number;
}

/** What a lease file holds. */
export interface IscLeaseFile {
  /** The current binding of every address (the last block for it), in order of first appearance. */
  leases: Map<string, IscLease>;
  /** Every lease block in file order. */
  history: IscLease[];
  /** Every failover state block in file order; the last is the current one. */
  failover: IscFailoverState[];
}

type Token = { kind: "word" | "string" | "{" | "}" | ";"; text: string; line: number };

/** Splits the file into words, quoted strings (escapes resolved to bytes) and punctuation. */
function tokenize(text: string): Token[] {
  const out: Token[] = [];
  let line = 1;
  let i = 0;
  while (i < text.length) {
    const ch = text[i] as string;
    if (ch === "\n") {
      line++;
      i++;
    } else if (ch === " " || ch === "\t" || ch === "\r") {
      i++;
    } else if (ch === "#") {
      while (i < text.length && text[i] !== "\n") i++;
    } else if (ch === "{" || ch === "}" || ch === ";") {
      out.push({ kind: ch, text: ch, line });
      i++;
    } else if (ch === '"') {
      const start = line;
      let s = "";
      i++;
      for (;;) {
        if (i >= text.length) throw new SyntaxError(`Unterminated string from line ${start}`);
        const c = text[i] as string;
        if (c === '"') {
          i++;
          break;
        }
        if (c === "\n") line++;
        if (c === "\\") {
          const oct = /^[0-7]{3}/.exec(text.slice(i + 1, i + 4));
          if (oct) {
            s += String.fromCharCode(parseInt(oct[0], 8));
            i += 4;
            continue;
          }
          const n = text[i + 1];
          if (n === undefined) throw new SyntaxError(`Unterminated string from line ${start}`);
          s += n === "n" ? "\n" : n === "t" ? "\t" : n === "r" ? "\r" : n;
          i += 2;
          continue;
        }
        s += c;
        i++;
      }
      out.push({ kind: "string", text: s, line: start });
    } else {
      let j = i;
      while (j < text.length && !/[\s{};"#]/.test(text[j] as string)) j++;
      out.push({ kind: "word", text: text.slice(i, j), line });
      i = j;
    }
  }
  return out;
}

/** A statement: its tokens up to `;`, or up to a block whose statements are in `block`. */
interface Statement {
  words: Token[];
  block: Statement[] | null;
  line: number;
}

function parseStatements(tokens: Token[], at: { i: number }, nested: boolean): Statement[] {
  const out: Statement[] = [];
  let words: Token[] = [];
  while (at.i < tokens.length) {
    const t = tokens[at.i++] as Token;
    if (t.kind === ";") {
      if (words.length > 0) out.push({ words, block: null, line: (words[0] as Token).line });
      words = [];
    } else if (t.kind === "{") {
      const block = parseStatements(tokens, at, true);
      out.push({ words, block, line: words[0]?.line ?? t.line });
      words = [];
    } else if (t.kind === "}") {
      if (!nested) throw new SyntaxError(`Unexpected "}" on line ${t.line}`);
      if (words.length > 0) {
        throw new SyntaxError(`Missing ";" before "}" on line ${t.line}`);
      }
      return out;
    } else {
      words.push(t);
    }
  }
  if (nested) throw new SyntaxError("Unexpected end of file: a block is not closed");
  if (words.length > 0) {
    throw new SyntaxError(`Missing ";" at the end of the file (line ${(words[0] as Token).line})`);
  }
  return out;
}

/**
 * A dhcpd.leases time: `W YYYY/MM/DD HH:MM:SS` (UTC, the default db-time-format),
 * `epoch N` (db-time-format local) or `never`.
 */
function parseTime(words: Token[], line: number): number {
  const w = words.map((t) => t.text);
  if (w.length === 1 && w[0] === "never") return Infinity;
  if (w.length === 2 && w[0] === "epoch" && /^\d+$/.test(w[1] as string)) return Number(w[1]);
  if (w.length === 3 && /^\d$/.test(w[0] as string)) {
    const d = /^(\d{4})\/(\d{2})\/(\d{2})$/.exec(w[1] as string);
    const t = /^(\d{2}):(\d{2}):(\d{2})$/.exec(w[2] as string);
    if (d && t) {
      return Date.UTC(+d[1]!, +d[2]! - 1, +d[3]!, +t[1]!, +t[2]!, +t[3]!) / 1000;
    }
  }
  throw new SyntaxError(`Cannot read the time "${w.join(" ")}" on line ${line}`);
}

/** `uid "..."` (bytes as a string) or `uid 01:02:...` as colon hex. */
function hexOf(t: Token): string {
  if (t.kind === "string") {
    return [...t.text].map((c) => c.charCodeAt(0).toString(16).padStart(2, "0")).join(":");
  }
  return t.text.split(":").map((b) => b.toLowerCase().padStart(2, "0")).join(":");
}

function leaseOf(s: Statement): IscLease {
  const address = s.words[1]?.text ?? "";
  if (!/^\d+\.\d+\.\d+\.\d+$/.test(address)) {
    throw new SyntaxError(`Cannot read the lease address "${address}" on line ${s.line}`);
  }
  const lease: IscLease = {
    address,
    bindingState: "free",
    nextBindingState: null,
    rewindBindingState: null,
    starts: null,
    ends: null,
    tstp: null,
    tsfp: null,
    atsfp: null,
    cltt: null,
    hardware: null,
    uid: null,
    clientHostname: null,
    line: s.line,
  };
  for (const st of s.block ?? []) {
    const w = st.words.map((t) => t.text);
    const key = w[0];
    switch (key) {
      case "starts":
      case "ends":
      case "tstp":
      case "tsfp":
      case "atsfp":
      case "cltt":
        lease[key] = parseTime(st.words.slice(1), st.line);
        break;
      case "binding":
      case "next":
      case "rewind": {
        const value = key === "binding" ? w[2] : w[3];
        const shape = key === "binding" ? w[1] === "state" : w[1] === "binding" && w[2] === "state";
        if (!shape || value === undefined) {
          throw new SyntaxError(`Cannot read "${w.join(" ")}" on line ${st.line}`);
        }
        if (key === "binding") lease.bindingState = value;
        else if (key === "next") lease.nextBindingState = value;
        else lease.rewindBindingState = value;
        break;
      }
      case "hardware":
        if (w.length !== 3) throw new SyntaxError(`Cannot read "hardware" on line ${st.line}`);
        lease.hardware = hexOf(st.words[2] as Token);
        break;
      case "uid":
        if (st.words.length !== 2) throw new SyntaxError(`Cannot read "uid" on line ${st.line}`);
        lease.uid = hexOf(st.words[1] as Token);
        break;
      case "client-hostname":
        lease.clientHostname = st.words[1]?.text ?? null;
        break;
      default:
        // set, on, abandoned, ddns-*, vendor-class-identifier ...: not compared.
        break;
    }
  }
  return lease;
}

function failoverOf(s: Statement): IscFailoverState {
  const state: IscFailoverState = {
    peer: s.words[2]?.text ?? "",
    myState: null,
    myStateAt: null,
    partnerState: null,
    partnerStateAt: null,
    mclt: null,
    line: s.line,
  };
  for (const st of s.block ?? []) {
    const w = st.words.map((t) => t.text);
    if ((w[0] === "my" || w[0] === "partner") && w[1] === "state" && w[3] === "at") {
      const at = parseTime(st.words.slice(4), st.line);
      if (w[0] === "my") {
        state.myState = w[2] ?? null;
        state.myStateAt = at;
      } else {
        state.partnerState = w[2] ?? null;
        state.partnerStateAt = at;
      }
    } else if (w[0] === "mclt" && /^\d+$/.test(w[1] ?? "")) {
      state.mclt = Number(w[1]);
    }
  }
  return state;
}

/** Reads a dhcpd.leases file; throws SyntaxError (with the line) on a malformed one. */
export function parseIscLeases(text: string): IscLeaseFile {
  const statements = parseStatements(tokenize(text), { i: 0 }, false);
  const leases = new Map<string, IscLease>();
  const history: IscLease[] = [];
  const failover: IscFailoverState[] = [];
  for (const s of statements) {
    const head = s.words[0]?.text;
    if (head === "lease" && s.block !== null) {
      const lease = leaseOf(s);
      history.push(lease);
      leases.set(lease.address, lease);
    } else if (head === "failover" && s.words[1]?.text === "peer" && s.block !== null) {
      failover.push(failoverOf(s));
    }
    // authoring-byte-order, server-duid, host, lease6, ia-na ...: not needed here.
  }
  return { leases, history, failover };
}
