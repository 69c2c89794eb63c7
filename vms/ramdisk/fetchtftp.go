package ramdisk

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"strconv"
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
			return nil, fmt.Errorf("tftp://%s:%d/%s: %w", server, port, name, r.err)
		}
		return r.b, nil
	}
}

var _ TokenFetcher = FetchTFTP
