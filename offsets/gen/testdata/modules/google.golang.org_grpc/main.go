// Command sample is what the offsets generator builds against each release
// of google.golang.org/grpc to read the layouts of its transport, peer and
// status structs, and of the x/net HTTP/2 frames and genproto status that
// release links. It is never run: it only has to reach the code paths that
// use those structs, so that the linker keeps them in DWARF: a server with
// grpc's own health service, a unary call to it from a client over loopback
// TCP, and a status error. It uses only APIs that every release from v1.35.0
// on has (grpc.WithInsecure and grpc.Dial are deprecated, not removed).
package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

func main() {
	// Server side: transport.http2Server, Stream (ServerStream in newer
	// releases), peer.Peer, and the HTTP/2 frames its framer reads.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	check(err)
	srv := grpc.NewServer(grpc.UnaryInterceptor(intercept))
	hs := health.NewServer()
	hs.SetServingStatus("sample", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(srv, hs)
	go srv.Serve(lis)
	defer srv.Stop()

	// Client side: grpc.ClientConn, and a status error back from the
	// server (internal/status.Error, Status, genproto's status.Status).
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cc, err := grpc.DialContext(ctx, lis.Addr().String(), grpc.WithInsecure(), grpc.WithBlock())
	check(err)
	defer cc.Close()
	client := healthpb.NewHealthClient(cc)
	resp, err := client.Check(ctx, &healthpb.HealthCheckRequest{Service: "sample"})
	check(err)
	fmt.Println(resp.GetStatus(), cc.Target())
	_, err = client.Check(ctx, &healthpb.HealthCheckRequest{Service: "missing"})
	report(err)
	report(status.Error(codes.NotFound, "sample"))
}

func intercept(ctx context.Context, req interface{}, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (interface{}, error) {
	if p, ok := peer.FromContext(ctx); ok {
		fmt.Println(info.FullMethod, p.Addr)
	}
	return handler(ctx, req)
}

func report(err error) {
	s, ok := status.FromError(err)
	p := s.Proto()
	fmt.Println(ok, s.Code(), s.Message(), p.GetCode(), p.GetMessage(), err)
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
