#!/bin/sh
# detach.sh PIDFILE: leaves a background process holding the hook's output
# open, records its pid, and exits 0.
sleep 1000 &
echo $! > "$1"
echo "snapshot taken"
