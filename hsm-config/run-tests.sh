#!/usr/bin/env bash
# The whole test suite, from a fresh clone on Debian (as root): installs what is missing, then runs
# every test — unit, conformance with the official SDK's vectors and transcripts, client, CLI,
# simulator, the official TypeScript SDK against the simulator, SoftHSM (PKCS#11) and the virtual
# PIV card on pcscd. Tests that need a device start it themselves and never skip here.
set -euo pipefail
cd "$(dirname "$0")/.."
hsm-config/install-deps.sh
# Library, binary, integration and doc tests (examples are built too).
cargo test --locked --all-features
