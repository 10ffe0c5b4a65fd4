/**
 * A hostile failover partner against a real `duet serve` secondary on loopback (issue #8,
 * draft-12 §6.1, §7.8.2, §8.3, §8.4, §11.1): each attack ends in a DISCONNECT or a refusal
 * with a logged reason, and a DHCP exchange through the same server afterwards shows that DHCP
 * service went on. The partner is this test, speaking raw bytes built with lib/wire/failover.ts.
 */
import assert from "node:assert/strict";
import net from "node:net";
import {
  assignedIpAddressOption,
  BindingStatus,
  bindingStatusOption,
  bindingUpdateOptions,
  buildBndupd,
  buildConnect,
  buildContact,
  getBindingAcks,
  getMessage,
  getRejectReason,
  MsgType,
  RejectReason,
} from "../../lib/wire/failover.ts";
import { formatIpv4 } from "../../lib/wire/ip.ts";
import { runDuet } from "./process.ts";
import {
  assertDhcpServes,
  connectParams,
  FakePartner,
  startTarget,
  waitLog,
} from "./hostile_partner.ts";

/** tReceive: the link is dropped after this many seconds without a whole message (§8.3). */
const RECEIVE_TIMER = 3;
/** The handshake deadline of a secondary with max-response-delay 3 (lib/cli/serve.ts). */
const HANDSHAKE_SECONDS = 10;

function activeBinding(i: number, now: number) {
  return {
    assignedIpAddress: 0xc6121000 + 200 + i, // 198.18.16.200+i
    bindingStatus: BindingStatus.ACTIVE,
    clientHardwareAddress: { htype: 1, chaddr: new Uint8Array([2, 0, 0, 0, 0x77, i]) },
    leaseExpirationTime: now + 600,
    potentialExpirationTime: now + 900,
    startTimeOfState: now,
    clientLastTransactionTime: now,
  };
}

Deno.test("duet serve drops a hostile failover partner with a logged reason and keeps serving DHCP", async (t) => {
  const target = await startTarget("duet-hostile-", [
    `max-response-delay: ${RECEIVE_TIMER}`,
    "max-unacked-bndupd: 3",
  ]);
  const open: FakePartner[] = [];
  const partner = async () => {
    const p = await FakePartner.connect(target.failoverPort);
    open.push(p);
    return p;
  };
  try {
    await assertDhcpServes(target, "start-up");

    await t.step("a connection from an address other than the partner's is refused", async () => {
      // §7.8.2 step 5: the source address is checked before anything is read.
      const sock = net.connect({
        host: "127.0.0.1",
        port: target.failoverPort,
        localAddress: "127.0.0.2",
      });
      const closed = await new Promise<string>((resolve) => {
        sock.on("close", () => resolve("closed"));
        sock.on("error", (e) => resolve(`error ${e.message}`));
        setTimeout(() => resolve("still open"), 3000);
      });
      sock.destroy();
      assert.equal(closed, "closed");
      await waitLog(
        target,
        "Refused failover connection: not the configured partner from=127.0.0.2:",
      );
      await assertDhcpServes(target, "a stranger's connection");
    });

    await t.step(
      "garbage bytes: an impossible length is bad framing, DISCONNECT and close",
      async () => {
        const p = await partner();
        await p.write(new Uint8Array([0, 3, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8]));
        const types = await p.untilClosed();
        assert.deepEqual(types, [MsgType.DISCONNECT]);
        await waitLog(target, "Dropping failover connection: bad framing");
        await assertDhcpServes(target, "garbage");
      },
    );

    await t.step(
      "garbage bytes in a well-framed message: undefined type 0 (§6.1), DISCONNECT",
      async () => {
        const p = await partner();
        const frame = new Uint8Array(40).map((_, i) => (i * 37 + 11) & 0xff);
        frame.set([0, 40, 0, 12], 0); // length 40, type 0, payload offset 12
        await p.write(frame);
        assert.deepEqual(await p.untilClosed(), [MsgType.DISCONNECT]);
        await waitLog(target, "undefined type in the mandatory range 0-127");
        await assertDhcpServes(target, "garbage in a frame");
      },
    );

    await t.step(
      "an oversize length field (2049 > 2048, §6.1): DISCONNECT before the body arrives",
      async () => {
        const p = await partner();
        await p.write(new Uint8Array([0x08, 0x01, 5, 12])); // only the first 4 octets
        assert.deepEqual(await p.untilClosed(), [MsgType.DISCONNECT]);
        await waitLog(target, "length is 2049, expected 12-2048");
        await assertDhcpServes(target, "an oversize length");
      },
    );

    await t.step(
      "a flood of connections in their handshake: beyond 4, refused at once",
      async () => {
        const idle = [];
        for (let k = 0; k < 4; k++) idle.push(await partner());
        await new Promise((r) => setTimeout(r, 200));
        const extra = await partner();
        assert.deepEqual(await extra.untilClosed(2000), [], "the fifth is closed at once");
        await waitLog(target, "Refused failover connection: too many connections in handshake");
        for (const p of idle) p.close();
        await new Promise((r) => setTimeout(r, 300)); // duet sees them close
        await assertDhcpServes(target, "a connection flood");
      },
    );

    await t.step("a BNDUPD flood beyond max-unacked-bndupd (3, §8.4): DISCONNECT", async () => {
      const p = await partner();
      await p.handshake();
      await waitLog(target, "Failover communications up", 1);
      const now = FakePartner.now();
      // Four at once: the fourth arrives before any BNDACK could have been sent.
      const burst = [0, 1, 2, 3].map((i) =>
        p.bytes(buildBndupd(p.header(), activeBinding(i, now)))
      );
      await p.write(new Uint8Array(burst.flatMap((b) => [...b])));
      const types = await p.untilClosed();
      assert.equal(types.at(-1), MsgType.DISCONNECT, `got ${types}`);
      assert.ok(types.filter((x) => x === MsgType.BNDACK).length <= 3, `got ${types}`);
      await waitLog(target, "more than 3 BNDUPD messages without waiting for BNDACK");
      await assertDhcpServes(target, "a BNDUPD flood");
    });

    await t.step(
      "BNDUPDs with bogus binding states are refused per binding (BNDACK reject 3, §7.1.3)",
      async () => {
        const p = await partner();
        await p.handshake();
        await waitLog(target, "Failover communications up", 2);
        const now = FakePartner.now();
        const good = activeBinding(10, now);
        await p.send({
          ...buildBndupd(p.header(), good),
          options: [
            ...bindingUpdateOptions(good),
            assignedIpAddressOption(0xc6121000 + 220), // 198.18.16.220: status 99 is no state
            bindingStatusOption(99),
            assignedIpAddressOption(0xc6121000 + 221), // 198.18.16.221: no status at all
          ],
        });
        let ack = await p.receive();
        while (ack !== null && ack.type !== MsgType.BNDACK) ack = await p.receive();
        assert.ok(ack, "a BNDACK came");
        const acks = getBindingAcks(ack);
        assert.deepEqual(
          acks.map((a) => [formatIpv4(a.assignedIpAddress), a.rejectReason ?? 0]),
          [["198.18.16.210", 0], ["198.18.16.220", 3], ["198.18.16.221", 3]],
        );
        // The valid binding is stored, the bogus ones are not (read through the control socket).
        const live = await runDuet(["leases", "--live", "--config", target.config, "--json"]);
        assert.equal(live.code, 0, live.stderr);
        const rows = JSON.parse(live.stdout) as { address: string; state: string }[];
        const byAddress = new Map(rows.map((r) => [r.address, r.state]));
        assert.equal(byAddress.get("198.18.16.210"), "active");
        assert.ok(!byAddress.has("198.18.16.220") && !byAddress.has("198.18.16.221"));
        await assertDhcpServes(target, "bogus binding states");

        // A BNDUPD whose BNDACK cannot answer every transaction in 2048 octets (§6.3): DISCONNECT.
        const bare = Array.from({ length: 254 }, (_, i) => assignedIpAddressOption(0xc6121000 + i));
        await p.send({ ...buildContact(p.header()), type: MsgType.BNDUPD, options: bare });
        const types = await p.untilClosed();
        assert.equal(types.at(-1), MsgType.DISCONNECT);
        await waitLog(
          target,
          "BNDUPD carries 254 binding updates: one BNDACK can answer at most 156",
        );
        await assertDhcpServes(target, "an unanswerable BNDUPD");
      },
    );

    await t.step(
      `a slowloris after the handshake: a message trickled in is not traffic, DISCONNECT 17 after ${RECEIVE_TIMER} s`,
      async () => {
        const p = await partner();
        await p.handshake();
        await waitLog(target, "Failover communications up", 3);
        const started = Date.now();
        const frame = p.bytes(buildContact(p.header()));
        // One octet every 600 ms: 12 octets would take 7 s.
        const trickle = (async () => {
          for (let i = 0; i < frame.length - 1; i++) {
            await new Promise((r) => setTimeout(r, 600));
            try {
              await p.write(frame.subarray(i, i + 1));
            } catch {
              return; // duet closed it
            }
          }
        })();
        const types = await p.untilClosed(10_000);
        const after = (Date.now() - started) / 1000;
        await trickle;
        assert.equal(types.at(-1), MsgType.DISCONNECT);
        assert.ok(
          after >= RECEIVE_TIMER - 0.5 && after < RECEIVE_TIMER + 3,
          `dropped after ${after} s`,
        );
        await waitLog(target, `Nothing received for ${RECEIVE_TIMER} s`);
        await assertDhcpServes(target, "a slowloris after the handshake");
      },
    );

    await t.step(
      `a slowloris in the handshake: CONNECT trickled in, dropped at the ${HANDSHAKE_SECONDS} s deadline`,
      async () => {
        const p = await partner();
        const started = Date.now();
        const frame = p.bytes(buildConnect(p.header(), connectParams()));
        const trickle = (async () => {
          for (let i = 0; i < frame.length; i++) {
            await new Promise((r) => setTimeout(r, 400));
            try {
              await p.write(frame.subarray(i, i + 1));
            } catch {
              return;
            }
          }
        })();
        const types = await p.untilClosed(HANDSHAKE_SECONDS * 1000 + 5000);
        const after = (Date.now() - started) / 1000;
        await trickle;
        assert.deepEqual(types, [], "nothing is sent to a partner that never finished its CONNECT");
        assert.ok(
          after >= HANDSHAKE_SECONDS - 1 && after < HANDSHAKE_SECONDS + 3,
          `dropped after ${after} s`,
        );
        await waitLog(target, "Dropping failover connection: handshake not finished in time");
        await assertDhcpServes(target, "a slowloris in the handshake");
      },
    );

    await t.step("after all that, a well-behaved partner still comes up", async () => {
      const p = await partner();
      await p.handshake();
      await waitLog(target, "Failover communications up", 4);
      p.close();
      await assertDhcpServes(target, "the end");
    });
  } finally {
    for (const p of open) p.close();
    await target.stop();
  }
});

Deno.test("duet serve with a shared secret drops digest failures and replayed xids with a logged reason (§11.1)", async (t) => {
  const secret = "hostile-test-secret";
  const target = await startTarget(
    "duet-hostile-secret-",
    ["max-response-delay: 3", "shared-secret-file: $DIR/pair.secret"],
    { "pair.secret": { text: `${secret}\n`, mode: 0o600 } },
  );
  const open: FakePartner[] = [];
  const partner = async (key: string | null = secret) => {
    const p = await FakePartner.connect(target.failoverPort, key);
    open.push(p);
    return p;
  };
  try {
    await t.step("a CONNECT signed with another secret: CONNECTACK reject 20", async () => {
      const p = await partner("not-the-secret");
      await p.send(buildConnect(p.header(), connectParams()));
      const ack = await p.receive();
      assert.equal(ack?.type, MsgType.CONNECTACK);
      assert.equal(getRejectReason(ack!), RejectReason.DIGEST_FAILED);
      assert.equal(await p.receive(), null, "then closed");
      await waitLog(target, 'reason="20 Message digest failed to compare"');
      await assertDhcpServes(target, "a wrong digest");
    });

    await t.step("an unsigned CONNECT: CONNECTACK reject 21", async () => {
      const p = await partner(null);
      await p.send(buildConnect(p.header(), connectParams()));
      const ack = await p.receive();
      assert.equal(getRejectReason(ack!), RejectReason.MISSING_DIGEST);
      await waitLog(target, 'reason="21 Missing message digest"');
      await assertDhcpServes(target, "a missing digest");
    });

    await t.step(
      "after the handshake, a message whose digest was tampered with: DISCONNECT 20",
      async () => {
        const p = await partner();
        await p.handshake();
        await waitLog(target, "Failover communications up", 1);
        const bytes = p.bytes(buildContact(p.header()));
        bytes[bytes.length - 1] = (bytes[bytes.length - 1] as number) ^ 1; // the digest's last octet
        await p.write(bytes);
        const msgs = [];
        for (let m = await p.receive(); m !== null; m = await p.receive()) msgs.push(m);
        const last = msgs.at(-1);
        assert.equal(last?.type, MsgType.DISCONNECT);
        assert.equal(getRejectReason(last!), RejectReason.DIGEST_FAILED);
        await waitLog(target, "Message digest bad on CONTACT");
        await assertDhcpServes(target, "a tampered message");
      },
    );

    await t.step(
      "after the handshake, a replayed xid (a BNDUPD sent twice): DISCONNECT",
      async () => {
        const p = await partner();
        await p.handshake();
        await waitLog(target, "Failover communications up", 2);
        const now = FakePartner.now();
        const update = p.bytes(buildBndupd(p.header(), activeBinding(30, now)));
        await p.write(update);
        let m = await p.receive();
        while (m !== null && m.type !== MsgType.BNDACK) m = await p.receive();
        assert.equal(m?.type, MsgType.BNDACK, "the first is answered");
        await p.write(update); // byte for byte the same, digest and all
        const msgs = [];
        for (let x = await p.receive(); x !== null; x = await p.receive()) msgs.push(x);
        assert.equal(msgs.at(-1)?.type, MsgType.DISCONNECT);
        assert.match(getMessage(msgs.at(-1)!) ?? "", /does not increase/);
        await waitLog(target, "does not increase");
        await assertDhcpServes(target, "a replayed message");
      },
    );
  } finally {
    for (const p of open) p.close();
    await target.stop();
  }
});
