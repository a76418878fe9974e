#!/usr/bin/env bash
# Installs, on Debian, the system packages dfns-signer's demo and tests need, when missing.
# Needs root for apt-get (CI and a fresh machine run as root); prints what it would install
# otherwise. The Rust toolchain itself must already be there (rustup; Debian's cargo is too old).
#
#   hsm-config/install-deps.sh          everything the test suite needs
#   hsm-config/install-deps.sh demo     only what the demo needs (SoftHSM)
set -euo pipefail

want=(softhsm2 opensc)
if [ "${1:-all}" != demo ]; then
  # pcscd + vpcd: the virtual PIV card; libpcsclite-dev + pkg-config: the `pcsc` crate's build;
  # yubico-piv-tool + ykcs11: proof the virtual card is a faithful PIV card; libssl-dev: the
  # official dfns-sdk-rust crate (native-tls) for the adapter test; nodejs + npm: the official
  # TypeScript SDK against our simulator; python3 + python3-venv (venv, and the pip it seeds
  # venvs with): the official Python SDK against our simulator, from tests/py-sdk's lock.
  want+=(pcscd vsmartcard-vpcd yubico-piv-tool ykcs11 libpcsclite-dev pkg-config libssl-dev)
  # p11-kit-modules: p11-kit's proxy module, the default when a key URI names no module.
  want+=(p11-kit-modules)
  # curl: the README's signing-service walk-through, run as written by tests/service_cli.rs.
  command -v curl >/dev/null 2>&1 || want+=(curl)
  command -v node >/dev/null 2>&1 || want+=(nodejs)
  command -v npm >/dev/null 2>&1 || want+=(npm)
  # Debian's python3 lacks ensurepip (so `python3 -m venv` fails) until python3-venv is there.
  python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || want+=(python3 python3-venv)
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "error: cargo not found: install the Rust toolchain (https://rustup.rs), Rust 1.89 or newer" >&2
  exit 1
fi

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "error: missing Debian packages: ${missing[*]}; run as root, or: sudo apt-get install ${missing[*]}" >&2
  exit 1
fi
echo "installing: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
