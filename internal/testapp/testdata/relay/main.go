// relay is the end-to-end target for trace propagation: its handlers call
// another service (usually a second relay) in the ways Go programs do — from
// the handler's goroutine, from a goroutine it spawns, through an errgroup,
// fanned out to many goroutines — and /echo-traceparent returns the
// traceparent header a request arrived with. Builds with Go 1.13 and later.
package main

import (
	"flag"
	"fmt"
	"io/ioutil"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
)

var client = &http.Client{}

// call GETs url and returns the body, or the error text.
func call(url string, set func(*http.Request)) string {
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		return "error: " + err.Error()
	}
	if set != nil {
		set(req)
	}
	resp, err := client.Do(req)
	if err != nil {
		return "error: " + err.Error()
	}
	defer resp.Body.Close()
	b, _ := ioutil.ReadAll(resp.Body)
	return string(b)
}

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	flag.Parse()
	mux := http.NewServeMux()
	mux.HandleFunc("/echo-traceparent", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, r.Header.Get("Traceparent"))
	})
	mux.HandleFunc("/sleep", func(w http.ResponseWriter, r *http.Request) {
		ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
		time.Sleep(time.Duration(ms) * time.Millisecond)
	})
	// The handler's own goroutine makes the call.
	mux.HandleFunc("/call", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, call(r.URL.Query().Get("url"), nil))
	})
	// A goroutine the handler spawns makes the call.
	mux.HandleFunc("/call-go", func(w http.ResponseWriter, r *http.Request) {
		ch := make(chan string)
		go func() { ch <- call(r.URL.Query().Get("url"), nil) }()
		fmt.Fprint(w, <-ch)
	})
	// Two nested goroutines away from the handler.
	mux.HandleFunc("/call-go-go", func(w http.ResponseWriter, r *http.Request) {
		ch := make(chan string)
		go func() {
			go func() { ch <- call(r.URL.Query().Get("url"), nil) }()
		}()
		fmt.Fprint(w, <-ch)
	})
	mux.HandleFunc("/call-errgroup", func(w http.ResponseWriter, r *http.Request) {
		var g errgroup.Group
		results := make([]string, 3)
		for i := range results {
			i := i
			g.Go(func() error {
				results[i] = call(r.URL.Query().Get("url"), nil)
				return nil
			})
		}
		g.Wait()
		fmt.Fprint(w, strings.Join(results, "\n"))
	})
	// n goroutines, each one call.
	mux.HandleFunc("/fanout", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		results := make([]string, n)
		var wg sync.WaitGroup
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				results[i] = call(r.URL.Query().Get("url"), nil)
			}(i)
		}
		wg.Wait()
		fmt.Fprint(w, strings.Join(results, "\n"))
	})
	// The app propagates its own trace context: uranus must keep it.
	mux.HandleFunc("/call-own-traceparent", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, call(r.URL.Query().Get("url"), func(req *http.Request) {
			req.Header.Set("Traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
		}))
	})
	mux.HandleFunc("/call-timeout", func(w http.ResponseWriter, r *http.Request) {
		c := &http.Client{Timeout: 50 * time.Millisecond}
		_, err := c.Get(r.URL.Query().Get("url"))
		fmt.Fprint(w, err)
	})
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("listening on %s\n", ln.Addr())
	if err := http.Serve(ln, mux); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
