package pxe

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/pin/tftp/v3"

	"github.com/metalbed/metalbed/vms/ramdisk"
)

// fetcher downloads boot files from the NIC's leased address, as the ROM's
// TFTP and HTTP stacks do.
type fetcher struct {
	localIP  net.IP
	tftpPort int // the boot server's TFTP port (69 on a real network)
	blksize  int
	timeout  time.Duration
	maxBytes int64
}

// fetch gets a URL (http://…, tftp://…) or a bare TFTP path from server.
func (f *fetcher) fetch(ctx context.Context, server net.IP, ref string) ([]byte, error) {
	if u, err := url.Parse(ref); err == nil && u.Scheme != "" {
		switch u.Scheme {
		case "http":
			return f.http(ctx, u.String())
		case "tftp":
			host := u.Hostname()
			ip := net.ParseIP(host)
			if ip == nil {
				return nil, fmt.Errorf("tftp://%s: this ROM resolves no names", host)
			}
			port := f.tftpPort
			if p := u.Port(); p != "" {
				fmt.Sscan(p, &port)
			}
			return f.tftp(ctx, ip, port, strings.TrimPrefix(u.Path, "/"))
		default:
			return nil, fmt.Errorf("%s: protocol %q not supported by this ROM", ref, u.Scheme)
		}
	}
	if server == nil {
		return nil, fmt.Errorf("%s: no boot server", ref)
	}
	return f.tftp(ctx, server, f.tftpPort, ref)
}

func (f *fetcher) tftp(ctx context.Context, server net.IP, port int, name string) ([]byte, error) {
	c, err := tftp.NewClient(net.JoinHostPort(server.String(), fmt.Sprint(port)))
	if err != nil {
		return nil, err
	}
	if f.localIP != nil {
		if err := c.SetLocalAddr(f.localIP.String()); err != nil {
			return nil, err
		}
	}
	c.SetTimeout(f.timeout)
	c.SetRetries(3)
	if f.blksize > 0 {
		c.SetBlockSize(f.blksize)
	}
	c.RequestTSize(true)
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
		if n, ok := wt.(tftp.IncomingTransfer).Size(); ok && n > f.maxBytes {
			ch <- result{err: fmt.Errorf("%d bytes, more than this ROM loads", n)}
			return
		}
		var buf bytes.Buffer
		_, err = wt.WriteTo(&limitWriter{w: &buf, n: f.maxBytes})
		ch <- result{b: buf.Bytes(), err: err}
	}()
	select {
	case <-ctx.Done():
		// The transfer times out on its own (SetTimeout × retries).
		return nil, ctx.Err()
	case r := <-ch:
		if r.err != nil {
			return nil, fmt.Errorf("tftp://%s:%d/%s: %w", server, port, name, ramdisk.TFTPError(r.err))
		}
		return r.b, nil
	}
}

func (f *fetcher) http(ctx context.Context, u string) ([]byte, error) {
	d := &net.Dialer{Timeout: f.timeout}
	if f.localIP != nil {
		d.LocalAddr = &net.TCPAddr{IP: f.localIP}
	}
	client := &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
	defer client.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("User-Agent", "iPXE/1.21.1 (metalbed SimROM)")
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: HTTP %s", u, resp.Status)
	}
	var buf bytes.Buffer
	if _, err := io.Copy(&limitWriter{w: &buf, n: f.maxBytes}, resp.Body); err != nil {
		return nil, fmt.Errorf("%s: %w", u, err)
	}
	if resp.ContentLength >= 0 && int64(buf.Len()) != resp.ContentLength {
		return nil, fmt.Errorf("%s: got %d of %d bytes", u, buf.Len(), resp.ContentLength)
	}
	return buf.Bytes(), nil
}

var errTooBig = errors.New("file larger than this ROM loads")

type limitWriter struct {
	w io.Writer
	n int64
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > l.n {
		return 0, errTooBig
	}
	l.n -= int64(len(p))
	return l.w.Write(p)
}
