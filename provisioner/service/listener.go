package service

import (
	"net"
	"sync"
	"time"
)

// deadlineListener is a listener whose Accept a deadline interrupts.
type deadlineListener interface {
	net.Listener
	SetDeadline(time.Time) error
}

// reusable wraps ln so that the API server's shutdown interrupts Accept
// without closing the socket, for the next Serve on it (clients that
// connect in between wait in the backlog). A listener without
// SetDeadline is returned as is.
func reusable(ln net.Listener) net.Listener {
	dl, ok := ln.(deadlineListener)
	if !ok {
		return ln
	}
	dl.SetDeadline(time.Time{}) // an earlier Serve's shutdown set one
	return &keepOpen{deadlineListener: dl}
}

// keepOpen is a listener whose Close only interrupts Accept.
type keepOpen struct {
	deadlineListener
	once sync.Once
}

func (k *keepOpen) Close() error {
	k.once.Do(func() { k.SetDeadline(time.Now()) })
	return nil
}
