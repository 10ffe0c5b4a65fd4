/**
 * GET /metrics: the status snapshot in the Prometheus text exposition format, version 0.0.4
 * (https://prometheus.io/docs/instrumenting/exposition_formats/). Pure.
 */
import { RELOAD_OUTCOMES } from "../config/reload.ts";
import { HOOK_EVENTS } from "../hooks/event.ts";
import { LEASE_STATES } from "../store/store.ts";
import { SERVER_STATE_NAMES } from "../wire/failover.ts";
import type { StatusSnapshot } from "./status.ts";

/** The Content-Type of the text format. */
export const METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

type MetricType = "counter" | "gauge" | "histogram";

interface Sample {
  /** Appended to the family name ("_bucket", "_sum", "_count"). */
  suffix?: string;
  labels?: [string, string][];
  value: number;
}

interface Family {
  name: string;
  help: string;
  type: MetricType;
  samples: Sample[];
}

/** Label values escape backslash, double quote and line feed (format 0.0.4). */
export function escapeLabelValue(v: string): string {
  return v.replaceAll("\\", "\\\\").replaceAll('"', '\\"').replaceAll("\n", "\\n");
}

/** HELP text escapes backslash and line feed (format 0.0.4). */
function escapeHelp(v: string): string {
  return v.replaceAll("\\", "\\\\").replaceAll("\n", "\\n");
}

/** A sample value as Go's ParseFloat reads it: NaN, +Inf and -Inf spelled out. */
export function formatValue(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  return String(v);
}

function renderFamily(f: Family): string {
  let out = `# HELP ${f.name} ${escapeHelp(f.help)}\n# TYPE ${f.name} ${f.type}\n`;
  for (const s of f.samples) {
    const labels = s.labels && s.labels.length > 0
      ? `{${s.labels.map(([k, v]) => `${k}="${escapeLabelValue(v)}"`).join(",")}}`
      : "";
    out += `${f.name}${s.suffix ?? ""}${labels} ${formatValue(s.value)}\n`;
  }
  return out;
}

function labelled(label: string, r: Record<string, number>): Sample[] {
  return Object.entries(r).map(([k, value]) => ({ labels: [[label, k]], value }));
}

/** The histogram samples: cumulative _bucket{le} counts, then _sum and _count. */
function histogramSamples(h: StatusSnapshot["db"]["commitLatencyMs"]): Sample[] {
  const out: Sample[] = [];
  let cumulative = 0;
  let sawInf = false;
  for (const b of h.buckets) {
    cumulative += b.count;
    sawInf ||= b.le === "+Inf";
    out.push({
      suffix: "_bucket",
      labels: [["le", b.le === "+Inf" ? "+Inf" : formatValue(b.le)]],
      value: cumulative,
    });
  }
  // The format requires a +Inf bucket equal to _count.
  if (!sawInf) out.push({ suffix: "_bucket", labels: [["le", "+Inf"]], value: h.count });
  out.push({ suffix: "_sum", value: h.sum }, { suffix: "_count", value: h.count });
  return out;
}

/** Renders a status snapshot as Prometheus text, HELP and TYPE before every family. */
export function renderMetrics(s: StatusSnapshot): string {
  const families: Family[] = [
    {
      name: "duet_uptime_seconds",
      help: "Seconds since the server started.",
      type: "gauge",
      samples: [{ value: s.uptimeSeconds }],
    },
    {
      name: "duet_packets_received_total",
      help: "DHCP requests received, by message type.",
      type: "counter",
      samples: labelled("type", s.dhcp.received),
    },
    {
      name: "duet_packets_sent_total",
      help: "DHCP replies sent, by message type.",
      type: "counter",
      samples: labelled("type", s.dhcp.sent),
    },
    {
      name: "duet_packets_dropped_total",
      help: "DHCP requests that got no reply, by reason.",
      type: "counter",
      samples: labelled("reason", s.dhcp.dropped),
    },
    {
      name: "duet_packets_withheld_total",
      help:
        "Replies not sent because the lease database could not record their lease, by message type.",
      type: "counter",
      samples: labelled("type", s.dhcp.withheld),
    },
    {
      name: "duet_packets_malformed_total",
      help: "Datagrams that did not decode as DHCP.",
      type: "counter",
      samples: [{ value: s.dhcp.malformed }],
    },
    {
      name: "duet_packets_send_failed_total",
      help: "Replies the socket refused to send.",
      type: "counter",
      samples: [{ value: s.dhcp.sendFailed }],
    },
    {
      name: "duet_offers_recycled_total",
      help: "Offers taken back before their hold ended because offer-limit was reached.",
      type: "counter",
      samples: [{ value: s.dhcp.offersRecycled }],
    },
    {
      name: "duet_leases",
      help: "Leases in the database, by binding state.",
      type: "gauge",
      samples: LEASE_STATES.map((st) => ({ labels: [["state", st]], value: s.leases[st] ?? 0 })),
    },
    {
      name: "duet_pool_addresses",
      help: "Dynamic addresses in the pools of a subnet.",
      type: "gauge",
      samples: s.subnets.map((n) => ({ labels: [["subnet", n.subnet]], value: n.size })),
    },
    {
      name: "duet_pool_free_addresses",
      help: "Dynamic addresses of a subnet free to offer.",
      type: "gauge",
      samples: s.subnets.map((n) => ({ labels: [["subnet", n.subnet]], value: n.free })),
    },
    {
      name: "duet_pool_range_addresses",
      help: "Addresses in one pool range.",
      type: "gauge",
      samples: s.pools.map((p) => ({
        labels: [["subnet", p.subnet], ["pool", p.range]],
        value: p.size,
      })),
    },
    {
      name: "duet_pool_range_free_addresses",
      help: "Addresses of one pool range that are not leased, declined or reserved.",
      type: "gauge",
      samples: s.pools.map((p) => ({
        labels: [["subnet", p.subnet], ["pool", p.range]],
        value: p.free,
      })),
    },
    {
      name: "duet_db_writable",
      help:
        "1 while the lease database accepts writes, 0 while it refuses them (no OFFER or ACK is sent).",
      type: "gauge",
      samples: [{ value: s.db.writable ? 1 : 0 }],
    },
    {
      name: "duet_db_commits_total",
      help: "Lease database transactions committed.",
      type: "counter",
      samples: [{ value: s.db.commits }],
    },
    {
      name: "duet_db_commit_failures_total",
      help: "Lease database commits or syncs that failed.",
      type: "counter",
      samples: [{ value: s.db.commitFailures }],
    },
    {
      name: "duet_db_leases_committed_total",
      help: "Lease rows written by committed transactions.",
      type: "counter",
      samples: [{ value: s.db.leasesCommitted }],
    },
    {
      name: "duet_db_commit_latency_ms",
      help: "Time to COMMIT one batch of leases, in milliseconds.",
      type: "histogram",
      samples: histogramSamples(s.db.commitLatencyMs),
    },
    {
      name: "duet_reloads_total",
      help: "Configuration reloads (SIGHUP, duet reload), by outcome.",
      type: "counter",
      samples: RELOAD_OUTCOMES.map((o) => ({
        labels: [["outcome", o]],
        value: s.reload.count[o] ?? 0,
      })),
    },
    {
      name: "duet_config_last_reload_successful",
      help: "0 when the last reload was invalid or refused (the old configuration is in force).",
      type: "gauge",
      samples: [{
        value: s.reload.last === null || s.reload.last.outcome === "applied" ||
            s.reload.last.outcome === "unchanged"
          ? 1
          : 0,
      }],
    },
    {
      name: "duet_config_last_reload_timestamp_seconds",
      help: "When the last reload ran, in epoch seconds.",
      type: "gauge",
      samples: s.reload.last === null ? [] : [{ value: Date.parse(s.reload.last.time) / 1000 }],
    },
    {
      name: "duet_clock_steps_total",
      help: "Steps of the system clock applied to the stored lease times.",
      type: "counter",
      samples: [{ value: s.clock.steps }],
    },
  ];
  const h = s.hooks;
  if (h !== null) {
    families.push(
      {
        name: "duet_hook_events_total",
        help: "Lease events queued for the hook, by event.",
        type: "counter",
        samples: HOOK_EVENTS.map((e) => ({ labels: [["event", e]], value: h.events[e] ?? 0 })),
      },
      {
        name: "duet_hook_dropped_total",
        help: "Lease events dropped because the hook queue was full.",
        type: "counter",
        samples: [{ value: h.dropped }],
      },
      {
        name: "duet_hook_runs_total",
        help: "Hook runs that ended, by result.",
        type: "counter",
        samples: [
          { labels: [["result", "ok"]], value: h.succeeded },
          { labels: [["result", "failed"]], value: h.failed },
          { labels: [["result", "timeout"]], value: h.timedOut },
        ],
      },
      {
        name: "duet_hook_queue_length",
        help: "Lease events waiting for the hook.",
        type: "gauge",
        samples: [{ value: h.queued }],
      },
      {
        name: "duet_hook_running",
        help: "Hook runs going now.",
        type: "gauge",
        samples: [{ value: h.running }],
      },
    );
  }
  const f = s.failover;
  if (f !== null) {
    families.push(
      {
        name: "duet_pool_backup_addresses",
        help:
          "Free addresses of a subnet that are the secondary's (BACKUP); the other free ones are the primary's (draft-12 5.4).",
        type: "gauge",
        samples: s.subnets.flatMap((n) =>
          n.backup === undefined ? [] : [{ labels: [["subnet", n.subnet]], value: n.backup }]
        ),
      },
      ...(f.kernelFilter === undefined ? [] : [
        {
          name: "duet_kernel_filter_active",
          help:
            "1 while the kernel's eBPF filter drops the partner's load-balanced requests (NORMAL), else 0.",
          type: "gauge" as const,
          samples: [{ value: f.kernelFilter.state === "dropping" ? 1 : 0 }],
        },
        {
          name: "duet_kernel_filter_dropped_total",
          help:
            "Requests the kernel's filter dropped as the partner's (also counted in duet_packets_dropped_total).",
          type: "counter" as const,
          samples: Object.entries(f.kernelFilter.dropped).map(([type, value]) => ({
            labels: [["type", type]] as [string, string][],
            value,
          })),
        },
      ]),
      {
        name: "duet_failover_link_up",
        help: "1 when the failover partner link is up (draft-12 §8.3), else 0.",
        type: "gauge",
        samples: [{ value: f.link === "up" ? 1 : 0 }],
      },
      ...(f.state === undefined ? [] : [{
        name: "duet_failover_state",
        help: "1 for this server's failover state (draft-12 §9), else 0.",
        type: "gauge" as const,
        samples: Object.values(SERVER_STATE_NAMES).map((name) => ({
          labels: [["state", name]] as [string, string][],
          value: f.state === name ? 1 : 0,
        })),
      }]),
      {
        name: "duet_failover_partner_state",
        help: "1 for the partner's last reported server-state (draft-12 §12.24), else 0.",
        type: "gauge",
        samples: Object.values(SERVER_STATE_NAMES).map((name) => ({
          labels: [["state", name]],
          value: f.partner?.state === name ? 1 : 0,
        })),
      },
      ...(f.updates === undefined ? [] : [
        {
          name: "duet_failover_updates_queued",
          help: "Binding updates waiting to be sent to the partner (draft-12 §7.1).",
          type: "gauge" as const,
          samples: [{ value: f.updates.queued }],
        },
        {
          name: "duet_failover_bndupd_unacked",
          help: "BNDUPD messages sent and not yet acknowledged (draft-12 §7.1.1, §8.4).",
          type: "gauge" as const,
          samples: [{ value: f.updates.unacked }],
        },
        {
          name: "duet_failover_updates_sent_total",
          help: "Binding updates sent to the partner.",
          type: "counter" as const,
          samples: [{ value: f.updates.sent }],
        },
        {
          name: "duet_failover_updates_acked_total",
          help: "Binding updates the partner acknowledged, by result (draft-12 §7.2).",
          type: "counter" as const,
          samples: [
            { labels: [["result", "accepted"]] as [string, string][], value: f.updates.accepted },
            { labels: [["result", "rejected"]] as [string, string][], value: f.updates.rejected },
          ],
        },
      ]),
      {
        name: "duet_failover_clock_skew_seconds",
        help: "Partner clock minus ours in seconds (draft-12 §5.10).",
        type: "gauge",
        samples: f.clockSkewSeconds === null ? [] : [{ value: f.clockSkewSeconds }],
      },
      {
        name: "duet_failover_seconds_since_contact",
        help: "Seconds since the partner last sent anything.",
        type: "gauge",
        samples: f.sinceContactSeconds === null ? [] : [{ value: f.sinceContactSeconds }],
      },
    );
    const lat = f.updates?.ackLatency ?? null;
    if (f.updates !== undefined) {
      families.push({
        name: "duet_failover_bndack_latency_ms",
        help: "BNDUPD to BNDACK round trip in milliseconds, over the recent round trips.",
        type: "gauge",
        samples: lat === null || lat.p50Ms === null || lat.p99Ms === null ? [] : [
          { labels: [["quantile", "0.5"]], value: lat.p50Ms },
          { labels: [["quantile", "0.99"]], value: lat.p99Ms },
        ],
      });
    }
  }
  return families.map(renderFamily).join("");
}
