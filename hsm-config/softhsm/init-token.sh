#!/usr/bin/env bash
# Creates a throw-away SoftHSM token with the credential keys dfns-signer's tests and demo use.
#
#   hsm-config/softhsm/init-token.sh DIR
#   eval "$(hsm-config/softhsm/init-token.sh /tmp/dfns-hsm)"
#
# DIR gets softhsm2.conf (from softhsm2.conf.template) and tokens/. Running it again on the same
# DIR with another TOKEN_LABEL adds a token beside the first ones; the same label is refused.
# On stdout: only `export ...` lines and comments, so that the output can be eval'ed.
# Progress goes to stderr.
#
# Environment (defaults are for throw-away test tokens only; never use them for real keys):
#   TOKEN_LABEL  token label                                  (default: dfns-signer)
#   SO_PIN       security officer PIN                         (default: 12345678)
#   USER_PIN     user PIN                                     (default: 123456)
#   KEYS         key pairs to generate, space separated, any of
#                p256 secp256k1 ed25519 rsa2048               (default: all four)
#   MODULE       the SoftHSM PKCS#11 module  (default: $DFNS_SIGNER_PKCS11_MODULE,
#                                              else /usr/lib/softhsm/libsofthsm2.so)
#
# Keys (private: sensitive, never extractable, generated on the token; public: same label/id):
#   label p256       id 01  EC prime256v1
#   label secp256k1  id 02  EC secp256k1
#   label ed25519    id 03  EC edwards25519
#   label rsa2048    id 04  RSA 2048
set -euo pipefail

usage() { echo "usage: $0 DIR   (see the comments at the top of this script)" >&2; exit 2; }
[ $# -eq 1 ] || usage
DIR=$1
TOKEN_LABEL=${TOKEN_LABEL:-dfns-signer}
SO_PIN=${SO_PIN:-12345678}
USER_PIN_DEFAULT=123456
USER_PIN=${USER_PIN:-$USER_PIN_DEFAULT}
KEYS=${KEYS-p256 secp256k1 ed25519 rsa2048}
MODULE=${MODULE:-${DFNS_SIGNER_PKCS11_MODULE:-/usr/lib/softhsm/libsofthsm2.so}}
HERE=$(cd "$(dirname "$0")" && pwd)

for tool in softhsm2-util pkcs11-tool; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "error: $tool not found; install it: apt-get install softhsm2 opensc" >&2
    exit 1
  fi
done
if [ ! -f "$MODULE" ]; then
  echo "error: PKCS#11 module $MODULE not found; install softhsm2 or set MODULE" >&2
  exit 1
fi

mkdir -p "$DIR/tokens"
DIR=$(cd "$DIR" && pwd)
CONF=$DIR/softhsm2.conf
if [ ! -f "$CONF" ]; then
  sed "s|@TOKENDIR@|$DIR/tokens|" "$HERE/softhsm2.conf.template" > "$CONF"
fi
export SOFTHSM2_CONF=$CONF

if softhsm2-util --show-slots 2>/dev/null | grep -q "Label: *$TOKEN_LABEL *\$"; then
  echo "error: a token labelled '$TOKEN_LABEL' already exists in $DIR/tokens; choose another TOKEN_LABEL or remove $DIR" >&2
  exit 1
fi

echo "creating token '$TOKEN_LABEL' in $DIR/tokens" >&2
softhsm2-util --init-token --free --label "$TOKEN_LABEL" --so-pin "$SO_PIN" --pin "$USER_PIN" >&2

p11() { pkcs11-tool --module "$MODULE" --token-label "$TOKEN_LABEL" --login --pin "$USER_PIN" "$@"; }
for key in $KEYS; do
  case $key in
    p256)      type=EC:prime256v1;   id=01 ;;
    secp256k1) type=EC:secp256k1;    id=02 ;;
    ed25519)   type=EC:edwards25519; id=03 ;;
    rsa2048)   type=rsa:2048;        id=04 ;;
    *) echo "error: unknown key '$key' in KEYS (expected p256 secp256k1 ed25519 rsa2048)" >&2; exit 2 ;;
  esac
  echo "generating $key (id $id)" >&2
  p11 --keypairgen --key-type "$type" --label "$key" --id "$id" --usage-sign --sensitive >/dev/null
done

echo "# SoftHSM token '$TOKEN_LABEL' in $DIR"
echo "export SOFTHSM2_CONF=$CONF"
echo "export DFNS_SIGNER_PKCS11_MODULE=$MODULE"
if [ "$USER_PIN" = "$USER_PIN_DEFAULT" ]; then
  echo "export HSM_PIN=$USER_PIN_DEFAULT  # the documented default PIN of throw-away test tokens"
else
  echo "# export HSM_PIN=<the USER_PIN you gave>"
fi
for key in $KEYS; do
  echo "# key URI: pkcs11:token=$TOKEN_LABEL;object=$key?module-path=$MODULE&pin-source=env:HSM_PIN"
done
