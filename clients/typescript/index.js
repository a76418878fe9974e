// @dfns-signer/remote-signer: a CredentialSigner for the official Dfns TypeScript SDK
// (@dfns/sdk) that does not hold any key. It forwards each user-action challenge to a
// `dfns-signer serve` service (POST {url}/v1/sign), which holds the hardware credential and
// answers with the SDK's firstFactor assertion. Plain CommonJS, no dependencies, Node >= 18.
'use strict';

const util = require('node:util');

const DEFAULT_TIMEOUT_MS = 30_000;
const NOT_THROUGH_SERVICE =
  "this challenge did not come through the dfns-signer service: point the SDK's baseUrl at the service";

/** Raised for every failure: refused by the service, unreachable, timed out, or refused locally. */
class RemoteSignerError extends Error {
  constructor(message, { status, serviceMessage, fix, rule } = {}) {
    super(message);
    this.name = 'RemoteSignerError';
    this.status = status; // HTTP status of a refusal (non-200 answer), else undefined
    this.serviceMessage = serviceMessage;
    this.fix = fix;
    this.rule = rule;
  }
}

class RemoteSigner {
  // A private field: not enumerable, not reachable from outside, not shown by util.inspect.
  #clientSecret;

  constructor({ url, clientSecret, key, timeoutMs = DEFAULT_TIMEOUT_MS } = {}) {
    if (typeof url !== 'string' || url === '') throw new TypeError('RemoteSigner: url is required');
    new URL(url); // throws a TypeError on a malformed URL; the URL holds no secret
    if (typeof clientSecret !== 'string' || clientSecret === '') {
      throw new TypeError('RemoteSigner: clientSecret is required');
    }
    if (key !== undefined && (typeof key !== 'string' || key === '')) {
      throw new TypeError('RemoteSigner: key must be a non-empty string when given');
    }
    if (!(Number.isFinite(timeoutMs) && timeoutMs > 0)) {
      throw new TypeError('RemoteSigner: timeoutMs must be a positive number');
    }
    this.url = url.replace(/\/+$/, '');
    this.key = key;
    this.timeoutMs = timeoutMs;
    this.#clientSecret = clientSecret;
  }

  /** CredentialSigner.sign: returns the service's firstFactor exactly as received. */
  async sign(challenge) {
    // Refuse before any network call: without the service's approval the challenge came
    // straight from Dfns, and the service would refuse it anyway.
    if (challenge === null || typeof challenge !== 'object' ||
        typeof challenge.dfnsSignerApproval !== 'string' || challenge.dfnsSignerApproval === '') {
      throw new RemoteSignerError(NOT_THROUGH_SERVICE);
    }
    const body = { challenge };
    if (this.key !== undefined) body.key = this.key;

    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), this.timeoutMs);
    try {
      let res, text;
      try {
        res = await fetch(`${this.url}/v1/sign`, {
          method: 'POST',
          headers: { 'Content-Type': 'application/json', 'X-Dfns-Signer-Client': this.#clientSecret },
          body: JSON.stringify(body),
          // Never follow a redirect: it would carry the client secret header elsewhere.
          redirect: 'manual',
          signal: controller.signal,
        });
        text = await res.text(); // still under the timeout
      } catch (e) {
        if (controller.signal.aborted) {
          throw this.#error(`the dfns-signer service at ${this.url} did not answer within ${this.timeoutMs} ms`);
        }
        // Node's fetch says only "fetch failed"; the reason (ECONNREFUSED, ...) is in e.cause.
        const why = (e.cause && (e.cause.code || e.cause.message)) || e.message;
        throw this.#error(`could not reach the dfns-signer service at ${this.url}: ${why}`);
      }
      let json;
      try {
        json = JSON.parse(text);
      } catch {
        json = undefined;
      }
      if (res.status === 200) {
        const firstFactor = json && json.firstFactor;
        if (firstFactor === null || typeof firstFactor !== 'object') {
          throw this.#error(`the dfns-signer service at ${this.url} answered 200 without a firstFactor`);
        }
        return firstFactor;
      }
      throw this.#refusal(res.status, json, text);
    } finally {
      clearTimeout(timer);
    }
  }

  // Build the error for a non-200 answer from {"error": {"message", "fix", "rule"}}; any of it
  // may be missing, and a proxy in between may answer with a non-JSON body (e.g. a 502 page).
  #refusal(status, json, text) {
    const err = json && typeof json === 'object' && json.error && typeof json.error === 'object'
      ? json.error
      : {};
    const str = (v) => (typeof v === 'string' && v !== '' ? v : undefined);
    const serviceMessage = str(err.message);
    const fix = str(err.fix);
    const rule = str(err.rule);
    let message = `dfns-signer service refused to sign (HTTP ${status})`;
    if (serviceMessage) message += `: ${serviceMessage}`;
    else if (json === undefined) message += `: non-JSON answer: ${snippet(text)}`;
    if (fix) message += `; fix: ${fix}`;
    if (rule) message += ` [rule: ${rule}]`;
    return this.#error(message, { status, serviceMessage, fix, rule });
  }

  // Every error goes through here: whatever the service or a proxy echoed, the client secret
  // is cut out of the text before it can reach a log.
  #error(message, fields = {}) {
    const redact = (s) => (typeof s === 'string' ? s.split(this.#clientSecret).join('[redacted]') : s);
    return new RemoteSignerError(redact(message), {
      status: fields.status,
      serviceMessage: redact(fields.serviceMessage),
      fix: redact(fields.fix),
      rule: redact(fields.rule),
    });
  }

  toString() {
    return `RemoteSigner(${this.url}${this.key !== undefined ? `, key ${this.key}` : ''})`;
  }

  toJSON() {
    return { url: this.url, key: this.key, timeoutMs: this.timeoutMs, clientSecret: '[redacted]' };
  }

  [util.inspect.custom]() {
    return `RemoteSigner { url: ${util.inspect(this.url)}, key: ${util.inspect(this.key)}, ` +
      `timeoutMs: ${this.timeoutMs}, clientSecret: [redacted] }`;
  }
}

// First 200 characters of a body, on one line, for an error message.
function snippet(text) {
  const one = String(text).replace(/\s+/g, ' ').trim();
  if (one === '') return '(empty body)';
  return one.length > 200 ? `${one.slice(0, 200)}…` : one;
}

module.exports = { RemoteSigner, RemoteSignerError };
