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
	"path"
	"strings"
	"sync"
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
	unpack   *Unpacker
}

// tcpGiveUp is how long iPXE's TCP tries to connect: its retry timer
// starts at 1/4 s and doubles, and gives up once the timeout would pass
// 10 s (DEFAULT_MAX_TIMEOUT): 16 s. A server slow to accept — a boot server
// a fleet boots from at once — is waited for that long, as iPXE waits.
const tcpGiveUp = 16 * time.Second

// fetch gets a URL (http://…, tftp://…) or a bare TFTP path from server,
// all of it in memory: for scripts and configs.
func (f *fetcher) fetch(ctx context.Context, server net.IP, ref string) ([]byte, error) {
	var buf bytes.Buffer
	if err := f.fetchTo(ctx, server, ref, &buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// load gets what fetch gets as a loaded File: for kernels and initrds.
func (f *fetcher) load(ctx context.Context, server net.IP, ref string) (File, error) {
	l := newLoading(path.Base(ref), f.unpack)
	return l.finish(f.fetchTo(ctx, server, ref, l))
}

// fetchTo writes what ref names to w, at most maxBytes of it.
func (f *fetcher) fetchTo(ctx context.Context, server net.IP, ref string, w io.Writer) error {
	// The transfer may go on a moment after ctx ends (a TFTP transfer
	// times out on its own): w sees nothing of it once fetchTo returns.
	g := &guarded{w: &limitWriter{w: w, n: f.maxBytes}}
	defer g.close()
	if u, err := url.Parse(ref); err == nil && u.Scheme != "" {
		switch u.Scheme {
		case "http":
			return f.http(ctx, u.String(), g)
		case "tftp":
			host := u.Hostname()
			ip := net.ParseIP(host)
			if ip == nil {
				return fmt.Errorf("tftp://%s: this ROM resolves no names", host)
			}
			port := f.tftpPort
			if p := u.Port(); p != "" {
				fmt.Sscan(p, &port)
			}
			return f.tftp(ctx, ip, port, strings.TrimPrefix(u.Path, "/"), g)
		default:
			return fmt.Errorf("%s: protocol %q not supported by this ROM", ref, u.Scheme)
		}
	}
	if server == nil {
		return fmt.Errorf("%s: no boot server", ref)
	}
	return f.tftp(ctx, server, f.tftpPort, ref, g)
}

func (f *fetcher) tftp(ctx context.Context, server net.IP, port int, name string, w io.Writer) error {
	c, err := tftp.NewClient(net.JoinHostPort(server.String(), fmt.Sprint(port)))
	if err != nil {
		return err
	}
	if f.localIP != nil {
		if err := c.SetLocalAddr(f.localIP.String()); err != nil {
			return err
		}
	}
	c.SetTimeout(f.timeout)
	c.SetRetries(3)
	if f.blksize > 0 {
		c.SetBlockSize(f.blksize)
	}
	c.RequestTSize(true)
	ch := make(chan error, 1)
	go func() {
		wt, err := c.Receive(name, "octet")
		if err != nil {
			ch <- err
			return
		}
		if n, ok := wt.(tftp.IncomingTransfer).Size(); ok && n > f.maxBytes {
			ch <- fmt.Errorf("%d bytes, more than this ROM loads", n)
			return
		}
		_, err = wt.WriteTo(w)
		ch <- err
	}()
	select {
	case <-ctx.Done():
		// The transfer times out on its own (SetTimeout × retries).
		return ctx.Err()
	case err := <-ch:
		if err != nil {
			return fmt.Errorf("tftp://%s:%d/%s: %w", server, port, name, ramdisk.TFTPError(err))
		}
		return nil
	}
}

func (f *fetcher) http(ctx context.Context, u string, w io.Writer) error {
	d := &net.Dialer{Timeout: max(f.timeout, tcpGiveUp)}
	if f.localIP != nil {
		d.LocalAddr = &net.TCPAddr{IP: f.localIP}
	}
	client := &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
	defer client.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", "iPXE/1.21.1 (metalbed SimROM)")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: HTTP %s", u, resp.Status)
	}
	n, err := io.Copy(w, resp.Body)
	if err != nil {
		return fmt.Errorf("%s: %w", u, err)
	}
	if resp.ContentLength >= 0 && n != resp.ContentLength {
		return fmt.Errorf("%s: got %d of %d bytes", u, n, resp.ContentLength)
	}
	return nil
}

// guarded passes writes on until it is closed, then refuses them.
type guarded struct {
	mu     sync.Mutex
	w      io.Writer
	closed bool
}

var errAbandoned = errors.New("transfer abandoned")

func (g *guarded) Write(p []byte) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return 0, errAbandoned
	}
	return g.w.Write(p)
}

func (g *guarded) close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
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
