// Package imagecache is the conductor's image cache, as Ironic's ImageCache
// and TFTPImageCache: images named by http(s):// URL, file:// URL or
// absolute path are downloaded once into a master directory (one file per
// source, named uuid5(URL namespace, source) as Ironic names them), verified
// against their checksum, and hard-linked (or copied, across filesystems)
// into per-node directories such as <tftp root>/<node uuid>/deploy_kernel.
//
// Concurrent requests for the same source download it once. A download goes
// to a temporary file renamed into place only when complete and verified, so
// a broken transfer never becomes a cache entry. The master directory is
// kept under Config.MaxBytes by evicting the least recently used masters (by
// access time, which every use refreshes) that no node links to.
//
// A master is reused while its source has not changed: for files, while the
// file's modification time is not newer than the master; for HTTP, while
// the Last-Modified of a HEAD request is not newer (a server that sends no
// Last-Modified gets its image downloaded again, as Ironic does).
package imagecache

import (
	"context"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/uuid"
	"golang.org/x/sync/singleflight"
)

// Errors callers may branch on. Their texts are Ironic's.
var (
	// ErrChecksum: the image's digest differs from the expected one.
	ErrChecksum = errors.New("The supplied image checksum is invalid or does not match.")
	// ErrChecksumAlgorithm: the expected checksum names an unknown algorithm.
	ErrChecksumAlgorithm = errors.New("The requested image checksum algorithm cannot be loaded.")
)

// Source is one image to fetch and how to verify it, from a node's
// driver_info (deploy_kernel, deploy_ramdisk) or instance_info
// (image_source, kernel, ramdisk, image_checksum, os_hash_algo,
// os_hash_value).
type Source struct {
	// URL is http://…, https://…, file:///… or an absolute path.
	URL string
	// Checksum is Ironic's image_checksum: a bare hex digest (MD5) or
	// "<algo>:<hex>" such as "sha256:…". Empty: not verified (unless
	// HashValue is set).
	Checksum string
	// HashAlgo and HashValue are os_hash_algo (md5, sha1, sha256, sha384,
	// sha512) and os_hash_value; when HashValue is set it wins over
	// Checksum.
	HashAlgo, HashValue string
}

// expected returns the algorithm and digest to verify, "" when none.
func (s Source) expected() (algo, digest string) {
	if s.HashValue != "" {
		algo = strings.ToLower(s.HashAlgo)
		if algo == "" {
			algo = "md5"
		}
		return algo, strings.ToLower(strings.TrimSpace(s.HashValue))
	}
	if s.Checksum == "" {
		return "", ""
	}
	algo, digest, ok := strings.Cut(strings.TrimSpace(s.Checksum), ":")
	if !ok {
		return "md5", strings.ToLower(algo)
	}
	return strings.ToLower(algo), strings.ToLower(digest)
}

func newHash(algo string) (hash.Hash, error) {
	switch algo {
	case "md5":
		return md5.New(), nil
	case "sha1":
		return sha1.New(), nil
	case "sha256":
		return sha256.New(), nil
	case "sha384":
		return sha512.New384(), nil
	case "sha512":
		return sha512.New(), nil
	}
	return nil, fmt.Errorf("%w (%q)", ErrChecksumAlgorithm, algo)
}

// Config configures a Cache.
type Config struct {
	// Dir is the master directory; created by New's first Fetch. Required.
	// Per-node destinations on the same filesystem get hard links.
	Dir string
	// MaxBytes bounds the masters' total size; default 20 GiB (Ironic's
	// image_cache_size 20480 MiB). Masters linked into a node directory
	// are never evicted, so the bound can be exceeded while they are used.
	MaxBytes int64
	// Client fetches http(s) sources; default a client with a 30 s
	// connect/header timeout and no overall timeout (images are large).
	Client *http.Client
	// Logger receives logs; nil discards them.
	Logger *slog.Logger
	// Observer, when set, is called once per Fetch; it must not block.
	Observer func(Event)
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Event is one Fetch, for the per-node timeline.
type Event struct {
	Source   string // the URL or path asked for
	Dest     string // where it was linked or copied
	Bytes    int64  // the image's size
	Cached   bool   // served from the master copy, nothing downloaded
	Algo     string // checksum algorithm verified; "" when none was given
	Verified bool   // a checksum was given and matched
	Err      error
	Duration time.Duration
	Time     time.Time
}

// Cache is an image cache. It is safe for concurrent use.
type Cache struct {
	cfg    Config
	log    *slog.Logger
	flight singleflight.Group
	// mu orders linking masters into destinations against eviction, so a
	// master is never removed between its download and its first link.
	mu sync.Mutex
}

// New validates cfg and applies defaults; it does no I/O.
func New(cfg Config) (*Cache, error) {
	if cfg.Dir == "" {
		return nil, errors.New("imagecache: Dir is required")
	}
	if cfg.MaxBytes < 0 {
		return nil, errors.New("imagecache: MaxBytes must not be negative")
	}
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = 20 << 30
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			ResponseHeaderTimeout: 30 * time.Second,
			TLSHandshakeTimeout:   30 * time.Second,
		}}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Cache{cfg: cfg, log: log}, nil
}

// meta is kept next to each master as <name>.json.
type meta struct {
	Source  string            `json:"source"`
	Size    int64             `json:"size"`
	Digests map[string]string `json:"digests"` // algo -> lower-case hex
}

// masterName is Ironic's: uuid5(NAMESPACE_URL, href).
func masterName(src string) string {
	return uuid.NewSHA1(uuid.NameSpaceURL, []byte(src)).String()
}

// Fetch makes dest hold the image src names, verified against its checksum:
// a hard link to (or copy of) the master, downloaded first when missing or
// stale. dest's directory must exist. A dest already linked to the current
// master is left alone.
func (c *Cache) Fetch(ctx context.Context, src Source, dest string) (err error) {
	start := c.cfg.Now()
	ev := Event{Source: src.URL, Dest: dest, Time: start}
	defer func() {
		ev.Err, ev.Duration = err, c.cfg.Now().Sub(start)
		if c.cfg.Observer != nil {
			c.cfg.Observer(ev)
		}
	}()
	algo, want := src.expected()
	if algo != "" {
		if _, err := newHash(algo); err != nil {
			return err
		}
		if want == "" {
			return ErrChecksum
		}
	}
	if err := checkSource(src.URL); err != nil {
		return err
	}
	if err := os.MkdirAll(c.cfg.Dir, 0o755); err != nil {
		return fmt.Errorf("imagecache: %w", err)
	}
	name := masterName(src.URL)
	master := filepath.Join(c.cfg.Dir, name)
	for attempt := 0; ; attempt++ {
		v, ferr, _ := c.flight.Do(name, func() (any, error) { return c.ensure(ctx, src, master) })
		if ferr != nil {
			return ferr
		}
		r := v.(result)
		m := r.meta // shared with concurrent callers: copy before changing
		m.Digests = maps.Clone(r.meta.Digests)
		ev.Bytes, ev.Cached = m.Size, !r.downloaded
		if algo != "" {
			got, herr := c.digest(master, &m, algo)
			if herr != nil {
				return herr
			}
			if got != want {
				if !r.downloaded && attempt == 0 {
					// The cached copy is not what is asked for now: drop it
					// and download again.
					c.log.Warn("cached image does not match its checksum; downloading again", "source", src.URL, "algo", algo)
					c.remove(master)
					continue
				}
				c.log.Error("image checksum mismatch", "source", src.URL, "algo", algo, "want", want, "got", got)
				return fmt.Errorf("%s: %w", src.URL, ErrChecksum)
			}
			ev.Algo, ev.Verified = algo, true
		}
		lerr := c.link(master, dest)
		if errors.Is(lerr, os.ErrNotExist) && attempt == 0 {
			continue // evicted between download and link: once more
		}
		if lerr != nil {
			return lerr
		}
		c.CleanUp()
		return nil
	}
}

type result struct {
	meta       meta
	downloaded bool
}

func checkSource(src string) error {
	switch {
	case strings.HasPrefix(src, "http://"), strings.HasPrefix(src, "https://"), strings.HasPrefix(src, "file://"):
		_, err := url.Parse(src)
		if err != nil {
			return fmt.Errorf("imagecache: image source %q: %w", src, err)
		}
		return nil
	case filepath.IsAbs(src):
		return nil
	}
	return fmt.Errorf("imagecache: image source %q: want an http(s):// or file:// URL or an absolute path", src)
}

// localPath returns the file a file:// URL or path names.
func localPath(src string) (string, bool) {
	if strings.HasPrefix(src, "file://") {
		u, err := url.Parse(src)
		if err != nil {
			return "", false
		}
		return u.Path, true
	}
	if filepath.IsAbs(src) {
		return src, true
	}
	return "", false
}

// ensure makes master current and returns its metadata.
func (c *Cache) ensure(ctx context.Context, src Source, master string) (any, error) {
	fresh, err := c.fresh(ctx, src.URL, master)
	if err != nil {
		return nil, err
	}
	if fresh {
		m, err := readMeta(master)
		if err == nil {
			c.touch(master)
			return result{meta: m}, nil
		}
	}
	m, err := c.download(ctx, src, master)
	if err != nil {
		return nil, err
	}
	return result{meta: m, downloaded: true}, nil
}

// fresh reports whether master exists and is not older than its source.
func (c *Cache) fresh(ctx context.Context, src, master string) (bool, error) {
	st, err := os.Stat(master)
	if err != nil {
		return false, nil
	}
	var modified time.Time
	if p, ok := localPath(src); ok {
		sst, err := os.Stat(p)
		if err != nil {
			return false, fmt.Errorf("imagecache: image %s: %w", src, err)
		}
		modified = sst.ModTime()
	} else {
		req, err := http.NewRequestWithContext(ctx, http.MethodHead, src, nil)
		if err != nil {
			return false, fmt.Errorf("imagecache: %w", err)
		}
		resp, err := c.cfg.Client.Do(req)
		if err != nil {
			return false, fmt.Errorf("imagecache: HEAD %s: %w", src, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return false, fmt.Errorf("imagecache: HEAD %s: %s", src, resp.Status)
		}
		lm, err := http.ParseTime(resp.Header.Get("Last-Modified"))
		if err != nil {
			c.log.Warn("image server sends no Last-Modified; updating the cached copy", "source", src)
			return false, nil
		}
		modified = lm
	}
	return !modified.After(st.ModTime()), nil
}

// download fetches src into a temporary file, computes its digest and
// renames it to master.
func (c *Cache) download(ctx context.Context, src Source, master string) (meta, error) {
	algo, _ := src.expected()
	if algo == "" {
		algo = "sha256" // recorded for later requests that name one
	}
	h, err := newHash(algo)
	if err != nil {
		return meta{}, err
	}
	tmp, err := os.CreateTemp(c.cfg.Dir, ".tmp-"+filepath.Base(master)+"-*")
	if err != nil {
		return meta{}, fmt.Errorf("imagecache: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	body, err := c.open(ctx, src.URL)
	if err != nil {
		return meta{}, err
	}
	n, err := io.Copy(io.MultiWriter(tmp, h), body)
	body.Close()
	if err != nil {
		return meta{}, fmt.Errorf("imagecache: download %s: %w", src.URL, err)
	}
	if err := tmp.Close(); err != nil {
		return meta{}, fmt.Errorf("imagecache: %w", err)
	}
	m := meta{Source: src.URL, Size: n, Digests: map[string]string{algo: hex.EncodeToString(h.Sum(nil))}}
	c.mu.Lock()
	defer c.mu.Unlock()
	os.Remove(master + ".json")
	if err := os.Rename(tmp.Name(), master); err != nil {
		return meta{}, fmt.Errorf("imagecache: %w", err)
	}
	ok = true
	if err := writeMeta(master, m); err != nil {
		return meta{}, err
	}
	c.log.Info("image downloaded", "source", src.URL, "bytes", n)
	return m, nil
}

func (c *Cache) open(ctx context.Context, src string) (io.ReadCloser, error) {
	if p, ok := localPath(src); ok {
		f, err := os.Open(p)
		if err != nil {
			return nil, fmt.Errorf("imagecache: image %s: %w", src, err)
		}
		return f, nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, src, nil)
	if err != nil {
		return nil, fmt.Errorf("imagecache: %w", err)
	}
	resp, err := c.cfg.Client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("imagecache: GET %s: %w", src, err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("imagecache: GET %s: %s", src, resp.Status)
	}
	return resp.Body, nil
}

// digest returns master's digest in algo, computing and recording it when
// not yet known.
func (c *Cache) digest(master string, m *meta, algo string) (string, error) {
	if d, ok := m.Digests[algo]; ok {
		return d, nil
	}
	h, err := newHash(algo)
	if err != nil {
		return "", err
	}
	f, err := os.Open(master)
	if err != nil {
		return "", fmt.Errorf("imagecache: %w", err)
	}
	defer f.Close()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("imagecache: Failed to read the file from local storage to perform a checksum operation: %w", err)
	}
	d := hex.EncodeToString(h.Sum(nil))
	c.mu.Lock()
	defer c.mu.Unlock()
	// Re-read: another caller may have recorded another algorithm.
	if cur, err := readMeta(master); err == nil && cur.Size == m.Size {
		*m = cur
	}
	if m.Digests == nil {
		m.Digests = map[string]string{}
	}
	m.Digests[algo] = d
	if err := writeMeta(master, *m); err != nil {
		return "", err
	}
	return d, nil
}

// link makes dest the master: a hard link, else a copy.
func (c *Cache) link(master, dest string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	mst, err := os.Stat(master)
	if err != nil {
		return err
	}
	if dst, err := os.Stat(dest); err == nil && os.SameFile(mst, dst) {
		c.touch(master)
		return nil
	}
	if err := os.Remove(dest); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("imagecache: %w", err)
	}
	if err := os.Link(master, dest); err != nil {
		c.log.Debug("hard link failed; copying", "master", master, "dest", dest, "err", err)
		if err := copyFile(master, dest); err != nil {
			return err
		}
	}
	c.touch(master)
	return nil
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp, err := os.CreateTemp(filepath.Dir(to), ".tmp-"+filepath.Base(to)+"-*")
	if err != nil {
		return fmt.Errorf("imagecache: %w", err)
	}
	if _, err := io.Copy(tmp, in); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return fmt.Errorf("imagecache: copy to %s: %w", to, err)
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("imagecache: %w", err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("imagecache: %w", err)
	}
	if err := os.Rename(tmp.Name(), to); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("imagecache: %w", err)
	}
	return nil
}

// touch records a use: the access time is what eviction orders by; the
// modification time stays the download time, which freshness compares.
func (c *Cache) touch(master string) {
	st, err := os.Stat(master)
	if err != nil {
		return
	}
	os.Chtimes(master, c.cfg.Now(), st.ModTime())
}

func (c *Cache) remove(master string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	os.Remove(master)
	os.Remove(master + ".json")
}

func readMeta(master string) (meta, error) {
	var m meta
	b, err := os.ReadFile(master + ".json")
	if err != nil {
		return m, err
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, err
	}
	st, err := os.Stat(master)
	if err != nil {
		return m, err
	}
	if st.Size() != m.Size {
		return m, errors.New("master size differs from its metadata")
	}
	return m, nil
}

func writeMeta(master string, m meta) error {
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("imagecache: %w", err)
	}
	tmp := master + ".json.tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("imagecache: %w", err)
	}
	if err := os.Rename(tmp, master+".json"); err != nil {
		return fmt.Errorf("imagecache: %w", err)
	}
	return nil
}

// Entry is one master in the cache.
type Entry struct {
	Source   string
	Path     string
	Size     int64
	LastUsed time.Time // access time
	InUse    bool      // linked into a node directory
}

// Entries lists the masters, least recently used first.
func (c *Cache) Entries() ([]Entry, error) {
	des, err := os.ReadDir(c.cfg.Dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("imagecache: %w", err)
	}
	var out []Entry
	for _, de := range des {
		n := de.Name()
		if strings.HasPrefix(n, ".") || strings.HasSuffix(n, ".json") || strings.HasSuffix(n, ".tmp") {
			continue
		}
		p := filepath.Join(c.cfg.Dir, n)
		st, err := os.Stat(p)
		if err != nil || !st.Mode().IsRegular() {
			continue
		}
		e := Entry{Path: p, Size: st.Size(), LastUsed: st.ModTime()}
		if sys, ok := st.Sys().(*syscall.Stat_t); ok {
			e.LastUsed = time.Unix(sys.Atim.Sec, sys.Atim.Nsec)
			e.InUse = sys.Nlink > 1
		}
		if m, err := readMeta(p); err == nil {
			e.Source = m.Source
		}
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].LastUsed.Before(out[j].LastUsed) })
	return out, nil
}

// CleanUp evicts least recently used masters no node links to until the
// cache fits MaxBytes. Fetch calls it after every fetch.
func (c *Cache) CleanUp() {
	c.mu.Lock()
	defer c.mu.Unlock()
	entries, err := c.Entries()
	if err != nil {
		c.log.Warn("image cache clean up", "err", err)
		return
	}
	var total int64
	for _, e := range entries {
		total += e.Size
	}
	for _, e := range entries {
		if total <= c.cfg.MaxBytes {
			return
		}
		if e.InUse {
			continue
		}
		if err := os.Remove(e.Path); err != nil {
			c.log.Warn("image cache eviction", "path", e.Path, "err", err)
			continue
		}
		os.Remove(e.Path + ".json")
		total -= e.Size
		c.log.Info("image evicted from cache", "source", e.Source, "bytes", e.Size)
	}
	if total > c.cfg.MaxBytes {
		c.log.Info("image cache still over its size: masters in use", "bytes", total, "max", c.cfg.MaxBytes)
	}
}
