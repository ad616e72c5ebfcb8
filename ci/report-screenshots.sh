#!/usr/bin/env bash
# Renders report.html of every dry-run scenario in testdata/dryrun and takes
# a screenshot of each with headless Chromium (installed from Debian's
# packages when missing). Nothing is fetched by the page; Chromium runs with
# networking features off.
#
#   ci/report-screenshots.sh [OUT [REPORT.html ...]]   # default OUT: bin/screenshots (ignored by git)
#
# OUT/<scenario>/report.{json,md,html} and OUT/<scenario>.png, 1400 px wide.
# Each REPORT.html given (a live run's, e.g. the demo's) is taken too, as
# OUT/<its directory's name>.png.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-bin/screenshots}"
shift || true
height="${SCREENSHOT_HEIGHT:-2400}"

if ! command -v chromium >/dev/null 2>&1; then
	sudo=""
	[ "$(id -u)" -eq 0 ] || sudo=sudo
	echo "report-screenshots: installing chromium from Debian's packages"
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
fi

mkdir -p "$out" bin
go build -o bin/rollguard .
out="$(cd "$out" && pwd)"
profile="$(mktemp -d)"
trap 'rm -rf "$profile"' EXIT

shot() { # shot PAGE PNG
	chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
		--disable-background-networking --disable-component-update --disable-sync \
		--user-data-dir="$profile" --window-size="1400,$height" \
		--screenshot="$2" "file://$1" >/dev/null 2>&1
}

for spec in testdata/dryrun/*.yaml; do
	name="$(basename "$spec" .yaml)"
	# Each spec names its recording in its header comment.
	rec="$(grep -o 'testdata/recordings/[^ ]*' "$spec" | head -n1)"
	set +e
	bin/rollguard dry-run -q -f "$spec" --metrics "$rec" --change-at 2024-01-01T12:00:00Z --report-dir "$out/$name" >/dev/null
	code=$?
	set -e
	if [ "$code" -ne 0 ] && [ "$code" -ne 3 ] && [ "$code" -ne 4 ]; then
		echo "report-screenshots: dry-run $name exited $code" >&2
		exit 1
	fi
	shot "$out/$name/report.html" "$out/$name.png"
	echo "$out/$name.png  (exit $code)"
done
for page in "$@"; do
	page="$(cd "$(dirname "$page")" && pwd)/$(basename "$page")"
	name="$(basename "$(dirname "$page")")"
	shot "$page" "$out/$name.png"
	echo "$out/$name.png  ($page)"
done
