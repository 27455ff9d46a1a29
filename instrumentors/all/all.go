// Package all lists every instrumentor uranus ships.
package all

import (
	"github.com/uranus-otel/uranus/instrumentors"
	"github.com/uranus-otel/uranus/instrumentors/funcs"
	"github.com/uranus-otel/uranus/instrumentors/goroutines"
	"github.com/uranus-otel/uranus/instrumentors/gotls"
	"github.com/uranus-otel/uranus/instrumentors/grpc"
	"github.com/uranus-otel/uranus/instrumentors/httpclient"
	"github.com/uranus-otel/uranus/instrumentors/httpserver"
)

// List is every instrumentor, in the order they attach.
var List = []*instrumentors.Instrumentor{
	httpserver.Instrumentor,
	httpclient.Instrumentor,
	grpc.Instrumentor,
	goroutines.Instrumentor,
	gotls.Instrumentor, gotls.Tap, gotls.KeyLog,
	funcs.Instrumentor,
}
