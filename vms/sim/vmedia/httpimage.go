package vmedia

import (
	"container/list"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ImageOptions says how an image is read over HTTP(S).
type ImageOptions struct {
	// Client makes the requests; nil => one built from CAFile, Insecure
	// and Timeout.
	Client *http.Client
	// CAFile is a PEM bundle the server's certificate must chain to
	// (default: the system's roots); Insecure skips verification, as a
	// BMC told not to verify does.
	CAFile   string
	Insecure bool
	// Timeout bounds each request; default 30 s.
	Timeout time.Duration
	// BlockSize is the unit of range requests and of the cache; default
	// 256 KiB. CacheBlocks bounds the cache; default 64 (16 MiB).
	BlockSize   int64
	CacheBlocks int
	// MaxFull bounds the download of an image whose server ignores Range
	// (answers 200 with the whole body); default 1 GiB. Larger images
	// cannot be read from such a server.
	MaxFull int64
	// Check is called before every request; an error fails the read with
	// it (the medium was ejected). nil => none.
	Check func() error
}

// HTTPImage is an image read with HTTP Range requests: io.ReaderAt over a
// URL, with a bounded block cache. If the server ignores Range it is
// downloaded once, whole (bounded by MaxFull), and Ranged reports false.
type HTTPImage struct {
	url    string
	ctx    context.Context
	client *http.Client
	opt    ImageOptions
	size   int64
	ranged bool
	own    bool // client was made here: Close closes its connections

	mu       sync.Mutex
	full     []byte
	cache    map[int64]*list.Element // block index -> element of lru (value: *block)
	lru      *list.List
	requests int
	fetched  int64
}

type block struct {
	idx  int64
	data []byte
}

// ErrHTTPStatus is wrapped by errors for answers other than 200 and 206.
var ErrHTTPStatus = errors.New("unexpected HTTP status")

// OpenHTTPImage probes url with a range request for its first block and
// learns its size. Reads use ctx: they fail once it ends.
func OpenHTTPImage(ctx context.Context, url string, opt ImageOptions) (*HTTPImage, error) {
	if !strings.HasPrefix(url, "http://") && !strings.HasPrefix(url, "https://") {
		return nil, fmt.Errorf("%s: only http and https images can be read", url)
	}
	if opt.Timeout == 0 {
		opt.Timeout = 30 * time.Second
	}
	if opt.BlockSize <= 0 {
		opt.BlockSize = 256 << 10
	}
	if opt.CacheBlocks <= 0 {
		opt.CacheBlocks = 64
	}
	if opt.MaxFull <= 0 {
		opt.MaxFull = 1 << 30
	}
	client := opt.Client
	if client == nil {
		tc := &tls.Config{InsecureSkipVerify: opt.Insecure} //nolint:gosec // the operator asked for it
		if opt.CAFile != "" {
			pem, err := os.ReadFile(opt.CAFile)
			if err != nil {
				return nil, fmt.Errorf("CA file: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("CA file %s: no PEM certificates", opt.CAFile)
			}
			tc.RootCAs = pool
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = tc
		client = &http.Client{Transport: tr, Timeout: opt.Timeout}
	}
	im := &HTTPImage{url: url, ctx: ctx, client: client, own: opt.Client == nil, opt: opt, cache: map[int64]*list.Element{}, lru: list.New()}
	if err := im.probe(); err != nil {
		im.Close()
		return nil, err
	}
	return im, nil
}

// Close drops the cache and the idle connections of a client made by
// OpenHTTPImage. Reads after Close fetch again.
func (im *HTTPImage) Close() error {
	im.mu.Lock()
	im.cache = map[int64]*list.Element{}
	im.lru.Init()
	im.mu.Unlock()
	if im.own {
		im.client.CloseIdleConnections()
	}
	return nil
}

// Size is the image's size in bytes.
func (im *HTTPImage) Size() int64 { return im.size }

// Ranged reports whether the server honours Range requests.
func (im *HTTPImage) Ranged() bool { return im.ranged }

// Stats reports the requests made and the bytes fetched so far.
func (im *HTTPImage) Stats() (requests int, fetched int64) {
	im.mu.Lock()
	defer im.mu.Unlock()
	return im.requests, im.fetched
}

// URL is the image's address.
func (im *HTTPImage) URL() string { return im.url }

func (im *HTTPImage) get(first, last int64) (*http.Response, error) {
	if im.opt.Check != nil {
		if err := im.opt.Check(); err != nil {
			return nil, err
		}
	}
	req, err := http.NewRequestWithContext(im.ctx, http.MethodGet, im.url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", first, last))
	req.Header.Set("User-Agent", "metalbed SimBMC virtual media")
	im.mu.Lock()
	im.requests++
	im.mu.Unlock()
	resp, err := im.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", im.url, err)
	}
	return resp, nil
}

func (im *HTTPImage) probe() error {
	resp, err := im.get(0, im.opt.BlockSize-1)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusPartialContent:
		first, last, total, err := parseContentRange(resp.Header.Get("Content-Range"))
		if err != nil || first != 0 || total < 0 {
			return fmt.Errorf("GET %s: bad Content-Range %q", im.url, resp.Header.Get("Content-Range"))
		}
		data, err := io.ReadAll(io.LimitReader(resp.Body, last-first+1))
		if err != nil || int64(len(data)) != last-first+1 {
			return fmt.Errorf("GET %s: short range body (%d of %d bytes): %v", im.url, len(data), last-first+1, err)
		}
		im.size, im.ranged = total, true
		im.fetched += int64(len(data))
		if int64(len(data)) == min(im.opt.BlockSize, total) {
			im.put(0, data)
		}
		return nil
	case http.StatusOK:
		// The server ignores Range: this image is read by downloading it whole.
		if resp.ContentLength > im.opt.MaxFull {
			return fmt.Errorf("GET %s: the server ignores Range requests and the image has %d bytes (more than %d to download whole)", im.url, resp.ContentLength, im.opt.MaxFull)
		}
		data, err := io.ReadAll(io.LimitReader(resp.Body, im.opt.MaxFull+1))
		if err != nil {
			return fmt.Errorf("GET %s: %w", im.url, err)
		}
		if int64(len(data)) > im.opt.MaxFull {
			return fmt.Errorf("GET %s: the server ignores Range requests and the image is larger than %d bytes (to download whole)", im.url, im.opt.MaxFull)
		}
		im.full, im.size = data, int64(len(data))
		im.fetched += int64(len(data))
		return nil
	case http.StatusRequestedRangeNotSatisfiable:
		// An empty image: no byte 0.
		im.size, im.ranged = 0, true
		return nil
	}
	return fmt.Errorf("GET %s: %w: %s", im.url, ErrHTTPStatus, resp.Status)
}

// parseContentRange reads "bytes first-last/total" (total -1 for "*").
func parseContentRange(v string) (first, last, total int64, err error) {
	rest, ok := strings.CutPrefix(v, "bytes ")
	if !ok {
		return 0, 0, 0, errors.New("not a byte range")
	}
	rng, tot, ok := strings.Cut(rest, "/")
	if !ok {
		return 0, 0, 0, errors.New("no total")
	}
	a, b, ok := strings.Cut(rng, "-")
	if !ok {
		return 0, 0, 0, errors.New("no range")
	}
	if first, err = strconv.ParseInt(a, 10, 64); err != nil {
		return
	}
	if last, err = strconv.ParseInt(b, 10, 64); err != nil {
		return
	}
	total = -1
	if tot != "*" {
		if total, err = strconv.ParseInt(tot, 10, 64); err != nil {
			return
		}
	}
	if first < 0 || last < first || (total >= 0 && last >= total) {
		err = errors.New("range out of order")
	}
	return
}

func (im *HTTPImage) put(idx int64, data []byte) {
	im.mu.Lock()
	defer im.mu.Unlock()
	if e, ok := im.cache[idx]; ok {
		im.lru.MoveToFront(e)
		return
	}
	im.cache[idx] = im.lru.PushFront(&block{idx: idx, data: data})
	for im.lru.Len() > im.opt.CacheBlocks {
		old := im.lru.Back()
		im.lru.Remove(old)
		delete(im.cache, old.Value.(*block).idx)
	}
}

func (im *HTTPImage) cached(idx int64) []byte {
	im.mu.Lock()
	defer im.mu.Unlock()
	if e, ok := im.cache[idx]; ok {
		im.lru.MoveToFront(e)
		return e.Value.(*block).data
	}
	return nil
}

// block returns block idx, from the cache or with one range request.
func (im *HTTPImage) block(idx int64) ([]byte, error) {
	if b := im.cached(idx); b != nil {
		if im.opt.Check != nil {
			if err := im.opt.Check(); err != nil {
				return nil, err
			}
		}
		return b, nil
	}
	first := idx * im.opt.BlockSize
	last := min(first+im.opt.BlockSize, im.size) - 1
	resp, err := im.get(first, last)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent {
		return nil, fmt.Errorf("GET %s bytes %d-%d: %w: %s", im.url, first, last, ErrHTTPStatus, resp.Status)
	}
	f, l, total, err := parseContentRange(resp.Header.Get("Content-Range"))
	if err != nil || f != first || l != last || (total >= 0 && total != im.size) {
		return nil, fmt.Errorf("GET %s bytes %d-%d: Content-Range %q (the image changed?)", im.url, first, last, resp.Header.Get("Content-Range"))
	}
	data := make([]byte, last-first+1)
	if _, err := io.ReadFull(resp.Body, data); err != nil {
		return nil, fmt.Errorf("GET %s bytes %d-%d: %w", im.url, first, last, err)
	}
	im.mu.Lock()
	im.fetched += int64(len(data))
	im.mu.Unlock()
	im.put(idx, data)
	return data, nil
}

// ReadAt implements io.ReaderAt.
func (im *HTTPImage) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("read at negative offset %d", off)
	}
	if im.full != nil || !im.ranged {
		if im.opt.Check != nil {
			if err := im.opt.Check(); err != nil {
				return 0, err
			}
		}
		if off >= int64(len(im.full)) {
			return 0, io.EOF
		}
		n := copy(p, im.full[off:])
		if n < len(p) {
			return n, io.EOF
		}
		return n, nil
	}
	n := 0
	for n < len(p) {
		pos := off + int64(n)
		if pos >= im.size {
			return n, io.EOF
		}
		idx := pos / im.opt.BlockSize
		b, err := im.block(idx)
		if err != nil {
			return n, err
		}
		n += copy(p[n:], b[pos-idx*im.opt.BlockSize:])
	}
	return n, nil
}
