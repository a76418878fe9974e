// Unit tests for RemoteSigner against a local fake of the dfns-signer service's POST /v1/sign
// (node:http on an ephemeral port). Run with `npm test` (node --test). The last test drives the
// real @dfns/sdk through the fake when the SDK can be found, and is skipped otherwise.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const path = require('node:path');
const util = require('node:util');
const { RemoteSigner, RemoteSignerError } = require('..');

const SECRET = 'cs_test_9f8e7d6c5b4a-very-secret';

const CHALLENGE = {
  supportedCredentialKinds: [{ kind: 'Key', factor: 'first', requiresSecondFactor: false }],
  challenge: 'Y2hhbGxlbmdl',
  challengeIdentifier: 'cid-123',
  externalAuthenticationUrl: '',
  allowCredentials: { key: [{ type: 'public-key', id: 'cred-1' }], webauthn: [] },
  userVerification: 'required',
  dfnsSignerApproval: 'approval-token',
};

// Extra fields on purpose: the adapter must hand back firstFactor untouched.
const FIRST_FACTOR = {
  kind: 'Key',
  credentialAssertion: { credId: 'cred-1', clientData: 'eyJ0eXBlIjoia2V5LmdldCJ9', signature: 'c2ln', algorithm: 'ES256' },
  extra: { kept: true },
};

// Start a fake service. `handler(req, body, res)` answers; every request is recorded.
async function fakeService(handler) {
  const requests = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      requests.push({ method: req.method, url: req.url, headers: req.headers, body });
      handler(req, body, res);
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${server.address().port}`;
  const close = () => {
    server.closeAllConnections(); // a hanging request (timeout test) would keep close() waiting
    return new Promise((resolve) => server.close(resolve));
  };
  return { url, requests, close };
}

const json = (res, status, value) => {
  res.writeHead(status, { 'Content-Type': 'application/json' });
  res.end(JSON.stringify(value));
};

// The secret must appear in none of the error's text.
function assertNoSecret(err) {
  const texts = [err.message, err.stack, String(err), util.inspect(err, { showHidden: true, depth: null }),
    JSON.stringify(err), err.serviceMessage, err.fix, err.rule];
  for (const t of texts) assert.ok(!String(t).includes(SECRET), `secret leaked in: ${t}`);
}

test('posts the whole challenge with the secret header and returns firstFactor verbatim', async (t) => {
  const svc = await fakeService((req, body, res) => json(res, 200, { firstFactor: FIRST_FACTOR }));
  t.after(svc.close);
  const signer = new RemoteSigner({ url: `${svc.url}/`, clientSecret: SECRET }); // trailing slash is fine

  const got = await signer.sign(CHALLENGE);

  assert.deepEqual(got, FIRST_FACTOR);
  assert.equal(svc.requests.length, 1);
  const [r] = svc.requests;
  assert.equal(r.method, 'POST');
  assert.equal(r.url, '/v1/sign');
  assert.equal(r.headers['content-type'], 'application/json');
  assert.equal(r.headers['x-dfns-signer-client'], SECRET);
  assert.deepEqual(JSON.parse(r.body), { challenge: CHALLENGE }); // no "key" when none configured
});

test('sends "key" when one is configured', async (t) => {
  const svc = await fakeService((req, body, res) => json(res, 200, { firstFactor: FIRST_FACTOR }));
  t.after(svc.close);
  const signer = new RemoteSigner({ url: svc.url, clientSecret: SECRET, key: 'treasury' });

  await signer.sign(CHALLENGE);

  assert.deepEqual(JSON.parse(svc.requests[0].body), { challenge: CHALLENGE, key: 'treasury' });
});

test('403 with a JSON error: status, message, fix and rule in the error, never the secret', async (t) => {
  const svc = await fakeService((req, body, res) =>
    json(res, 403, { error: { message: 'policy refused this action', fix: 'ask an admin to allow wallets', rule: 'no-wallets' } }));
  t.after(svc.close);
  const signer = new RemoteSigner({ url: svc.url, clientSecret: SECRET });

  const err = await signer.sign(CHALLENGE).then(() => assert.fail('should have thrown'), (e) => e);

  assert.ok(err instanceof RemoteSignerError);
  assert.equal(err.status, 403);
  assert.equal(err.serviceMessage, 'policy refused this action');
  assert.equal(err.fix, 'ask an admin to allow wallets');
  assert.equal(err.rule, 'no-wallets');
  assert.match(err.message, /403/);
  assert.match(err.message, /policy refused this action/);
  assert.match(err.message, /ask an admin to allow wallets/);
  assert.match(err.message, /no-wallets/);
  assertNoSecret(err);
});

test('403 whose body echoes the secret: the secret is cut out of the error', async (t) => {
  const svc = await fakeService((req, body, res) =>
    json(res, 403, { error: { message: `unknown client ${req.headers['x-dfns-signer-client']}`, fix: 'check the secret' } }));
  t.after(svc.close);
  const signer = new RemoteSigner({ url: svc.url, clientSecret: SECRET });

  const err = await signer.sign(CHALLENGE).then(() => assert.fail('should have thrown'), (e) => e);

  assert.match(err.message, /unknown client \[redacted\]/);
  assertNoSecret(err);
});

test('502 with a non-JSON body: status and the body start in the error, never the secret', async (t) => {
  const svc = await fakeService((req, body, res) => {
    res.writeHead(502, { 'Content-Type': 'text/html' });
    res.end('<html><body>502 Bad Gateway</body></html>');
  });
  t.after(svc.close);
  const signer = new RemoteSigner({ url: svc.url, clientSecret: SECRET });

  const err = await signer.sign(CHALLENGE).then(() => assert.fail('should have thrown'), (e) => e);

  assert.ok(err instanceof RemoteSignerError);
  assert.equal(err.status, 502);
  assert.match(err.message, /HTTP 502/);
  assert.match(err.message, /502 Bad Gateway/);
  assert.equal(err.serviceMessage, undefined);
  assertNoSecret(err);
});

test('a redirect is not followed (it would carry the secret header elsewhere)', async (t) => {
  const elsewhere = await fakeService((req, body, res) => json(res, 200, { firstFactor: FIRST_FACTOR }));
  t.after(elsewhere.close);
  const svc = await fakeService((req, body, res) => {
    res.writeHead(302, { Location: `${elsewhere.url}/v1/sign` });
    res.end();
  });
  t.after(svc.close);
  const signer = new RemoteSigner({ url: svc.url, clientSecret: SECRET });

  await assert.rejects(signer.sign(CHALLENGE), (e) => e instanceof RemoteSignerError && e.status === 302);
  assert.equal(elsewhere.requests.length, 0);
});

test('200 without firstFactor is an error, not a silent undefined', async (t) => {
  const svc = await fakeService((req, body, res) => json(res, 200, { something: 'else' }));
  t.after(svc.close);
  const signer = new RemoteSigner({ url: svc.url, clientSecret: SECRET });

  await assert.rejects(signer.sign(CHALLENGE), (e) => e instanceof RemoteSignerError && /without a firstFactor/.test(e.message));
});

test('refuses locally, before any request, a challenge without dfnsSignerApproval', async (t) => {
  const svc = await fakeService((req, body, res) => json(res, 200, { firstFactor: FIRST_FACTOR }));
  t.after(svc.close);
  const signer = new RemoteSigner({ url: svc.url, clientSecret: SECRET });
  const { dfnsSignerApproval, ...straightFromDfns } = CHALLENGE;

  const err = await signer.sign(straightFromDfns).then(() => assert.fail('should have thrown'), (e) => e);

  assert.ok(err instanceof RemoteSignerError);
  assert.equal(err.status, undefined);
  assert.match(err.message, /did not come through the dfns-signer service: point the SDK's baseUrl at the service/);
  assert.equal(svc.requests.length, 0);
});

test('gives up after timeoutMs', async (t) => {
  const svc = await fakeService(() => {}); // never answers
  t.after(svc.close);
  const signer = new RemoteSigner({ url: svc.url, clientSecret: SECRET, timeoutMs: 200 });

  const started = Date.now();
  const err = await signer.sign(CHALLENGE).then(() => assert.fail('should have thrown'), (e) => e);

  assert.ok(err instanceof RemoteSignerError);
  assert.match(err.message, /did not answer within 200 ms/);
  assert.ok(Date.now() - started < 5000);
  assertNoSecret(err);
});

test('unreachable service: a clear error without the secret', async () => {
  // Grab a free port, then close it so nothing listens there.
  const svc = await fakeService(() => {});
  await svc.close();
  const signer = new RemoteSigner({ url: svc.url, clientSecret: SECRET });

  const err = await signer.sign(CHALLENGE).then(() => assert.fail('should have thrown'), (e) => e);

  assert.match(err.message, /could not reach the dfns-signer service/);
  assertNoSecret(err);
});

test('the secret is not in inspect, toString or JSON output', () => {
  const signer = new RemoteSigner({ url: 'http://127.0.0.1:8470', clientSecret: SECRET, key: 'k1' });
  for (const out of [util.inspect(signer), util.inspect(signer, { showHidden: true, depth: null }),
    String(signer), `${signer}`, JSON.stringify(signer), util.format('%o', signer), util.format('%j', signer),
    Object.keys(signer).join(',')]) {
    assert.ok(!out.includes(SECRET), `secret leaked in: ${out}`);
  }
  assert.match(util.inspect(signer), /clientSecret: \[redacted\]/);
});

test('constructor checks its options without echoing the secret', () => {
  assert.throws(() => new RemoteSigner({ clientSecret: SECRET }), /url is required/);
  assert.throws(() => new RemoteSigner({ url: 'http://127.0.0.1:8470' }), /clientSecret is required/);
  assert.throws(() => new RemoteSigner({ url: 'http://127.0.0.1:8470', clientSecret: SECRET, timeoutMs: 0 }), /timeoutMs/);
  assert.throws(() => new RemoteSigner({ url: 'not a url', clientSecret: SECRET }), TypeError);
});

// ---- end to end with the real SDK, when it is installed here or in the repo's tests/ts-sdk ----

function findSdk() {
  for (const from of [__dirname, path.join(__dirname, '../../../tests/ts-sdk')]) {
    try {
      return require(require.resolve('@dfns/sdk', { paths: [from] }));
    } catch {}
  }
  return undefined;
}
const sdk = findSdk();

test('DfnsApiClient with baseUrl at the service creates a wallet through RemoteSigner',
  { skip: sdk ? false : '@dfns/sdk not installed' }, async (t) => {
    // A fake of the whole service: init passes through (here: answered) with the approval added,
    // /v1/sign signs, /auth/action and /wallets answer like Dfns.
    const svc = await fakeService((req, body, res) => {
      if (req.url === '/auth/action/init') return json(res, 200, CHALLENGE);
      if (req.url === '/v1/sign') return json(res, 200, { firstFactor: FIRST_FACTOR });
      if (req.url === '/auth/action') return json(res, 200, { userAction: 'ua-token' });
      if (req.url === '/wallets') return json(res, 200, { id: 'wa-1', network: 'EthereumSepolia' });
      json(res, 404, { error: { message: 'not found' } });
    });
    t.after(svc.close);
    const dfns = new sdk.DfnsApiClient({
      baseUrl: svc.url,
      authToken: 'test-token',
      signer: new RemoteSigner({ url: svc.url, clientSecret: SECRET }),
    });

    const wallet = await dfns.wallets.createWallet({ body: { network: 'EthereumSepolia' } });

    assert.equal(wallet.id, 'wa-1');
    assert.deepEqual(svc.requests.map((r) => r.url), ['/auth/action/init', '/v1/sign', '/auth/action', '/wallets']);
    assert.deepEqual(JSON.parse(svc.requests[1].body), { challenge: CHALLENGE });
    assert.deepEqual(JSON.parse(svc.requests[2].body), { challengeIdentifier: 'cid-123', firstFactor: FIRST_FACTOR });
    assert.equal(svc.requests[3].headers['x-dfns-useraction'], 'ua-token');
  });

test('DfnsApiClient: a refusal from the service reaches the caller as RemoteSignerError',
  { skip: sdk ? false : '@dfns/sdk not installed' }, async (t) => {
    const svc = await fakeService((req, body, res) => {
      if (req.url === '/auth/action/init') return json(res, 200, CHALLENGE);
      json(res, 403, { error: { message: 'policy refused this action', fix: 'ask an admin' } });
    });
    t.after(svc.close);
    const dfns = new sdk.DfnsApiClient({
      baseUrl: svc.url,
      authToken: 'test-token',
      signer: new RemoteSigner({ url: svc.url, clientSecret: SECRET }),
    });

    await assert.rejects(dfns.wallets.createWallet({ body: { network: 'EthereumSepolia' } }),
      (e) => e instanceof RemoteSignerError && e.status === 403 && /policy refused this action/.test(e.message));
    assert.deepEqual(svc.requests.map((r) => r.url), ['/auth/action/init', '/v1/sign']);
  });
