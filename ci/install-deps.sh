#!/usr/bin/env bash
# Installs what the tests and the demo need, when it is missing:
# Ansible (ansible-core), qemu-img (qemu-utils), Alertmanager, shellcheck,
# sshd (openssh-server, for the SSH test fleet) and ip (iproute2) from
# Debian's packages, VictoriaMetrics and actionlint with `go install`.
# Idempotent and quiet when everything is there.
set -euo pipefail

need=()
command -v ansible-playbook >/dev/null 2>&1 || need+=(ansible-core)
command -v qemu-img >/dev/null 2>&1 || need+=(qemu-utils)
command -v prometheus-alertmanager >/dev/null 2>&1 || need+=(prometheus-alertmanager)
# actionlint checks the run: scripts of the workflows with it.
command -v shellcheck >/dev/null 2>&1 || need+=(shellcheck)
# The SSH fleet's hosts each run /usr/sbin/sshd in a network namespace;
# the package's own service is not needed (and a container's policy-rc.d
# keeps it from starting).
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v ssh-keygen >/dev/null 2>&1 || need+=(openssh-client)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
if [ ${#need[@]} -gt 0 ]; then
	sudo=""
	[ "$(id -u)" -eq 0 ] || sudo=sudo
	echo "install-deps: installing ${need[*]} from Debian's packages"
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi

gobin="$(go env GOPATH)/bin"
if ! command -v victoria-metrics >/dev/null 2>&1 && [ ! -x "$gobin/victoria-metrics" ]; then
	echo "install-deps: installing VictoriaMetrics v1.151.0 with go install (a few minutes the first time)"
	go install github.com/VictoriaMetrics/VictoriaMetrics/app/victoria-metrics@v1.151.0
fi

if ! command -v actionlint >/dev/null 2>&1 && [ ! -x "$gobin/actionlint" ]; then
	echo "install-deps: installing actionlint v1.7.12 with go install"
	go install github.com/rhysd/actionlint/cmd/actionlint@v1.7.12
fi
