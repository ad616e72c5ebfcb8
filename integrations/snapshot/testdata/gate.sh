#!/bin/sh
# gate.sh DIR HOST: marks itself running (DIR/running-HOST), announces
# "start HOST N" on the FIFO DIR/events, N being the hooks running at that
# moment, then blocks until the test writes a line into the FIFO DIR/go-HOST.
: > "$1/running-$2"
n=$(ls "$1" | grep -c '^running-')
echo "start $2 $n" > "$1/events"
read line < "$1/go-$2"
rm -f "$1/running-$2"
echo "released $2"
