// shortclient is a command-line HTTP client that lives a few milliseconds:
// it makes -n GET requests to -url and exits, as CLI tools, cron jobs and
// one-off tasks do. With -hold it first waits for its standard input to
// close, so that a test can start it before uranus and let it call later.
// It builds with every Go toolchain from 1.13 on.
package main

import (
	"flag"
	"fmt"
	"io/ioutil"
	"net/http"
	"os"
)

func main() {
	url := flag.String("url", "", "what to GET")
	n := flag.Int("n", 5, "how many requests")
	hold := flag.Bool("hold", false, "wait for standard input to close first")
	flag.Parse()
	if *hold {
		ioutil.ReadAll(os.Stdin)
	}
	for i := 0; i < *n; i++ {
		resp, err := http.Get(fmt.Sprintf("%s/%d", *url, i))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		ioutil.ReadAll(resp.Body)
		resp.Body.Close()
	}
	fmt.Println("done")
}
