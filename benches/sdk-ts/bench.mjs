// The official Dfns TypeScript SDK (@dfns/sdk 0.8.21 + @dfns/sdk-keysigner 0.8.3, pinned in
// package-lock.json) under the load `dfns-signer bench` makes: N user-action-signed
// POST /wallets through one client, C in flight, after a warm-up of W at the same concurrency.
// Prints one JSON line with the figures `dfns-signer bench --output json` prints
// (requests_per_second, p50_ms, p99_ms, cpu_ms_per_request from process.cpuUsage(), errors…).
//
// usage: DFNS_AUTH_TOKEN=… node bench.mjs BASE_URL CRED_ID KEY.pem N C WARMUP [NETWORK]
//
// The client and signer are made as the SDK's README and examples make them: a DfnsApiClient
// with an AsymmetricKeySigner holding the credential's PEM private key.

import { createRequire } from 'node:module';
import crypto from 'node:crypto';
import fs from 'node:fs';
import { performance } from 'node:perf_hooks';

const require = createRequire(import.meta.url);
const { DfnsApiClient } = require('@dfns/sdk');
const { AsymmetricKeySigner } = require('@dfns/sdk-keysigner');

function usage(why) {
  console.error(`error: ${why}`);
  console.error('  what to do: DFNS_AUTH_TOKEN=… node bench.mjs BASE_URL CRED_ID KEY.pem N C WARMUP [NETWORK]');
  process.exit(2);
}

const [baseUrl, credId, keyPath, n, c, w, network = 'EthereumSepolia'] = process.argv.slice(2);
const [requests, concurrency, warmup] = [n, c, w].map(Number);
if (!baseUrl || !credId || !keyPath || ![requests, concurrency, warmup].every(Number.isInteger)) {
  usage('missing or malformed arguments');
}
if (requests < 1 || concurrency < 1) usage('N and C must be at least 1');
const authToken = process.env.DFNS_AUTH_TOKEN || usage('DFNS_AUTH_TOKEN is not set');
const privateKey = fs.readFileSync(keyPath, 'utf8');

const details = crypto.createPrivateKey(privateKey);
const algorithm =
  details.asymmetricKeyType === 'ed25519'
    ? 'ed25519'
    : details.asymmetricKeyDetails?.namedCurve === 'prime256v1'
      ? 'p256'
      : details.asymmetricKeyType;

const signer = new AsymmetricKeySigner({ privateKey, credId });
const dfnsApi = new DfnsApiClient({ baseUrl, authToken, signer });

/// `count` requests, `concurrency` at a time.
async function load(count) {
  let next = 0;
  const latencies = [];
  let errors = 0;
  let firstError = null;
  async function worker() {
    while (next < count) {
      next += 1;
      const started = performance.now();
      try {
        await dfnsApi.wallets.createWallet({ body: { network } });
        latencies.push(performance.now() - started);
      } catch (e) {
        errors += 1;
        firstError ??= String(e?.message ?? e);
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  return { latencies, errors, firstError };
}

/// Nearest-rank percentile of sorted latencies (ms).
function percentile(sorted, q) {
  if (sorted.length === 0) return 0;
  const rank = Math.ceil(q * sorted.length);
  return sorted[Math.min(Math.max(rank, 1), sorted.length) - 1];
}

const warm = await load(warmup);
if (warmup > 0 && warm.latencies.length === 0) {
  console.error(`error: every warm-up request failed; the first: ${warm.firstError}`);
  process.exit(1);
}

const cpuBefore = process.cpuUsage();
const started = performance.now();
const timed = await load(requests);
const elapsedMs = performance.now() - started;
const cpu = process.cpuUsage(cpuBefore);

const sorted = timed.latencies.sort((a, b) => a - b);
const report = {
  runner: `@dfns/sdk ${require('@dfns/sdk/package.json').version} (node ${process.version})`,
  requests,
  concurrency,
  warmup,
  errors: timed.errors,
  warmup_errors: warm.errors,
  elapsed_s: elapsedMs / 1e3,
  requests_per_second: sorted.length / (elapsedMs / 1e3),
  p50_ms: percentile(sorted, 0.5),
  p99_ms: percentile(sorted, 0.99),
  cpu_ms_per_request: (cpu.user + cpu.system) / 1e3 / requests,
  algorithm,
};
if (timed.firstError) report.first_error = timed.firstError;
console.log(JSON.stringify(report));
process.exit(sorted.length === 0 ? 1 : 0);
