"""Creates a wallet through a running `dfns-signer serve`: the SDK talks to the service (base_url),
which passes /auth/action/init to Dfns and signs the challenge with its hardware key.
usage: DFNS_AUTH_TOKEN=... DFNS_SIGNER_CLIENT_SECRET=... python3 example.py   (needs dfns-sdk)"""
import os

from dfns_sdk import DfnsClient, DfnsClientConfig
from dfns_signer_remote import RemoteSigner

url = os.environ.get("DFNS_SIGNER_URL", "http://127.0.0.1:8470")
secret = os.environ["DFNS_SIGNER_CLIENT_SECRET"]
client = DfnsClient(DfnsClientConfig(
    auth_token=os.environ["DFNS_AUTH_TOKEN"],
    base_url=url,
    signer=RemoteSigner(url, secret),
    headers={"X-Dfns-Signer-Client": secret},  # the service knows the client from init on
))
print(client.wallets.create_wallet({"network": "EthereumSepolia"})["id"])
