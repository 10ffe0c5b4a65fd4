/** Where a DHCP reply goes: RFC 2131 §4.1 and §4.3.2, as a pure function. */
import { BROADCAST_FLAG, type DhcpMessage, DhcpType, hwAddress } from "../wire/dhcp.ts";
import type { Received, SendTarget } from "./transport.ts";

/** UDP ports of RFC 2131 §4.1. */
export const DHCP_SERVER_PORT = 67;
export const DHCP_CLIENT_PORT = 68;
/** The limited broadcast address 255.255.255.255. */
export const BROADCAST_ADDRESS = 0xffffffff;

/** What the shell knows about where a request came from: a Received without its bytes. */
export type Arrival = Omit<Received, "data">;

/**
 * The destination of a reply (RFC 2131 §4.1):
 * - relayed (giaddr ≠ 0): to the relay on port 67; for a test relay that sent from its own
 *   address on another port, to that port;
 * - a DHCPNAK to a direct client: broadcast;
 * - ciaddr set (RENEWING, REBINDING, INFORM): unicast to ciaddr;
 * - broadcast flag set, or no usable hardware address: broadcast out of the arrival interface;
 * - otherwise unicast to yiaddr at chaddr, out of the arrival interface.
 */
export function replyTarget(
  request: DhcpMessage,
  reply: DhcpMessage,
  arrival: Arrival,
): SendTarget {
  const ifindex = arrival.ifindex;
  const srcAddress = arrival.localAddress;
  if (request.giaddr !== 0) {
    const port = arrival.srcAddress === request.giaddr && arrival.srcPort !== DHCP_CLIENT_PORT
      ? arrival.srcPort
      : DHCP_SERVER_PORT;
    return { address: request.giaddr, port, ifindex: 0, srcAddress };
  }
  const type = reply.options.get(53)?.[0];
  if (type === DhcpType.DHCPNAK) {
    return { address: BROADCAST_ADDRESS, port: DHCP_CLIENT_PORT, ifindex, srcAddress };
  }
  if (request.ciaddr !== 0) {
    // A client with an address listens on it; a non-standard source port (a test client on
    // loopback) gets its answer there.
    const port = arrival.srcAddress === request.ciaddr ? arrival.srcPort : DHCP_CLIENT_PORT;
    return { address: request.ciaddr, port, ifindex: 0, srcAddress };
  }
  const isEthernetLike = request.hlen > 0 && request.hlen <= 16;
  if ((request.flags & BROADCAST_FLAG) !== 0 || !isEthernetLike || reply.yiaddr === 0) {
    return { address: BROADCAST_ADDRESS, port: DHCP_CLIENT_PORT, ifindex, srcAddress };
  }
  return {
    address: reply.yiaddr,
    port: DHCP_CLIENT_PORT,
    ifindex,
    hwAddress: hwAddress(request),
    srcAddress,
  };
}
