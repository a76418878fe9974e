// Drives the official Dfns TypeScript SDK (@dfns/sdk, pinned in package-lock.json) through a
// running `dfns-signer serve`, with the repository's adapter (clients/typescript, RemoteSigner)
// as the SDK's signer: the SDK's baseUrl is the service, which passes /auth/action/init on to
// Dfns (here: the simulator) and signs the challenge at POST /v1/sign with the key it holds.
// tests/ts_sdk.rs starts the simulator and the service, runs this script, and asserts on its
// output; the script only records what happened.
//
// usage: node service.mjs SERVICE_URL AUTH_TOKEN CLIENT_SECRET
//
// Output: one JSON line, {"sdk", "results": {step: {"ok": bool, ...facts}}}. Ids, statuses,
// signatures and error messages only: never the token or the client secret (both are also cut
// out of the line before it is printed, in case an error message ever echoed one).

import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const [serviceUrl, authToken, clientSecret] = process.argv.slice(2);
if (!serviceUrl || !authToken || !clientSecret) {
  console.error('usage: node service.mjs SERVICE_URL AUTH_TOKEN CLIENT_SECRET');
  process.exit(2);
}

const { DfnsApiClient, DfnsError } = require('@dfns/sdk');
const { RemoteSigner, RemoteSignerError } = require('../../clients/typescript/index.js');
const sdkVersion = require('@dfns/sdk/package.json').version;

const dfns = new DfnsApiClient({
  baseUrl: serviceUrl, // the service, not the Dfns API
  authToken,
  signer: new RemoteSigner({ url: serviceUrl, clientSecret }),
});

const results = {};
async function step(name, fn) {
  try {
    results[name] = { ok: true, ...(await fn()) };
  } catch (e) {
    const fact = { ok: false, errorName: e?.name ?? typeof e, message: String(e?.message ?? e) };
    if (e instanceof RemoteSignerError) {
      Object.assign(fact, {
        remoteSignerError: true,
        status: e.status ?? null,
        serviceMessage: e.serviceMessage ?? null,
        fix: e.fix ?? null,
        rule: e.rule ?? null,
      });
    } else if (e instanceof DfnsError) {
      fact.dfnsError = true;
      fact.status = e.httpStatus;
    }
    results[name] = fact;
  }
}

const hash = `0x${'42'.repeat(32)}`;
let wallet;

await step('createWallet', async () => {
  wallet = await dfns.wallets.createWallet({ body: { network: 'Bitcoin' } });
  return { walletId: wallet.id, network: wallet.network, signingKey: wallet.signingKey };
});

await step('generateSignature', async () => {
  if (!wallet) throw new Error('no wallet: createWallet failed');
  const sig = await dfns.wallets.generateSignature({ walletId: wallet.id, body: { kind: 'Hash', hash } });
  return { signatureId: sig.id, walletId: sig.walletId, status: sig.status, hash, signature: sig.signature };
});

// Outside the `payments` policy (Bitcoin and EthereumSepolia only): the TypeScript SDK cannot
// name the client at init, so the init goes through and the service refuses at /v1/sign; the
// SDK passes the adapter's RemoteSignerError on to this await.
await step('tronWallet', async () => {
  const refused = await dfns.wallets.createWallet({ body: { network: 'Tron' } });
  return { walletId: refused.id, network: refused.network };
});

const line = JSON.stringify({ sdk: sdkVersion, results });
console.log(line.split(authToken).join('[redacted]').split(clientSecret).join('[redacted]'));
