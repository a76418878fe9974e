// Creates a wallet through a running `dfns-signer serve`: the SDK talks to the service (baseUrl),
// which passes /auth/action/init to Dfns and signs the challenge with its hardware key.
// usage: DFNS_AUTH_TOKEN=... DFNS_SIGNER_CLIENT_SECRET=... node example.js   (needs @dfns/sdk installed)
const { DfnsApiClient } = require('@dfns/sdk');
const { RemoteSigner } = require('@dfns-signer/remote-signer');

const url = process.env.DFNS_SIGNER_URL || 'http://127.0.0.1:8470';
const signer = new RemoteSigner({ url, clientSecret: process.env.DFNS_SIGNER_CLIENT_SECRET });
const dfns = new DfnsApiClient({ baseUrl: url, authToken: process.env.DFNS_AUTH_TOKEN, signer });

dfns.wallets.createWallet({ body: { network: 'EthereumSepolia' } })
  .then((wallet) => console.log(wallet.id))
  .catch((e) => { console.error(String(e)); process.exitCode = 1; });
