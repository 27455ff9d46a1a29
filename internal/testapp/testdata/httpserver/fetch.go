package main

import (
	"crypto/tls"
	"fmt"
	"io/ioutil"
	"net/http"
)

// fetch GETs the url query parameter as a client and replies with the
// status and protocol it got ("404 HTTP/2.0"). The client trusts any
// certificate (the tests' servers make their own) and, with h2=1, asks for
// HTTP/2, which a Transport with its own TLS settings does not otherwise.
func fetch(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	tr := &http.Transport{
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true},
		ForceAttemptHTTP2: q.Get("h2") == "1",
	}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get(q.Get("url"))
	if err != nil {
		fmt.Fprint(w, "error: ", err)
		return
	}
	ioutil.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Fprintf(w, "%d %s", resp.StatusCode, resp.Proto)
}
