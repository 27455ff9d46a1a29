//go:build cgo
// +build cgo

package main

/*
int utest_cgo_add(int a, int b) { return a + b; }
*/
import "C"

func add(a, b int) int { return int(C.utest_cgo_add(C.int(a), C.int(b))) }
