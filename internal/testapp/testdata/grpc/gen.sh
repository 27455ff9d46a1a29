#!/bin/sh
# Regenerates echopb/*.pb.go from echopb/echo.proto. Not run by any build:
# the generated code is committed. The generator versions are old on
# purpose: protoc-gen-go v1.26.0 output compiles with every protobuf runtime
# from v1.26.0 on, and protoc-gen-go-grpc v1.1.0 emits
# SupportPackageIsVersion7, which grpc-go has accepted since v1.32, so the
# code builds with every grpc version the tests pin (v1.35.0 on).
#
#   apt-get install -y protobuf-compiler      # protoc 3.21.12 (Debian 12)
#   GOBIN=/tmp/protogen go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.26.0
#   GOBIN=/tmp/protogen go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.1.0
#   PATH=/tmp/protogen:$PATH sh gen.sh
set -eu
cd "$(dirname "$0")/echopb"
protoc --go_out=. --go_opt=paths=source_relative \
	--go-grpc_out=. --go-grpc_opt=paths=source_relative \
	echo.proto
