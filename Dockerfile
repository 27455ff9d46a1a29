# The uranus sidecar image: one static binary and nothing else, so it builds
# without pulling any base image.
#
# The build context is a directory holding a static uranus binary named
# "uranus" (no Go toolchain runs inside Docker):
#   CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o ctx/uranus ./cmd/uranus
#   docker build -f Dockerfile -t uranus:dev ctx
# deploy/docker/build.sh does this for every image of the compose demo.
#
# Run it in the PID namespace of the program it instruments (compose:
# pid: "service:app"; Kubernetes: shareProcessNamespace: true) with the
# capabilities BPF, PERFMON and SYS_PTRACE; see docker-compose.yaml.
# Exporting OTLP over https needs CA certificates, which this image lacks:
# mount the host's (/etc/ssl/certs) or export to a collector over http.
FROM scratch
COPY uranus /uranus
ENTRYPOINT ["/uranus"]
