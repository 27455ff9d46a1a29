// Command sample is what the offsets generator builds against each release
// of golang.org/x/net to read the layouts of its HTTP/2 structs. It is never
// run: it only has to reach the code paths that use those structs, so that
// the linker keeps them in DWARF. It needs no network: both ends of the
// connection are a net.Pipe.
package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"

	"golang.org/x/net/http2"
)

func main() {
	// Server side: http2.serverConn, responseWriter, responseWriterState.
	srv := &http.Server{Handler: http.HandlerFunc(handle)}
	h2 := &http2.Server{}
	check(http2.ConfigureServer(srv, h2))
	serverEnd, clientEnd := net.Pipe()
	go h2.ServeConn(serverEnd, &http2.ServeConnOpts{BaseConfig: srv, Handler: srv.Handler})

	// Client side: http2.ClientConn.
	tr := &http2.Transport{AllowHTTP: true}
	cc, err := tr.NewClientConn(clientEnd)
	check(err)
	req, err := http.NewRequest("GET", "http://sample/", nil)
	check(err)
	resp, err := cc.RoundTrip(req)
	check(err)
	body, err := io.ReadAll(resp.Body)
	check(err)
	check(resp.Body.Close())
	fmt.Println(resp.Status, len(body), cc.CanTakeNewRequest())
	check(cc.Close())
}

func handle(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Sample", r.RemoteAddr)
	w.WriteHeader(http.StatusTeapot)
	fmt.Fprintln(w, r.Method, r.URL, r.Proto)
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
