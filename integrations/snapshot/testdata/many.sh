#!/bin/sh
# many.sh N: prints N numbered lines, to test that only the tail is kept.
i=1
while [ "$i" -le "$1" ]; do
	echo "line $i"
	i=$((i + 1))
done
