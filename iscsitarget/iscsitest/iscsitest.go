// Package iscsitest serves metalbed's iSCSI target for tests of what
// talks to it (the initiator, the iSCSI deploy). Only tests import it.
package iscsitest

import (
	"context"
	"errors"
	"net"
	"testing"

	"github.com/metalbed/metalbed/iscsitarget"
)

// Serve starts a target with cfg on 127.0.0.1:0 and returns it and its
// portal; it stops when the test ends, failing the test if Serve failed.
func Serve(t testing.TB, cfg iscsitarget.Config) (*iscsitarget.Target, string) {
	t.Helper()
	tg, err := iscsitarget.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tg.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, iscsitarget.ErrClosed) {
			t.Errorf("iSCSI target Serve: %v", err)
		}
		tg.Close()
	})
	return tg, ln.Addr().String()
}
