package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// The demo's gRPC hop: stock also serves uranus.demo.Stock/Reserve, which
// the shop's checkout calls after reading the stock level, so that a
// checkout trace shows a gRPC call and its server span. The uranus binary
// links gRPC-Go already (the OTLP gRPC exporter), so the demo needs no new
// dependency; messages are JSON (a codec of a few lines), not protobuf, to
// need no generated code.

const reserveMethod = "/uranus.demo.Stock/Reserve"

type reserveRequest struct {
	SKU string `json:"sku"`
}

type reserveReply struct {
	Reserved bool `json:"reserved"`
}

// jsonCodec marshals the demo's messages as JSON.
type jsonCodec struct{}

func (jsonCodec) Marshal(v any) ([]byte, error)      { return json.Marshal(v) }
func (jsonCodec) Unmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }
func (jsonCodec) Name() string                       { return "json" }

// serveStockGRPC serves Reserve on ln until ctx ends.
func serveStockGRPC(ctx context.Context, ln net.Listener) {
	s := grpc.NewServer(grpc.ForceServerCodec(jsonCodec{}))
	s.RegisterService(&grpc.ServiceDesc{
		ServiceName: "uranus.demo.Stock",
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{
			MethodName: "Reserve",
			Handler: func(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
				var req reserveRequest
				if err := dec(&req); err != nil {
					return nil, err
				}
				time.Sleep(time.Duration(1+rand.Intn(3)) * time.Millisecond)
				return &reserveReply{Reserved: true}, nil
			},
		}},
	}, struct{}{})
	go func() { <-ctx.Done(); s.Stop() }()
	s.Serve(ln)
}

// stockClient calls stock's Reserve over one connection, made at the first
// call.
type stockClient struct {
	target string
	once   sync.Once
	cc     *grpc.ClientConn
	err    error
}

func (c *stockClient) reserve(ctx context.Context, sku string) error {
	c.once.Do(func() {
		c.cc, c.err = grpc.NewClient(c.target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	})
	if c.err != nil {
		return c.err
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	var rep reserveReply
	if err := c.cc.Invoke(ctx, reserveMethod, &reserveRequest{SKU: sku}, &rep, grpc.ForceCodec(jsonCodec{})); err != nil {
		return err
	}
	if !rep.Reserved {
		return fmt.Errorf("stock did not reserve %s", sku)
	}
	return nil
}
