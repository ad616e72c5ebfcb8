#!/bin/sh
# spawn.sh PIDFILE: starts a grandchild that ignores SIGTERM (so only the
# process-group SIGKILL stops it), writes its pid to PIDFILE, and blocks.
sh -c 'trap "" TERM; exec sleep 1000' &
echo $! > "$1.tmp" && mv "$1.tmp" "$1"
wait
