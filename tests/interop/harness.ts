/**
 * The interop lab: duet and a real ISC dhcpd 4.4.3 as failover partners (draft-ietf-dhc-
 * failover-12), with real DHCP clients, in network namespaces on one bridge (198.18.0.0/15):
 *
 *   <lab>-b  bridge b0, ports dp ip cp
 *   <lab>-d  d0 02:00:00:00:fd:01 198.18.0.1/15   duet serve (FFI transport on d0)
 *   <lab>-i  i0 02:00:00:00:fd:02 198.18.0.2/15   ISC dhcpd -f -d
 *   <lab>-c  c0 02:00:00:00:fd:03 (no address)   clients on macvlans mN (02:00:00:01:hh:ll)
 *
 * Both servers get matching configurations (relationship, MCLT and split on the primary only,
 * ports, timers). The failover link (d0, tcp port 647) and the clients' DHCP traffic (c0,
 * udp 67/68) are captured with dumpcap for every test. `withInterop()` tears everything down
 * even when the test fails; then the failure message carries both servers' log tails and the
 * decoded failover capture, and the test directory (pcaps, logs, lease files) is kept and named.
 * Every wait is bounded.
 */
import { Lab, netnsPrerequisites, requireOrSkip } from "../netns.ts";
import { DuetProcess, runDuet } from "../e2e/process.ts";
import { type IscLeaseFile, parseIscLeases } from "./isc_leases.ts";
import { loadBalanceHash } from "../../lib/balance/hash.ts";

export type Role = "primary" | "secondary";

export const DUET_ADDR = "198.18.0.1";
export const ISC_ADDR = "198.18.0.2";
/** What the interop tests need besides root and iproute2. */
export const INTEROP_TOOLS = ["dhcpd", "dhclient", "udhcpc", "dumpcap"];

/** The relationship both sides are configured with. */
export interface PairSettings {
  /** duet's role; ISC takes the other. */
  duetRole: Role;
  /** The primary's MCLT (seconds). */
  mclt: number;
  /** Buckets the primary serves (RFC 3074 via ISC `split`). */
  split: number;
  /** The shared pool, inclusive. */
  poolFirst: string;
  poolLast: string;
  leaseTime: { default: number; max: number; min?: number };
  maxResponseDelay: number;
  duetRelationship: string;
  iscRelationship: string;
  /** duet as secondary: a configured `mclt` (a secondary MAY set one; it must then match). */
  duetSecondaryMclt?: number;
  /** ISC as secondary: an `mclt` line (its parser accepts one, dhcpd.conf(5) says not to). */
  iscSecondaryMclt?: number;
  /** duet: a `shared-secret-file` with this secret (draft-12 §11.1). */
  duetSecret?: string;
}

const DEFAULTS: Omit<PairSettings, "duetRole"> = {
  mclt: 10,
  split: 128,
  poolFirst: "198.18.16.1",
  poolLast: "198.18.16.200",
  leaseTime: { default: 600, max: 7200 },
  maxResponseDelay: 30,
  duetRelationship: "pair",
  iscRelationship: "pair",
};

/**
 * ISC dhcpd.conf for the other role: split and mclt on the primary only (dhcpd.conf(5)). With
 * `place: "duet"`, the ISC server that duet replaces: duet's role and address (a migration).
 */
export function iscConfig(s: PairSettings, place: "isc" | "duet" = "isc"): string {
  const other = s.duetRole === "primary" ? "secondary" : "primary";
  const role = place === "isc" ? other : s.duetRole;
  const [self, peer] = place === "isc" ? [ISC_ADDR, DUET_ADDR] : [DUET_ADDR, ISC_ADDR];
  const primaryOnly = role === "primary"
    ? `  mclt ${s.mclt};\n  split ${s.split};\n`
    : s.iscSecondaryMclt !== undefined
    ? `  mclt ${s.iscSecondaryMclt};\n`
    : "";
  return `# ISC dhcpd 4.4.3 half of a duet + ISC failover pair (tests/interop/harness.ts)
authoritative;
ddns-update-style none;
default-lease-time ${s.leaseTime.default};
max-lease-time ${s.leaseTime.max};
# No ICMP check before an offer: it only delays every OFFER by 1 s here.
ping-check false;

failover peer "${s.iscRelationship}" {
  ${role};
  address ${self};
  port 647;
  peer address ${peer};
  peer port 647;
  max-response-delay ${s.maxResponseDelay};
  max-unacked-updates 10;
  load balance max seconds 3;
${primaryOnly}}

subnet 198.18.0.0 netmask 255.254.0.0 {
  pool {
    failover peer "${s.iscRelationship}";
    range ${s.poolFirst} ${s.poolLast};
  }
}
`;
}

/** duet's YAML for `s.duetRole`, matching iscConfig(). */
export function duetConfig(dir: string, s: PairSettings): string {
  const lines = [
    `role: ${s.duetRole}`,
    `address: ${DUET_ADDR}`,
    "port: 647",
    `peer: ${ISC_ADDR}`,
    "peer-port: 647",
    `relationship: ${s.duetRelationship}`,
  ];
  if (s.duetRole === "primary") lines.push(`mclt: ${s.mclt}`, `split: ${s.split}`);
  else if (s.duetSecondaryMclt !== undefined) lines.push(`mclt: ${s.duetSecondaryMclt}`);
  lines.push(
    "load-balance-max-seconds: 3",
    "max-unacked-bndupd: 10",
    `max-response-delay: ${s.maxResponseDelay}`,
  );
  if (s.duetSecret !== undefined) lines.push(`shared-secret-file: ${dir}/pair.secret`);
  return `database: ${dir}/duet.db
authoritative: true
listen:
  - interface: d0
lease-time: { default: ${s.leaseTime.default}, max: ${s.leaseTime.max}${
    s.leaseTime.min !== undefined ? `, min: ${s.leaseTime.min}` : ""
  } }
subnets:
  - subnet: 198.18.0.0/15
    pools:
      - range: ${s.poolFirst} - ${s.poolLast}
failover:
${lines.map((l) => `  ${l}\n`).join("")}`;
}

/** A process in a namespace whose stdout and stderr are collected into one log. */
class LoggedProcess {
  readonly child: Deno.ChildProcess;
  #log = "";
  #reader: Promise<void>;
  #done = false;
  readonly status: Promise<Deno.CommandStatus>;

  constructor(lab: Lab, ns: string, cmd: string[]) {
    this.child = lab.spawn(ns, cmd);
    const read = async (stream: ReadableStream<Uint8Array>) => {
      const dec = new TextDecoder();
      for await (const chunk of stream) this.#log += dec.decode(chunk, { stream: true });
    };
    this.#reader = Promise.all([read(this.child.stdout), read(this.child.stderr)]).then(() => {});
    this.status = this.child.status.then((s) => {
      this.#done = true;
      return s;
    });
  }

  get log(): string {
    return this.#log;
  }

  get exited(): boolean {
    return this.#done;
  }

  /** Sends `signal`, waits (bounded) for the exit; SIGKILL after `timeoutMs`. */
  async stop(signal: Deno.Signal = "SIGTERM", timeoutMs = 5_000): Promise<void> {
    if (!this.#done) {
      try {
        this.child.kill(signal);
      } catch {
        // Already gone.
      }
    }
    const timer = setTimeout(() => {
      try {
        this.child.kill("SIGKILL");
      } catch {
        // Already gone.
      }
    }, timeoutMs);
    await this.status;
    clearTimeout(timer);
    await this.#reader;
  }
}

/**
 * dumpcap writing a classic pcap (-P) of one interface to a pipe, so that it flushes every
 * packet (to a file it buffers); the bytes are copied to `file` as they come.
 */
class Capture {
  readonly file: string;
  readonly #child: Deno.ChildProcess;
  #stderr = "";
  #bytes: Uint8Array[] = [];
  #length = 0;
  /** Where the last complete pcap record ends (24-octet header, 16-octet record headers). */
  #complete = 0;
  #copier: Promise<void>;
  #exited = false;

  private constructor(lab: Lab, ns: string, iface: string, filter: string, file: string) {
    this.file = file;
    const child = lab.spawn(ns, ["dumpcap", "-q", "-P", "-i", iface, "-f", filter, "-w", "-"]);
    this.#child = child;
    const out = Deno.openSync(file, { write: true, create: true, truncate: true });
    const copyOut = (async () => {
      try {
        for await (const chunk of child.stdout) {
          out.writeSync(chunk);
          this.#bytes.push(chunk);
          this.#length += chunk.length;
          this.#advance();
        }
      } finally {
        out.close();
      }
    })();
    const readErr = (async () => {
      const dec = new TextDecoder();
      for await (const chunk of child.stderr) this.#stderr += dec.decode(chunk);
    })();
    this.#copier = Promise.all([copyOut, readErr]).then(() => {});
    child.status.then(() => this.#exited = true);
  }

  #all(): Uint8Array {
    if (this.#bytes.length !== 1) {
      const all = new Uint8Array(this.#length);
      let at = 0;
      for (const b of this.#bytes) {
        all.set(b, at);
        at += b.length;
      }
      this.#bytes = [all];
    }
    return this.#bytes[0] ?? new Uint8Array(0);
  }

  #advance(): void {
    const all = this.#all();
    const view = new DataView(all.buffer, all.byteOffset, all.byteLength);
    if (this.#complete === 0 && all.length >= 24) this.#complete = 24;
    if (this.#complete === 0) return;
    // The magic number says the byte order of the record headers.
    const little = view.getUint32(0, true) === 0xa1b2c3d4 || view.getUint32(0, true) === 0xa1b23c4d;
    while (this.#complete + 16 <= all.length) {
      const incl = view.getUint32(this.#complete + 8, little);
      if (this.#complete + 16 + incl > all.length) break;
      this.#complete += 16 + incl;
    }
  }

  /** Starts dumpcap and waits (bounded) until it has written the pcap header. */
  static async start(
    lab: Lab,
    ns: string,
    iface: string,
    filter: string,
    file: string,
  ): Promise<Capture> {
    const capture = new Capture(lab, ns, iface, filter, file);
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      if (capture.#complete >= 24 && /Capturing on/.test(capture.#stderr)) return capture;
      if (capture.#exited) break;
      await sleep(50);
    }
    await capture.stop();
    throw new Error(`dumpcap on ${iface} did not start: ${capture.#stderr}`);
  }

  /** Writes the complete records captured so far to `path` (the capture goes on). */
  snapshot(path: string): void {
    Deno.writeFileSync(path, this.#all().subarray(0, this.#complete));
  }

  async stop(): Promise<void> {
    if (!this.#exited) {
      try {
        // SIGINT: dumpcap writes what it has and exits.
        this.#child.kill("SIGINT");
      } catch {
        // Already gone.
      }
    }
    const timer = setTimeout(() => {
      try {
        this.#child.kill("SIGKILL");
      } catch {
        // Already gone.
      }
    }, 5_000);
    await this.#child.status;
    clearTimeout(timer);
    await this.#copier;
  }
}

/** A duet lease as `duet leases --json` prints it. */
export interface DuetLease {
  address: string;
  "hw-address": string | null;
  "client-id": string | null;
  hostname: string | null;
  state: string;
  starts: string | null;
  ends: string | null;
  cltt: string | null;
}

/** What the dhclient/udhcpc scripts recorded: one line per event. */
export interface ClientEvent {
  iface: string;
  reason: string;
  address: string;
  serverId: string;
  leaseTime: number;
}

/** One DHCP message of the client capture, as `duet decode --json` reads it. */
export interface DhcpSeen {
  frame: number;
  time: number;
  type: string;
  chaddr: string;
  yiaddr: string;
  ciaddr: string;
  serverId: string | null;
  requested: string | null;
  /** Option 61 as hex, or null. */
  clientId: string | null;
  secs: number;
}

/** A failover message of the link capture, one line of text. */
export interface FailoverSeen {
  frame: number;
  time: number;
  src: string;
  dst: string;
  type: string;
  xid: number;
  options: { name: string; value: string }[];
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** The MAC of client n (1-based): 02:00:00:01:hh:ll. */
export function clientMac(n: number): string {
  return `02:00:00:01:${(n >> 8).toString(16).padStart(2, "0")}:${
    (n & 0xff).toString(16).padStart(2, "0")
  }`;
}

/** The macvlan name of client n. */
export function clientIface(n: number): string {
  return `m${n}`;
}

/**
 * Which role serves a client (RFC 3074 hash of chaddr, no client identifier) under `split`
 * with ISC's polarity (a set bit = the primary's bucket; buckets 0..split-1 set).
 */
export function ownerOf(mac: string, split: number, clientId?: Uint8Array): Role {
  const key = clientId ?? new Uint8Array(mac.split(":").map((b) => parseInt(b, 16)));
  return loadBalanceHash(key) < split ? "primary" : "secondary";
}

const DHCLIENT_SCRIPT = (events: string) =>
  `#!/bin/sh
# Our own dhclient script: records the event and sets the address; never touches system files.
echo "$interface $reason \${new_ip_address:--} \${new_dhcp_server_identifier:--} \${new_dhcp_lease_time:-0}" >> ${events}
case "$reason" in
  BOUND|RENEW|REBIND|REBOOT)
    ip -4 addr flush dev "$interface"
    ip -4 addr add "$new_ip_address/$new_subnet_mask" dev "$interface" ;;
  EXPIRE|FAIL|RELEASE|STOP)
    ip -4 addr flush dev "$interface" ;;
esac
exit 0
`;

const UDHCPC_SCRIPT = (events: string) =>
  `#!/bin/sh
# Our own udhcpc script: records the event and sets the address.
echo "$interface $1 \${ip:--} \${serverid:--} \${lease:-0}" >> ${events}
case "$1" in
  deconfig) ip -4 addr flush dev "$interface" ;;
  bound|renew)
    ip -4 addr flush dev "$interface"
    ip -4 addr add "$ip/$mask" dev "$interface" ;;
esac
exit 0
`;

/** A running dhclient serving several interfaces (one process, one lease file). */
export class Dhclient {
  readonly #proc: LoggedProcess;
  readonly #lab: InteropLab;
  readonly ifaces: string[];
  readonly #base: string[];

  constructor(lab: InteropLab, name: string, ifaces: string[], hostnames: boolean) {
    this.#lab = lab;
    this.ifaces = ifaces;
    const dir = lab.dir;
    const conf = hostnames
      ? ifaces.map((i) => `interface "${i}" { send host-name "h-${i}"; }\n`).join("")
      : "";
    Deno.writeTextFileSync(`${dir}/${name}.conf`, conf);
    this.#base = [
      "dhclient",
      "-4",
      "-cf",
      `${dir}/${name}.conf`,
      "-lf",
      `${dir}/${name}.leases`,
      "-pf",
      `${dir}/${name}.pid`,
      "-sf",
      `${dir}/dhclient.sh`,
    ];
    this.#proc = new LoggedProcess(lab.lab, lab.ns.clients, [
      ...this.#base,
      "-d",
      "-v",
      ...ifaces,
    ]);
    lab.onTeardown(() => this.stop());
  }

  get log(): string {
    return this.#proc.log;
  }

  /** `dhclient -r`: sends a DHCPRELEASE for every interface's lease and stops the client. */
  async release(): Promise<void> {
    const r = await this.#lab.lab.exec(
      this.#lab.ns.clients,
      [...this.#base, "-r", ...this.ifaces],
      {
        timeoutMs: 20_000,
      },
    );
    if (r.code !== 0) throw new Error(`dhclient -r failed (${r.code}): ${r.stderr}`);
    await this.stop();
  }

  async stop(): Promise<void> {
    await this.#proc.stop("SIGTERM");
  }

  /** SIGKILL: the clients vanish without a word (their addresses stay on the interfaces). */
  async kill(): Promise<void> {
    await this.#proc.stop("SIGKILL");
  }
}

/** A running udhcpc on one interface. */
export class Udhcpc {
  readonly #proc: LoggedProcess;
  readonly iface: string;

  constructor(lab: InteropLab, iface: string, args: string[]) {
    this.iface = iface;
    this.#proc = new LoggedProcess(lab.lab, lab.ns.clients, [
      "udhcpc",
      "-f",
      "-i",
      iface,
      "-s",
      `${lab.dir}/udhcpc.sh`,
      "-t",
      "20",
      "-T",
      "1",
      "-A",
      "1",
      ...args,
    ]);
    lab.onTeardown(() => this.stop());
  }

  get log(): string {
    return this.#proc.log;
  }

  signal(s: Deno.Signal): void {
    this.#proc.child.kill(s);
  }

  async stop(): Promise<void> {
    await this.#proc.stop("SIGTERM");
  }
}

/** The namespaces of one lab. */
export interface LabNamespaces {
  bridge: string;
  duet: string;
  isc: string;
  clients: string;
}

/** One duet + ISC pair with its clients; made by withInterop(). */
export class InteropLab {
  readonly lab: Lab;
  readonly dir: string;
  readonly ns: LabNamespaces;
  readonly settings: PairSettings;
  isc: LoggedProcess | null = null;
  duet: DuetProcess | null = null;
  /** Logs of earlier runs of each server (restarts), oldest first. */
  readonly pastLogs: { what: string; log: string }[] = [];
  #failoverCapture: Capture | null = null;
  #dhcpCapture: Capture | null = null;
  #teardown: (() => Promise<void>)[] = [];
  #ifaces = 0;

  private constructor(lab: Lab, dir: string, ns: LabNamespaces, settings: PairSettings) {
    this.lab = lab;
    this.dir = dir;
    this.ns = ns;
    this.settings = settings;
  }

  get yaml(): string {
    return `${this.dir}/duet.yaml`;
  }

  get db(): string {
    return `${this.dir}/duet.db`;
  }

  get iscLeaseFile(): string {
    return `${this.dir}/dhcpd.leases`;
  }

  get failoverPcap(): string {
    return `${this.dir}/failover.pcap`;
  }

  get dhcpPcap(): string {
    return `${this.dir}/dhcp.pcap`;
  }

  /** Builds the namespaces and the bridge, writes the configurations, starts the captures. */
  static async create(lab: Lab, dir: string, settings: PairSettings): Promise<InteropLab> {
    const bridge = await lab.addNamespace("b");
    const duet = await lab.addNamespace("d");
    const isc = await lab.addNamespace("i");
    const clients = await lab.addNamespace("c");
    await lab.addBridge(bridge, "b0");
    const ends: [string, string, string, string | null, string][] = [
      [duet, "d0", "dp", `${DUET_ADDR}/15`, "02:00:00:00:fd:01"],
      [isc, "i0", "ip", `${ISC_ADDR}/15`, "02:00:00:00:fd:02"],
      [clients, "c0", "cp", null, "02:00:00:00:fd:03"],
    ];
    for (const [ns, inner, port, addr, mac] of ends) {
      await lab.link(ns, inner, addr, bridge, port, null);
      await lab.setMac(ns, inner, mac);
      await lab.attach(bridge, port, "b0");
    }
    // Many client interfaces share one namespace: each answers ARP only for its own address,
    // or a server's unicast reply lands on the wrong macvlan (and its dhclient drops it).
    await lab.exec(clients, [
      "sysctl",
      "-qw",
      "net.ipv4.conf.all.arp_ignore=1",
      "net.ipv4.conf.all.arp_announce=2",
    ]);
    const x = new InteropLab(lab, dir, { bridge, duet, isc, clients }, settings);
    await Deno.writeTextFile(`${dir}/dhcpd.conf`, iscConfig(settings));
    await Deno.writeTextFile(x.iscLeaseFile, ""); // ISC will not start without the file
    await Deno.writeTextFile(x.yaml, duetConfig(dir, settings));
    if (settings.duetSecret !== undefined) {
      await Deno.writeTextFile(`${dir}/pair.secret`, `${settings.duetSecret}\n`, { mode: 0o600 });
      await Deno.chmod(`${dir}/pair.secret`, 0o600);
    }
    await Deno.writeTextFile(`${dir}/dhclient.sh`, DHCLIENT_SCRIPT(`${dir}/events`), {
      mode: 0o755,
    });
    await Deno.writeTextFile(`${dir}/udhcpc.sh`, UDHCPC_SCRIPT(`${dir}/events`), { mode: 0o755 });
    x.#failoverCapture = await Capture.start(lab, duet, "d0", "tcp port 647", x.failoverPcap);
    x.#dhcpCapture = await Capture.start(
      lab,
      clients,
      "c0",
      "udp port 67 or udp port 68",
      x.dhcpPcap,
    );
    return x;
  }

  /** Runs `fn` at teardown (before the servers stop), last registered first. */
  onTeardown(fn: () => Promise<void>): void {
    this.#teardown.push(fn);
  }

  // ---- servers --------------------------------------------------------------------------

  /** Starts ISC dhcpd in the foreground (-f -d: logs to stderr) on i0. */
  startIsc(): void {
    if (this.isc !== null && !this.isc.exited) throw new Error("ISC dhcpd is already running");
    if (this.isc !== null) {
      this.pastLogs.push({ what: "ISC dhcpd (earlier run)", log: this.isc.log });
    }
    // A stale pid file whose pid is alive makes dhcpd refuse to start.
    try {
      Deno.removeSync(`${this.dir}/dhcpd.pid`);
    } catch {
      // None yet.
    }
    this.isc = new LoggedProcess(this.lab, this.ns.isc, [
      "dhcpd",
      "-4",
      "-f",
      "-d",
      "-cf",
      `${this.dir}/dhcpd.conf`,
      "-lf",
      this.iscLeaseFile,
      "-pf",
      `${this.dir}/dhcpd.pid`,
      "i0",
    ]);
  }

  /**
   * Starts the ISC server duet is to replace, in duet's namespace with duet's role and address
   * (a migration: README "Replacing one half of an ISC dhcpd pair"). Its files are dhcpd-b.*.
   */
  startIscInDuetPlace(): LoggedProcess {
    const conf = `${this.dir}/dhcpd-b.conf`;
    Deno.writeTextFileSync(conf, iscConfig(this.settings, "duet"));
    Deno.writeTextFileSync(`${this.dir}/dhcpd-b.leases`, "");
    const proc = new LoggedProcess(this.lab, this.ns.duet, [
      "dhcpd",
      "-4",
      "-f",
      "-d",
      "-cf",
      conf,
      "-lf",
      `${this.dir}/dhcpd-b.leases`,
      "-pf",
      `${this.dir}/dhcpd-b.pid`,
      "d0",
    ]);
    this.onTeardown(async () => {
      this.pastLogs.push({ what: "ISC dhcpd replaced by duet", log: proc.log });
      await proc.stop("SIGTERM");
    });
    return proc;
  }

  /** Stops ISC: SIGTERM (ISC sends nothing to its partner either way) or SIGKILL. */
  async stopIsc(signal: Deno.Signal = "SIGTERM"): Promise<void> {
    await this.isc?.stop(signal);
  }

  /** Starts `duet serve` in the duet namespace and waits until it serves. */
  async startDuet(): Promise<void> {
    if (this.duet !== null && !this.duetExited) throw new Error("duet is already running");
    if (this.duet !== null) {
      this.pastLogs.push({ what: "duet (earlier run)", log: this.duet.stderr });
    }
    this.duet = new DuetProcess(["--config", this.yaml, "--log-level", "debug"], [
      "ip",
      "netns",
      "exec",
      this.ns.duet,
    ]);
    this.#duetStatus = null;
    await this.duet.waitFor("duet serving", 30_000);
  }

  #duetStatus: Deno.CommandStatus | null = null;

  get duetExited(): boolean {
    return this.#duetStatus !== null;
  }

  /** Stops duet (SIGTERM: STATE SHUTDOWN first; SIGKILL: a crash); returns the exit code. */
  async stopDuet(signal: Deno.Signal = "SIGTERM"): Promise<number> {
    if (this.duet === null) return 0;
    const code = await this.duet.stop(signal);
    this.#duetStatus = { code, success: code === 0, signal: null };
    return code;
  }

  /** Starts both: ISC first, then duet (as in a migration, ISC is already there). */
  async startBoth(): Promise<void> {
    this.startIsc();
    await this.startDuet();
  }

  // ---- what the servers say ----------------------------------------------------------------

  get iscLog(): string {
    return this.isc?.log ?? "";
  }

  get duetLog(): string {
    return this.duet?.stderr ?? "";
  }

  /** ISC's own failover state from its log (`I move from X to Y`), or null. */
  iscState(): string | null {
    const all = [...this.iscLog.matchAll(/failover peer \S+: I move from \S+ to (\S+)/g)];
    return all.at(-1)?.[1] ?? null;
  }

  /** What ISC last logged about its partner (`peer moves from X to Y`), or null. */
  iscPartnerState(): string | null {
    const all = [...this.iscLog.matchAll(/failover peer \S+: peer moves from \S+ to (\S+)/g)];
    return all.at(-1)?.[1] ?? null;
  }

  /** `duet status --json` (through the control socket). */
  async duetStatus(): Promise<
    {
      state: string | null;
      "partner-state": string | null;
      failover?: { kernelFilter?: { state: string; dropped: Record<string, number> } } | null;
    }
  > {
    const r = await runDuet(["status", "--json", "--config", this.yaml], { timeoutMs: 15_000 });
    if (r.code !== 0) throw new Error(`duet status failed (${r.code}): ${r.stderr}`);
    return JSON.parse(r.stdout);
  }

  /** `duet partner-down` through the control socket. */
  async duetPartnerDown(): Promise<string> {
    const r = await runDuet(["partner-down", "--config", this.yaml], { timeoutMs: 15_000 });
    if (r.code !== 0) throw new Error(`duet partner-down failed (${r.code}): ${r.stderr}`);
    return r.stdout;
  }

  /** duet's lease table (`duet leases --db --json`, read-only, also while it runs). */
  async duetLeases(): Promise<Map<string, DuetLease>> {
    const r = await runDuet(["leases", "--db", this.db, "--json"], { timeoutMs: 15_000 });
    if (r.code !== 0) throw new Error(`duet leases failed (${r.code}): ${r.stderr}`);
    const rows = JSON.parse(r.stdout) as DuetLease[];
    return new Map(rows.map((l) => [l.address, l]));
  }

  /** ISC's lease file as it is now. */
  iscLeases(): IscLeaseFile {
    return parseIscLeases(Deno.readTextFileSync(this.iscLeaseFile));
  }

  /** Counts of duet's leases by state. */
  static countStates(leases: Iterable<{ state?: string; bindingState?: string }>) {
    const out: Record<string, number> = {};
    for (const l of leases) {
      const s = l.state ?? l.bindingState ?? "?";
      out[s] = (out[s] ?? 0) + 1;
    }
    return out;
  }

  // ---- clients -----------------------------------------------------------------------------

  /** Adds macvlans m<from>..m<from+count-1> on c0, client n with MAC clientMac(n). */
  async addClients(count: number): Promise<number[]> {
    const ids: number[] = [];
    const batch: string[] = [];
    for (let k = 0; k < count; k++) {
      const n = ++this.#ifaces;
      ids.push(n);
      batch.push(
        `link add ${clientIface(n)} link c0 address ${clientMac(n)} type macvlan mode bridge`,
        `link set ${clientIface(n)} up`,
      );
    }
    const file = `${this.dir}/ip-batch-${ids[0]}`;
    await Deno.writeTextFile(file, batch.join("\n") + "\n");
    const r = await this.lab.exec(this.ns.clients, ["ip", "-batch", file], { timeoutMs: 30_000 });
    if (r.code !== 0) throw new Error(`Cannot add client interfaces: ${r.stderr}`);
    return ids;
  }

  /** Starts one dhclient for these clients (`send host-name "h-mN"` when `hostnames`). */
  dhclient(ids: number[], options: { name?: string; hostnames?: boolean } = {}): Dhclient {
    return new Dhclient(
      this,
      options.name ?? `dhclient-${ids[0]}`,
      ids.map(clientIface),
      options.hostnames ?? true,
    );
  }

  /** Starts udhcpc on client n's interface (it sends option 61 = its MAC unless -C). */
  udhcpc(id: number, args: string[] = []): Udhcpc {
    return new Udhcpc(this, clientIface(id), args);
  }

  /** Every event the client scripts recorded. */
  events(): ClientEvent[] {
    let text = "";
    try {
      text = Deno.readTextFileSync(`${this.dir}/events`);
    } catch {
      return [];
    }
    return text.split("\n").filter((l) => l.trim() !== "").map((l) => {
      const [iface = "", reason = "", address = "-", serverId = "-", lease = "0"] = l.split(" ");
      return { iface, reason, address, serverId, leaseTime: Number(lease) };
    });
  }

  /** The last bound address of each interface (BOUND/RENEW/REBIND/REBOOT, bound/renew). */
  bound(): Map<string, ClientEvent> {
    const out = new Map<string, ClientEvent>();
    for (const e of this.events()) {
      if (/^(BOUND|RENEW|REBIND|REBOOT|bound|renew)$/.test(e.reason)) out.set(e.iface, e);
      else if (/^(EXPIRE|FAIL|RELEASE|STOP|deconfig|leasefail)$/.test(e.reason)) {
        out.delete(e.iface);
      }
    }
    return out;
  }

  // ---- captures ----------------------------------------------------------------------------

  /** The DHCP messages of the client capture so far (dumpcap writes as it goes). */
  async dhcpSeen(): Promise<DhcpSeen[]> {
    const items = await decodeJson(this.#snapshot(this.#dhcpCapture, this.dhcpPcap));
    return items.filter((i) => i.protocol === "dhcp" && i.type !== null).map((i) => {
      const opt = (code: number) => i.options.find((o) => o.code === code)?.value ?? null;
      const h = i.header as Record<string, string | number>;
      return {
        frame: i.frame,
        time: i.time ?? 0,
        type: i.type as string,
        chaddr: String(h.chaddr),
        yiaddr: String(h.yiaddr),
        ciaddr: String(h.ciaddr),
        serverId: opt(54),
        requested: opt(50),
        clientId: i.options.find((o) => o.code === 61)?.hex ?? null,
        secs: Number(h.secs),
      };
    });
  }

  /** The failover messages of the link capture so far. */
  async failoverSeen(): Promise<FailoverSeen[]> {
    const items = await decodeJson(this.#snapshot(this.#failoverCapture, this.failoverPcap));
    return items.filter((i) => i.protocol === "failover" && i.type !== null).map((i) => ({
      frame: i.frame,
      time: i.time ?? 0,
      src: i.src ?? "",
      dst: i.dst ?? "",
      type: i.type as string,
      xid: Number((i.header as Record<string, number>).xid),
      options: i.options.map((o) => ({ name: o.name, value: o.value })),
    }));
  }

  /** A copy of a running capture's complete records (or the file once it stopped). */
  #snapshot(capture: Capture | null, file: string): string {
    if (capture === null) return file;
    const path = `${file}.snapshot`;
    capture.snapshot(path);
    return path;
  }

  // ---- waiting and failing well -------------------------------------------------------------

  /** Polls `check` every 200 ms until it holds; throws after `timeoutMs`. */
  async waitFor(
    what: string,
    check: () => boolean | Promise<boolean>,
    timeoutMs: number,
  ): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last: unknown = null;
    while (Date.now() < deadline) {
      try {
        if (await check()) return;
        last = null;
      } catch (e) {
        last = e;
      }
      await sleep(200);
    }
    const why = last === null ? "" : `: last check threw ${(last as Error).message}`;
    throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}${why}`);
  }

  /** Both servers in NORMAL: ISC's log and duet's status agree. */
  async waitBothNormal(timeoutMs = 30_000): Promise<void> {
    await this.waitFor(
      "ISC: Both servers normal",
      () => /Both servers normal/.test(this.iscLog),
      timeoutMs,
    );
    await this.waitFor("duet status: normal/normal", async () => {
      const s = await this.duetStatus();
      return s.state === "normal" && s["partner-state"] === "normal";
    }, 15_000);
  }

  async teardown(): Promise<void> {
    for (const fn of this.#teardown.reverse()) await fn().catch(() => {});
    this.#teardown = [];
    if (this.duet !== null && !this.duetExited) await this.stopDuet("SIGTERM").catch(() => 0);
    await this.isc?.stop("SIGTERM").catch(() => {});
    // libpcap hands packets to dumpcap up to a few hundred ms late, and they are lost if it
    // stops first.
    await sleep(600);
    for (const c of [this.#failoverCapture, this.#dhcpCapture]) await c?.stop().catch(() => {});
  }

  /** The text a failed test shows: logs, the decoded failover capture, where the files are. */
  async failureReport(): Promise<string> {
    const parts: string[] = [`--- test directory (kept): ${this.dir}`];
    // The whole logs stay with the captures for a closer look.
    const logs = [...this.pastLogs, { what: "isc", log: this.iscLog }, {
      what: "duet",
      log: this.duetLog,
    }];
    logs.forEach((l, i) => {
      const name = l.what.replace(/[^a-z]+/gi, "-").replace(/-+$/, "");
      Deno.writeTextFileSync(`${this.dir}/log-${i}-${name}.txt`, l.log);
    });
    for (const p of this.pastLogs) parts.push(`--- ${p.what} ---\n${tail(p.log, 40)}`);
    parts.push(`--- ISC dhcpd log ---\n${tail(this.iscLog, 60)}`);
    parts.push(`--- duet log (no per-message debug lines) ---\n${
      tail(
        this.duetLog.split("\n").filter((l) => !/DEBUG (Sent|Received) failover message/.test(l))
          .join("\n"),
        80,
      )
    }`);
    const events = this.events();
    if (events.length > 0) {
      parts.push(
        `--- client events (last 30 of ${events.length}) ---\n${
          events.slice(-30).map((e) => `${e.iface} ${e.reason} ${e.address} ${e.serverId}`).join(
            "\n",
          )
        }`,
      );
    }
    try {
      const seen = await this.failoverSeen();
      const t0 = seen[0]?.time ?? 0;
      const lines = seen.map((m) =>
        `#${m.frame} +${(m.time - t0).toFixed(3)}s ${m.src} > ${m.dst} ${m.type} xid=${m.xid} ${
          m.options.map((o) => `${o.name}=${o.value}`).join(" ")
        }`
      );
      parts.push(
        `--- failover link, decoded by duet decode (${lines.length} messages; last 80) ---\n${
          lines.slice(-80).join("\n")
        }`,
      );
    } catch (e) {
      parts.push(`--- failover capture could not be decoded: ${(e as Error).message}`);
    }
    return parts.join("\n");
  }
}

function tail(text: string, lines: number): string {
  return text.split("\n").slice(-lines).join("\n");
}

interface DecodedJson {
  frame: number;
  time: number | null;
  src: string | null;
  dst: string | null;
  protocol: string;
  type: string | null;
  header: Record<string, string | number> | null;
  options: { code: number; name: string; value: string; hex: string }[];
}

async function decodeJson(pcap: string): Promise<DecodedJson[]> {
  const r = await runDuet(["decode", "--json", pcap], { timeoutMs: 30_000 });
  if (r.code !== 0) throw new Error(`duet decode ${pcap} failed (${r.code}): ${r.stderr}`);
  return JSON.parse(r.stdout) as DecodedJson[];
}

/**
 * Runs `fn` against a fresh lab with duet in `duetRole` and ISC in the other role (both
 * started unless `start: false`). Skips (or fails under CI=true) without the tools.
 */
export async function withInterop(
  t: Deno.TestContext,
  settings: Partial<PairSettings> & { duetRole: Role },
  fn: (x: InteropLab) => Promise<void>,
  options: { start?: boolean } = {},
): Promise<void> {
  if (!requireOrSkip(t, netnsPrerequisites(INTEROP_TOOLS))) return;
  const lab = await Lab.create("io");
  const dir = await Deno.makeTempDir({ prefix: "duet-interop-" });
  let x: InteropLab | undefined;
  let failure: unknown = null;
  try {
    x = await InteropLab.create(lab, dir, { ...DEFAULTS, ...settings });
    if (options.start !== false) await x.startBoth();
    await fn(x);
  } catch (e) {
    failure = e;
  } finally {
    await x?.teardown();
    await lab.cleanup();
  }
  if (failure !== null) {
    const report = x ? await x.failureReport() : `--- test directory (kept): ${dir}`;
    throw new Error(`${(failure as Error).message}\n${report}`, { cause: failure });
  }
  if (Deno.env.get("DUET_INTEROP_KEEP") === "1") {
    await x?.failureReport(); // writes the logs next to the captures
    // deno-lint-ignore no-console
    console.log(`DUET_INTEROP_KEEP: ${t.name}: ${dir}`);
    return;
  }
  await Deno.remove(dir, { recursive: true });
}

/** ISO time (duet) to epoch seconds, or null. */
export function epoch(iso: string | null): number | null {
  return iso === null ? null : Date.parse(iso) / 1000;
}
