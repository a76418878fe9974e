// Drives the official Dfns TypeScript SDK (@dfns/sdk + @dfns/sdk-keysigner, pinned in
// package-lock.json) against a running dfns-signer simulator, and prints one JSON object with
// what happened at each step. tests/ts_sdk.rs starts the simulator, runs this script and
// asserts on the output; the script itself never decides pass/fail beyond recording facts.
//
// usage: node conformance.mjs BASE_URL AUTH_TOKEN CRED_ID [USERNAME]
//   the root credential's private key is tests/fixtures/keys/p256.pem.
//
// To show that the simulator refuses replayed and tampered user actions, the fetch function
// the SDK uses (cross-fetch) is wrapped *before* the SDK is loaded: the wrapper can replay the
// previous X-DFNS-USERACTION on the next signed request, or change the body after signing.

import { createRequire } from 'node:module';
import crypto from 'node:crypto';
import fs from 'node:fs';

const require = createRequire(import.meta.url);
const [baseUrl, authToken, credId, username] = process.argv.slice(2);
if (!baseUrl || !authToken || !credId) {
  console.error('usage: node conformance.mjs BASE_URL AUTH_TOKEN CRED_ID [USERNAME]');
  process.exit(2);
}

// ---- fetch wrapper: must be installed before @dfns/sdk captures cross-fetch's `fetch` ----
const crossFetch = require('cross-fetch');
const realFetch = crossFetch.fetch;
const tap = { mode: 'pass', lastUserAction: null, seen: [] };
crossFetch.fetch = function wrappedFetch(resource, options = {}) {
  const headers = { ...(options.headers ?? {}) };
  const url = new URL(resource.toString());
  const ua = headers['x-dfns-useraction'];
  if (ua) {
    if (tap.mode === 'replay' && tap.lastUserAction) {
      headers['x-dfns-useraction'] = tap.lastUserAction;
      tap.mode = 'pass';
    } else if (tap.mode === 'tamper-body' && typeof options.body === 'string') {
      options = { ...options, body: options.body.replace('"tampered-before"', '"tampered-after"') };
      tap.mode = 'pass';
    } else {
      tap.lastUserAction = ua;
    }
  }
  tap.seen.push(`${options.method ?? 'GET'} ${url.pathname}`);
  return realFetch.call(this, resource, { ...options, headers });
};

const { DfnsApiClient, DfnsAuthenticator, DfnsDelegatedApiClient, DfnsError } = require('@dfns/sdk');
const { AsymmetricKeySigner } = require('@dfns/sdk-keysigner');

const rootKeyPem = fs.readFileSync(new URL('../fixtures/keys/p256.pem', import.meta.url), 'utf8');
const b64url = (buf) => Buffer.from(buf).toString('base64url');
const clientFor = (token, signer) => new DfnsApiClient({ baseUrl, authToken: token, signer });
const rootSigner = new AsymmetricKeySigner({ privateKey: rootKeyPem, credId });
const root = clientFor(authToken, rootSigner);

const results = {};
async function step(name, fn) {
  try {
    results[name] = { ok: true, ...(await fn()) };
  } catch (e) {
    results[name] = {
      ok: false,
      status: e instanceof DfnsError ? e.httpStatus : null,
      message: String(e?.message ?? e),
    };
  }
}

/// A fresh key pair; the public key as SPKI PEM (64-character lines, what Dfns expects).
function newKey(type) {
  const { privateKey, publicKey } =
    type === 'ec' ? crypto.generateKeyPairSync('ec', { namedCurve: 'prime256v1' }) : crypto.generateKeyPairSync(type);
  return { privateKey, publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }) };
}

/// The Key credential attestation, built as @dfns/sdk-browser's BrowserKeySigner.create does.
function keyAttestation(challenge, key, newCredId) {
  const clientData = Buffer.from(JSON.stringify({ type: 'key.create', challenge: challenge.challenge }));
  const clientDataHash = crypto.createHash('sha256').update(clientData).digest('hex');
  const fingerprint = JSON.stringify({ clientDataHash, publicKey: key.publicKeyPem });
  const signature = crypto.sign(undefined, Buffer.from(fingerprint), key.privateKey).toString('hex');
  return {
    credentialKind: 'Key',
    credentialInfo: {
      credId: newCredId,
      clientData: b64url(clientData),
      attestationData: b64url(JSON.stringify({ publicKey: key.publicKeyPem, signature })),
    },
  };
}

let walletId;
const hash = '0x' + crypto.createHash('sha256').update('dfns-signer').digest('hex');

await step('createWallet', async () => {
  const body = { network: 'EthereumSepolia', name: 'Trésorerie ✓ "q" / <tag>', externalId: 'ts-ext-1' };
  const wallet = await root.wallets.createWallet({ body });
  const again = await root.wallets.createWallet({ body });
  walletId = wallet.id;
  return { walletId: wallet.id, name: wallet.name, signingKey: wallet.signingKey, idempotentId: again.id };
});

await step('readWallets', async () => {
  const got = await root.wallets.getWallet({ walletId });
  const page = await root.wallets.listWallets({ query: { limit: 10 } });
  return { gotId: got.id, listed: page.items.map((w) => w.id) };
});

await step('tagWallet', async () => {
  await root.wallets.tagWallet({ walletId, body: { tags: ['t1', 'ü'] } });
  await root.wallets.untagWallet({ walletId, body: { tags: ['t1'] } });
  const got = await root.wallets.getWallet({ walletId });
  return { tags: got.tags };
});

await step('generateSignature', async () => {
  const sig = await root.wallets.generateSignature({ walletId, body: { kind: 'Hash', hash } });
  const got = await root.wallets.getSignature({ walletId, signatureId: sig.id });
  return { hash, status: sig.status, signature: sig.signature, gotId: got.id };
});

await step('registerKeyCredential', async () => {
  const key = newKey('ec');
  const newCredId = b64url(crypto.randomBytes(32));
  const challenge = await root.auth.createCredentialChallenge({ body: { kind: 'Key' } });
  const attestation = keyAttestation(challenge, key, newCredId);
  const credential = await root.auth.createCredential({
    body: { ...attestation, challengeIdentifier: challenge.challengeIdentifier, credentialName: 'ts-sdk-key' },
  });
  // The new credential signs a user action of its own.
  const withNewKey = clientFor(authToken, new AsymmetricKeySigner({ privateKey: key.privateKey, credId: newCredId }));
  const wallet = await withNewKey.wallets.createWallet({ body: { network: 'Solana' } });
  const list = await root.auth.listCredentials();
  return {
    credentialId: credential.credentialId,
    newCredId,
    walletWithNewKey: wallet.id,
    walletCurve: wallet.signingKey?.curve,
    listed: list.items.map((c) => c.credentialId),
  };
});

await step('registerBadAttestation', async () => {
  const key = newKey('ec');
  const other = newKey('ec');
  const challenge = await root.auth.createCredentialChallenge({ body: { kind: 'Key' } });
  // Signed by another key than the one it names.
  const attestation = keyAttestation(challenge, { ...key, privateKey: other.privateKey }, b64url(crypto.randomBytes(32)));
  await root.auth.createCredential({
    body: { ...attestation, challengeIdentifier: challenge.challengeIdentifier, credentialName: 'bad' },
  });
  return {};
});

await step('serviceAccount', async () => {
  const key = newKey('ed25519');
  const sa = await root.auth.createServiceAccount({ body: { name: 'ts-sa', publicKey: key.publicKeyPem, daysValid: 30 } });
  const token = sa.accessTokens[0].accessToken;
  const saCredId = sa.accessTokens[0].credId;
  const asSa = clientFor(token, new AsymmetricKeySigner({ privateKey: key.privateKey, credId: saCredId }));
  const wallet = await asSa.wallets.createWallet({ body: { network: 'Bitcoin' } });
  const list = await root.auth.listServiceAccounts();
  return {
    userId: sa.userInfo.userId,
    isServiceAccount: sa.userInfo.isServiceAccount,
    walletBySa: wallet.id,
    listed: list.items.map((s) => s.userInfo.userId),
  };
});

await step('personalAccessToken', async () => {
  const key = newKey('ec');
  const pat = await root.auth.createPersonalAccessToken({ body: { name: 'ts-pat', publicKey: key.publicKeyPem, secondsValid: 3600 } });
  const asPat = clientFor(pat.accessToken, new AsymmetricKeySigner({ privateKey: key.privateKey, credId: pat.credId }));
  const wallet = await asPat.wallets.createWallet({ body: { network: 'Polygon' } });
  return { kind: pat.kind, walletByPat: wallet.id };
});

await step('webhook', async () => {
  const hook = await root.webhooks.createWebhook({ body: { url: 'https://example.com/hook', events: ['*'] } });
  const deleted = await root.webhooks.deleteWebhook({ webhookId: hook.id });
  return { deleted };
});

// Delegated signing: the challenge goes to a signer elsewhere (a person with a hardware key,
// say), the signed challenge comes back, and the request completes.
await step('delegatedSigning', async () => {
  const delegated = new DfnsDelegatedApiClient({ baseUrl, authToken });
  const request = { body: { network: 'EthereumSepolia', name: 'delegated' } };
  const challenge = await delegated.wallets.createWalletInit(request);
  const firstFactor = await rootSigner.sign(challenge);
  const wallet = await delegated.wallets.createWalletComplete(request, {
    challengeIdentifier: challenge.challengeIdentifier,
    firstFactor,
  });
  return { walletId: wallet.id, name: wallet.name };
});

if (username) {
  await step('login', async () => {
    const orgId = JSON.parse(Buffer.from(authToken.split('.')[1], 'base64url'))['https://custom/app_metadata'].orgId;
    const auth = new DfnsAuthenticator({ baseUrl, signer: rootSigner });
    const { token } = await auth.login({ username, orgId });
    const asUser = clientFor(token, rootSigner);
    const page = await asUser.wallets.listWallets({});
    const sameOrg = JSON.parse(Buffer.from(token.split('.')[1], 'base64url'))['https://custom/app_metadata'].orgId === orgId;
    await asUser.auth.logout();
    let afterLogout = null;
    try {
      await asUser.wallets.listWallets({});
    } catch (e) {
      afterLogout = e instanceof DfnsError ? e.httpStatus : String(e);
    }
    return { walletsSeen: page.items.length, sameOrg, afterLogout };
  });
}

// ---- faults the Rust test configured: 202 on PUT /wallets/{id}, 429 on POST /webhooks/{id}/ping ----
await step('policyPending', async () => {
  try {
    await root.wallets.updateWallet({ walletId, body: { name: 'renamed' } });
    return { thrown: false };
  } catch (e) {
    return { thrown: true, isPolicyPendingError: e?.isPolicyPendingError ?? e?.constructor?.name === 'PolicyPendingError', httpStatus: e.httpStatus, approvalStatus: e.context?.status };
  }
});

await step('rateLimited', async () => {
  const hook = await root.webhooks.createWebhook({ body: { url: 'https://example.com/hook2', events: ['*'] } });
  try {
    await root.webhooks.pingWebhook({ webhookId: hook.id });
    return { thrown: false };
  } catch (e) {
    return { thrown: true, httpStatus: e.httpStatus, message: e.message, retryAfter: e.context?.headers?.get?.('retry-after') ?? null };
  }
});

// ---- refusals ----
await step('replayedUserAction', async () => {
  await root.wallets.createWallet({ body: { network: 'EthereumSepolia', name: 'first' } });
  tap.mode = 'replay';
  await root.wallets.createWallet({ body: { network: 'EthereumSepolia', name: 'first' } });
  return {};
});

await step('tamperedBody', async () => {
  tap.mode = 'tamper-body';
  await root.wallets.createWallet({ body: { network: 'EthereumSepolia', name: 'tampered-before' } });
  return {};
});

await step('wrongKeyForCredential', async () => {
  const impostor = new AsymmetricKeySigner({ privateKey: newKey('ec').privateKey, credId });
  await clientFor(authToken, impostor).wallets.createWallet({ body: { network: 'EthereumSepolia' } });
  return {};
});

await step('afterRefusals', async () => {
  const page = await root.wallets.listWallets({});
  return { names: page.items.map((w) => w.name ?? null) };
});

console.log(JSON.stringify({ sdk: require('@dfns/sdk/package.json').version, results, requests: tap.seen.length }));
