# syntax=docker/dockerfile:1
# rollguard's image: the GitHub Action (action.yml) and a general-purpose
# image for Nomad batch jobs or local use. Stage one builds a static
# binary; stage two is Debian slim with ansible-core (2.14 in bookworm,
# the version the tests run against) and an SSH client for Ansible.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/rollguard .

FROM debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      ansible-core openssh-client ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/rollguard /usr/local/bin/rollguard
ENTRYPOINT ["rollguard"]
CMD ["--help"]
