// Types for @dfns-signer/remote-signer: a CredentialSigner for @dfns/sdk 0.8.x whose signing
// happens in a `dfns-signer serve` service (POST {url}/v1/sign) rather than in this process.
import type { CredentialSigner, FirstFactorAssertion, UserActionChallenge } from '@dfns/sdk';

export interface RemoteSignerOptions {
  /** Base URL of the dfns-signer service, e.g. 'http://127.0.0.1:8470' (the SDK's baseUrl too). */
  url: string;
  /** Secret identifying this client to the service (sent as X-Dfns-Signer-Client). Never logged. */
  clientSecret: string;
  /** Name of the service key to sign with; omitted from the request when not given. */
  key?: string;
  /** Give up on the service after this long. Default 30000. */
  timeoutMs?: number;
}

/** A challenge as the service's /auth/action/init answers it: Dfns' challenge plus its approval. */
export type ServiceChallenge = UserActionChallenge & { dfnsSignerApproval: string };

export declare class RemoteSigner implements CredentialSigner<FirstFactorAssertion> {
  constructor(options: RemoteSignerOptions);
  /** The service URL, without a trailing slash. */
  readonly url: string;
  readonly key: string | undefined;
  readonly timeoutMs: number;
  /**
   * Sends the whole challenge to POST {url}/v1/sign and resolves to the service's firstFactor,
   * unchanged. Rejects with RemoteSignerError; a challenge without `dfnsSignerApproval` (one that
   * did not come through the service) is refused before any network call.
   */
  sign(challenge: UserActionChallenge): Promise<FirstFactorAssertion>;
  /** 'RemoteSigner(<url>[, key <key>])'; never contains the client secret. */
  toString(): string;
  toJSON(): { url: string; key: string | undefined; timeoutMs: number; clientSecret: '[redacted]' };
}

export declare class RemoteSignerError extends Error {
  readonly name: 'RemoteSignerError';
  /**
   * HTTP status of a refusal (a non-200 answer); undefined otherwise (local refusal, unreachable,
   * timeout, 200 without firstFactor).
   */
  readonly status: number | undefined;
  /** The service's error.message, when it sent one. */
  readonly serviceMessage: string | undefined;
  /** The service's error.fix, when it sent one. */
  readonly fix: string | undefined;
  /** The service's error.rule, when it sent one. */
  readonly rule: string | undefined;
}
