// typenames prints, for a few error values, the address of the type
// descriptor their interface holds and the type's name as %T prints it: the
// oracle for naming types from a binary. Builds with Go 1.13 and later.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"unsafe"
)

func typeAddr(err error) uintptr {
	itab := (*[2]unsafe.Pointer)(unsafe.Pointer(&err))[0]
	return *(*uintptr)(unsafe.Pointer(uintptr(itab) + unsafe.Sizeof(uintptr(0))))
}

func main() {
	for _, err := range []error{
		&net.OpError{Op: "dial"},
		errors.New("x"),
		&url.Error{},
		io.EOF,
		context.DeadlineExceeded,
		net.UnknownNetworkError("x"),
		&net.DNSError{},
	} {
		fmt.Printf("%#x %T\n", typeAddr(err), err)
	}
}
