#!/bin/sh
# Starts a private pcscd whose only readers are vpcd ports, for the virtual PIV card.
#
# usage: start-pcscd.sh CONF_DIR SOCKET_DIR [WATCH_PID]
#
#   CONF_DIR    folder holding the reader configuration (see reader.conf.example); pcscd -c reads it
#   SOCKET_DIR  where pcscd's socket ends up: clients set PCSCLITE_CSOCK_NAME=SOCKET_DIR/pcscd.comm
#   WATCH_PID   optional: stop pcscd when this process (the test run) is gone
#
# pcscd 1.9 always binds /run/pcscd/pcscd.comm, and only one pcscd may own it. To leave any
# system pcscd (and other test runs) alone, pcscd runs in its own mount namespace where
# SOCKET_DIR is bind-mounted over /run/pcscd. Needs root (pcscd itself needs root anyway). Where
# namespaces are not allowed, it falls back to the shared /run/pcscd, and refuses if another pcscd
# is already there rather than stopping it.
#
# This script stays in the foreground; SIGTERM stops pcscd (by its PID) and waits for it.
set -eu

CONF_DIR=$1
SOCKET_DIR=$2
WATCH_PID=${3:-}

command -v pcscd >/dev/null 2>&1 || {
    echo "pcscd is not installed: apt-get install pcscd vsmartcard-vpcd" >&2
    exit 2
}
[ -e /usr/lib/pcsc/drivers/serial/libifdvpcd.so ] || {
    echo "the vpcd driver is not installed: apt-get install pcscd vsmartcard-vpcd" >&2
    exit 2
}

mkdir -p /run/pcscd "$SOCKET_DIR"
if unshare -m --propagation private true 2>/dev/null; then
    unshare -m --propagation private sh -c \
        'mount --bind "$1" /run/pcscd && exec pcscd --foreground -c "$2"' \
        pcscd-private "$SOCKET_DIR" "$CONF_DIR" &
    PCSCD_PID=$!
    echo "private pcscd (own mount namespace) pid $PCSCD_PID, socket $SOCKET_DIR/pcscd.comm" >&2
else
    if [ -S /run/pcscd/pcscd.comm ]; then
        echo "another pcscd owns /run/pcscd and this system does not allow a private one" \
             "(unshare -m failed); stop it first (e.g. systemctl stop pcscd.socket pcscd)" >&2
        exit 3
    fi
    pcscd --foreground -c "$CONF_DIR" &
    PCSCD_PID=$!
    ln -sf /run/pcscd/pcscd.comm "$SOCKET_DIR/pcscd.comm"
    echo "shared pcscd pid $PCSCD_PID, socket /run/pcscd/pcscd.comm" >&2
fi

stop() {
    kill "$PCSCD_PID" 2>/dev/null || true
    wait "$PCSCD_PID" 2>/dev/null || true
    exit 0
}
trap stop TERM INT HUP

while kill -0 "$PCSCD_PID" 2>/dev/null; do
    if [ -n "$WATCH_PID" ] && ! kill -0 "$WATCH_PID" 2>/dev/null; then
        stop
    fi
    sleep 0.3
done
wait "$PCSCD_PID"
