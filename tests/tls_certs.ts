/**
 * Throwaway TLS material for tests, made with `openssl` in a directory the test owns: a CA, a
 * certificate for 127.0.0.1 signed by it with its key (mode 0600), and a second CA that
 * signed nothing. Tests call `opensslMissing()` first and skip (or fail under CI) with
 * requireOrSkip from tests/netns.ts.
 */

/** Why openssl cannot be used, or null. */
export async function opensslMissing(): Promise<string | null> {
  try {
    const out = await new Deno.Command("openssl", {
      args: ["version"],
      stdout: "null",
      stderr: "null",
    })
      .output();
    return out.success ? null : "openssl version failed";
  } catch {
    return "openssl is not installed (Debian package openssl)";
  }
}

/** Paths of the files makeTlsFiles() wrote. */
export interface TlsFiles {
  /** The CA that signed `cert`. */
  ca: string;
  /** A certificate for IP 127.0.0.1 and DNS name duet-secondary. */
  cert: string;
  /** Its private key, mode 0600. */
  key: string;
  /** A CA that signed nothing here: the wrong CA. */
  otherCa: string;
  /** A private key that does not belong to `cert`, mode 0600. */
  otherKey: string;
}

async function openssl(dir: string, args: string[]): Promise<void> {
  const out = await new Deno.Command("openssl", { args, cwd: dir, stdout: "null", stderr: "piped" })
    .output();
  if (!out.success) {
    throw new Error(`openssl ${args[0]} failed: ${new TextDecoder().decode(out.stderr)}`);
  }
}

/** Writes a CA, a server certificate and key, and a second CA into `dir` (EC P-256, 1 day). */
export async function makeTlsFiles(dir: string): Promise<TlsFiles> {
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
  await openssl(dir, [
    "req",
    "-x509",
    ...ec,
    "-keyout",
    "ca.key",
    "-out",
    "ca.crt",
    "-days",
    "1",
    "-subj",
    "/CN=duet test CA",
  ]);
  await openssl(dir, [
    "req",
    "-x509",
    ...ec,
    "-keyout",
    "other-ca.key",
    "-out",
    "other-ca.crt",
    "-days",
    "1",
    "-subj",
    "/CN=another CA",
  ]);
  await openssl(dir, [
    "req",
    ...ec,
    "-keyout",
    "secondary.key",
    "-out",
    "secondary.csr",
    "-subj",
    "/CN=duet-secondary",
  ]);
  await openssl(dir, [
    "genpkey",
    "-algorithm",
    "EC",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-out",
    "other.key",
  ]);
  await Deno.writeTextFile(`${dir}/ext.cnf`, "subjectAltName=IP:127.0.0.1,DNS:duet-secondary\n");
  await openssl(dir, [
    "x509",
    "-req",
    "-in",
    "secondary.csr",
    "-CA",
    "ca.crt",
    "-CAkey",
    "ca.key",
    "-CAcreateserial",
    "-out",
    "secondary.crt",
    "-days",
    "1",
    "-extfile",
    "ext.cnf",
  ]);
  for (const k of ["secondary.key", "other.key", "ca.key", "other-ca.key"]) {
    await Deno.chmod(`${dir}/${k}`, 0o600);
  }
  return {
    ca: `${dir}/ca.crt`,
    cert: `${dir}/secondary.crt`,
    key: `${dir}/secondary.key`,
    otherCa: `${dir}/other-ca.crt`,
    otherKey: `${dir}/other.key`,
  };
}
