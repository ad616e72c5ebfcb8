#!/bin/sh
# echo.sh CODE ARG...: prints each argument in brackets, one a line, and the
# hook environment; on a non-zero CODE, says so on stderr and exits CODE.
code=$1
shift
for a in "$@"; do
	printf '[%s]\n' "$a"
done
printf 'env %s %s %s %s\n' "$ROLLGUARD_HOST" "$ROLLGUARD_HOST_ADDRESS" "$ROLLGUARD_RUN_ID" "$ROLLGUARD_SNAPSHOT"
if [ "$code" != 0 ]; then
	echo "hook failed on purpose with $code" >&2
fi
exit "$code"
