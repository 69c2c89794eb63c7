package ramdisk

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	tftpclient "github.com/pin/tftp/v3"
)

// FetchTFTP is the ramdisk's tftp client (busybox tftp in Ironic's bash
// ramdisk), a TokenFetcher: it reads the token file from the boot server.
func FetchTFTP(ctx context.Context, server net.IP, port int, name string) ([]byte, error) {
	c, err := tftpclient.NewClient(net.JoinHostPort(server.String(), strconv.Itoa(port)))
	if err != nil {
		return nil, err
	}
	c.SetTimeout(2 * time.Second)
	c.SetRetries(3)
	type result struct {
		b   []byte
		err error
	}
	ch := make(chan result, 1)
	go func() {
		wt, err := c.Receive(name, "octet")
		if err != nil {
			ch <- result{err: err}
			return
		}
		var buf bytes.Buffer
		_, err = wt.WriteTo(&buf)
		ch <- result{buf.Bytes(), err}
	}()
	select {
	case <-ctx.Done():
		return nil, ctx.Err() // the transfer times out on its own
	case r := <-ch:
		if r.err != nil {
			return nil, fmt.Errorf("tftp://%s:%d/%s: %w", server, port, name, TFTPError(r.err))
		}
		return r.b, nil
	}
}

var _ TokenFetcher = FetchTFTP

// TFTPError is err from the pin/tftp client without the NUL bytes its
// text may carry: the client keeps the NUL that ends a server's ERROR
// packet message, which would land on a console (and grep would call
// console.log binary). It wraps err.
func TFTPError(err error) error {
	if err == nil || !strings.ContainsRune(err.Error(), 0) {
		return err
	}
	return tftpError{err}
}

type tftpError struct{ err error }

func (e tftpError) Error() string { return strings.ReplaceAll(e.err.Error(), "\x00", "") }
func (e tftpError) Unwrap() error { return e.err }
