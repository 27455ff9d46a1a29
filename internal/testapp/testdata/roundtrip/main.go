// roundtrip is the target binary analysis is tested on: an HTTP server and
// a client in one program, so that both net/http.serverHandler.ServeHTTP and
// net/http.(*Transport).roundTrip are linked in. It builds with every Go
// toolchain from 1.13 on. Built with cgo it also carries a C function.
package main

import (
	"fmt"
	"io/ioutil"
	"net"
	"net/http"
	"os"
)

func main() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "pong %s\n", r.URL.Path)
	}))
	resp, err := http.Get("http://" + ln.Addr().String() + "/ping")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	body, _ := ioutil.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Printf("%s%d\n", body, add(2, 3))
}
